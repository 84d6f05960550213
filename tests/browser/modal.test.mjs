// A modal's validation as Slack does it, in the web client: `switchyard sandbox` alone, with a
// small app of this test's own over HTTP (its manifest put at run time). `/ask` opens a modal with
// `views.open`; a submission the app refuses (`response_action: errors`) shows the error under its
// field and keeps the modal open; one it takes closes it, and the app's answer is posted.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = process.env.SWITCHYARD_BIN || path.join(root, "target/debug/switchyard");
const shots = process.env.SCREENSHOTS_DIR || path.join(root, "target/screenshots");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

function startSandbox() {
  const child = spawn(bin, ["sandbox", "--port", "0"], { env: { ...process.env, RUST_LOG: "warn" }, stdio: ["ignore", "pipe", "inherit"] });
  const url = new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`the sandbox printed no URL:\n${seen}`)), 30_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      seen += chunk;
      const m = /Sandbox Slack workspace \S+ on (http:\/\/127\.0\.0\.1:\d+)/.exec(seen);
      if (m) { clearTimeout(timer); resolve(m[1] + "/"); }
    });
    child.on("exit", (code) => reject(new Error(`the sandbox exited (${code}):\n${seen}`)));
  });
  return { child, url };
}

// The app: answers `/ask` by opening the modal, and validates its submission.
function startApp(base, botToken) {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", async () => {
      const form = new URLSearchParams(body);
      if (req.url === "/commands") {
        res.writeHead(200).end();
        await fetch(`${base}api/views.open`, {
          method: "POST",
          headers: { authorization: `Bearer ${botToken}`, "content-type": "application/json" },
          body: JSON.stringify({ trigger_id: form.get("trigger_id"), view: {
            type: "modal", callback_id: "ask", title: { type: "plain_text", text: "Ask the team" },
            submit: { type: "plain_text", text: "Ask" }, close: { type: "plain_text", text: "Cancel" },
            private_metadata: form.get("channel_id"),
            blocks: [
              { type: "input", block_id: "question", label: { type: "plain_text", text: "Question" },
                element: { type: "plain_text_input", action_id: "text", multiline: true }, hint: { type: "plain_text", text: "End it with a question mark." } },
              { type: "input", block_id: "who", optional: true, label: { type: "plain_text", text: "Who should answer" },
                element: { type: "users_select", action_id: "user", placeholder: { type: "plain_text", text: "Anyone" } } },
            ],
          } }),
        });
        return;
      }
      const payload = JSON.parse(form.get("payload") || "{}");
      if (payload.type === "view_submission") {
        const question = payload.view.state.values.question.text.value;
        if (!question.endsWith("?")) {
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ response_action: "errors", errors: { question: "A question ends with a question mark." } }));
          return;
        }
        res.writeHead(200).end();
        const who = payload.view.state.values.who.user.selected_user;
        await fetch(`${base}api/chat.postMessage`, {
          method: "POST",
          headers: { authorization: `Bearer ${botToken}`, "content-type": "application/json" },
          body: JSON.stringify({ channel: payload.view.private_metadata, text: `<@${payload.user.id}> asks${who ? ` <@${who}>` : ""}: ${question}` }),
        });
        return;
      }
      res.writeHead(200).end();
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

test("a modal: opened by a command, errors under the field, closed when the app takes it", async () => {
  mkdirSync(shots, { recursive: true });
  const sandbox = startSandbox();
  let browser;
  let page;
  let app;
  try {
    const base = await sandbox.url;
    const info = await (await fetch(`${base}_sandbox/info`)).json();
    app = await startApp(base, info.tokens.bot);
    const appUrl = `http://127.0.0.1:${app.address().port}`;
    const manifest = {
      display_information: { name: "Asker" },
      features: { bot_user: { display_name: "asker" }, slash_commands: [{ command: "/ask", url: `${appUrl}/commands`, description: "Ask the team a question", usage_hint: "[question]" }] },
      oauth_config: { scopes: { bot: ["commands", "chat:write"] } },
      settings: { interactivity: { is_enabled: true, request_url: `${appUrl}/interactions` }, socket_mode_enabled: false },
    };
    const put = await (await fetch(`${base}_sandbox/app/manifest`, { method: "PUT", body: JSON.stringify(manifest) })).json();
    assert.equal(put.ok, true, JSON.stringify(put));

    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.setDefaultTimeout(15_000);
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}?user=bob&channel=general`);
    const composer = page.getByTestId("composer-main");
    await composer.fill("/ask");
    await composer.press("Escape");
    await composer.press("Enter");
    const modal = page.getByRole("dialog", { name: "Ask the team" });
    await modal.waitFor();
    await modal.getByLabel("Question").fill("Who has the lathe key");
    await modal.getByLabel("Who should answer").selectOption({ label: "Alice Admin" });
    await modal.getByRole("button", { name: "Ask" }).click();
    await modal.getByRole("alert").filter({ hasText: "A question ends with a question mark." }).waitFor();
    await page.screenshot({ path: path.join(shots, "11-modal-errors.png") });
    // What was typed stays; fixed, the modal closes and the app answers.
    assert.equal(await modal.getByLabel("Question").inputValue(), "Who has the lathe key");
    await modal.getByLabel("Question").fill("Who has the lathe key?");
    await modal.getByRole("button", { name: "Ask" }).click();
    await modal.waitFor({ state: "detached" });
    await page.locator("#messages").getByText("asks @alice: Who has the lathe key?").waitFor();
    await page.screenshot({ path: path.join(shots, "12-modal-submitted.png") });
    assert.deepEqual(errors, [], "the page threw");
  } catch (err) {
    if (page) await page.screenshot({ path: path.join(shots, "failure-modal.png") }).catch(() => {});
    throw err;
  } finally {
    if (browser) await browser.close();
    if (app) app.close();
    if (sandbox.child.exitCode === null) {
      const exited = new Promise((resolve) => sandbox.child.on("exit", resolve));
      sandbox.child.kill("SIGINT");
      await exited;
    }
  }
});
