// The same app in Bolt for JavaScript: reply `pong` in the thread of a mention.
// Usage: node bolt_js.js PORT API_URL BOT_TOKEN SIGNING_SECRET
const { App, LogLevel } = require('@slack/bolt');

const [port, apiUrl, token, signingSecret] = process.argv.slice(2);
const app = new App({ token, signingSecret, logLevel: LogLevel.ERROR, clientOptions: { slackApiUrl: apiUrl } });

app.event('app_mention', async ({ event, say }) => {
  await say({ text: 'pong', thread_ts: event.ts });
});
app.event('message', async () => {});

(async () => {
  await app.start(Number(port));
  console.log(`ready on ${port}`);
})();
