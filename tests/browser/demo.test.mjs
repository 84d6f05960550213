// The demo in a browser, as a person would use it: `switchyard demo` on a free port, Debian's
// headless Chromium driven by playwright-core, the sandbox's web client at the URL the demo prints.
// As alice in #control: `@switchyard status` (the machine list, in the thread), `@switchyard oops
// laser` (the notice in #oops), `/oops-clear` (the modal: pick the machine, submit), cleared.
// Every wait is for an element; nothing sleeps. Screenshots go to target/screenshots/ (or
// $SCREENSHOTS_DIR), which CI keeps.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = process.env.SWITCHYARD_BIN || path.join(root, "target/debug/switchyard");
const shots = process.env.SCREENSHOTS_DIR || path.join(root, "target/screenshots");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 15_000;

// Starts `switchyard demo --port 0` and resolves with the web client's URL from its banner.
function startDemo() {
  const child = spawn(bin, ["demo", "--port", "0"], {
    env: { ...process.env, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`the demo printed no web client URL:\n${seen}`)), 30_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      seen += chunk;
      const m = /Web client: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(seen);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`the demo exited (${code}) before it was ready:\n${seen}`)));
  });
  return { child, url };
}

async function stop(child) {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.on("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

test("the demo in the web client: status, oops, /oops-clear in its modal, cleared", async () => {
  mkdirSync(shots, { recursive: true });
  const demo = startDemo();
  let browser;
  let page;
  try {
    const base = await demo.url;
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.setDefaultTimeout(WAIT_MS);
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`) });

    await page.goto(`${base}?user=alice&channel=control`);
    await page.locator('#channel-list li.active[data-channel="control"]').waitFor();
    const composer = page.getByTestId("composer-main");
    const main = page.locator("#messages");

    // `@switchyard status`: the answer is in the mention's thread.
    await composer.fill("@switchyard status");
    await composer.press("Enter");
    const mention = main.locator('[data-testid="message"]', { hasText: "@switchyard status" });
    await mention.getByTestId("thread-link").click();
    const thread = page.getByTestId("thread");
    await thread.locator(".block-header", { hasText: "Machines" }).waitFor();
    for (const machine of ["Laser Cutter", "Lathe", "Band Saw", "Dust Collector"]) {
      await thread.locator(".section b", { hasText: machine }).first().waitFor();
    }
    await shot("01-status");

    // `@switchyard oops laser`: confirmed in #control, the notice in #oops (unread meanwhile).
    await page.getByRole("button", { name: "Close thread" }).click();
    await composer.fill("@switchyard oops laser");
    await composer.press("Enter");
    await main.getByText("was oopsed by").waitFor();
    await page.locator('#channel-list li[data-channel="oops"][data-unread="true"]').waitFor();
    await shot("02-oopsed");
    await page.locator('#channel-list li[data-channel="oops"]').click();
    await main.getByText("is out of service (oops)").waitFor();
    assert.equal(await page.locator('#channel-list li[data-channel="oops"]').getAttribute("data-unread"), "false");
    await shot("03-oops-channel");

    // `/oops-clear`, offered as it is typed (from the app's manifest), opens the picker.
    await page.locator('#channel-list li[data-channel="control"]').click();
    await composer.pressSequentially("/oops");
    const offered = page.getByTestId("autocomplete").getByTestId("ac-item").filter({ hasText: "/oops-clear" });
    await offered.waitFor();
    await shot("04-command-autocomplete");
    await composer.press("Enter"); // picks the offered command
    assert.equal(await composer.inputValue(), "/oops-clear ");
    await composer.press("Enter"); // runs it
    const modal = page.getByRole("dialog", { name: "Clear a machine" });
    await modal.waitFor();
    await modal.getByRole("button", { name: "Clear" }).click(); // nothing picked yet
    await modal.getByRole("alert").filter({ hasText: "Please complete this required field." }).waitFor();
    await modal.getByLabel("Machine").selectOption({ label: "Laser Cutter — oopsed" });
    await shot("05-modal");
    await modal.getByRole("button", { name: "Clear" }).click();
    await modal.waitFor({ state: "detached" });

    // Cleared: said in #control and in #oops.
    await main.getByText("is back in service").last().waitFor();
    await shot("06-cleared");
    await page.locator('#channel-list li[data-channel="oops"]').click();
    await main.locator('[data-testid="message"]', { hasText: "Laser Cutter is back in service" }).waitFor();

    // The developer panel shows what the app called and what it was sent.
    await page.getByTestId("dev-toggle").click();
    await page.getByTestId("api-call").filter({ hasText: "views.open" }).first().waitFor();
    await page.getByTestId("api-call").filter({ hasText: "chat.postMessage" }).first().click();
    await page.locator(".log-detail").first().waitFor();
    await shot("07-developer-web-api");
    await page.getByTestId("dev-tab-deliveries").click();
    await page.getByTestId("delivery").filter({ hasText: "view_submission" }).first().click();
    await page.locator(".log-detail", { hasText: "Socket Mode envelope" }).waitFor();
    await shot("08-developer-deliveries");

    assert.deepEqual(errors, [], "the page threw");
  } catch (err) {
    // What the page showed when it failed, for CI's artifacts.
    if (page) await page.screenshot({ path: path.join(shots, "failure.png") }).catch(() => {});
    throw err;
  } finally {
    if (browser) await browser.close();
    await stop(demo.child);
  }
});

// Block Kit as Slack draws it, and what its elements send: a message the app posts through the Web
// API (header, fields, accessory, context with a date token, divider, image, actions with a
// confirm dialog and selects), an ephemeral for alice alone.
test("Block Kit, confirm dialogs, selects and ephemerals in the web client", async () => {
  mkdirSync(shots, { recursive: true });
  const demo = startDemo();
  let browser;
  let page;
  try {
    const base = await demo.url;
    const info = await (await fetch(`${base}_sandbox/info`)).json();
    const web = async (method, args) => {
      const reply = await fetch(`${base}api/${method}`, {
        method: "POST",
        headers: { authorization: `Bearer ${info.tokens.bot}`, "content-type": "application/json" },
        body: JSON.stringify(args),
      });
      const json = await reply.json();
      assert.equal(json.ok, true, `${method}: ${JSON.stringify(json)}`);
      return json;
    };
    const alice = (await (await fetch(`${base}_sandbox/users`)).json()).users.find((u) => u.name === "alice");
    const posted = await web("chat.postMessage", {
      channel: "general",
      text: "Deploy request",
      blocks: [
        { type: "header", text: { type: "plain_text", text: "Deploy request :rocket:" } },
        {
          type: "section",
          text: { type: "mrkdwn", text: `*api-server* v2.3 to _production_ for <@${alice.id}>, ~not~ \`today\`: <https://example.com/runs/1|run 1>` },
          fields: [
            { type: "mrkdwn", text: "*Environment*\nproduction" },
            { type: "mrkdwn", text: "*Requested*\n<!date^1700000000^{date_short} at {time}|Nov 14>" },
          ],
          accessory: { type: "static_select", action_id: "pick_env", placeholder: { type: "plain_text", text: "Environment" }, options: [
            { text: { type: "plain_text", text: "staging" }, value: "staging" },
            { text: { type: "plain_text", text: "production" }, value: "production" },
          ] },
        },
        { type: "context", elements: [{ type: "mrkdwn", text: "Requested by <!here> in <#C0OOPS>" }] },
        { type: "divider" },
        { type: "actions", block_id: "decide", elements: [
          { type: "button", action_id: "approve", style: "primary", text: { type: "plain_text", text: "Approve" }, value: "yes" },
          { type: "button", action_id: "reject", style: "danger", text: { type: "plain_text", text: "Reject" }, value: "no",
            confirm: { title: { type: "plain_text", text: "Reject the deploy?" }, text: { type: "mrkdwn", text: "The requester is told." },
              confirm: { type: "plain_text", text: "Reject" }, deny: { type: "plain_text", text: "Keep it" }, style: "danger" } },
          { type: "users_select", action_id: "assign", placeholder: { type: "plain_text", text: "Assign someone" } },
        ] },
      ],
    });
    await web("chat.postEphemeral", { channel: "general", user: alice.id, text: "Only you can see this hint." });

    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.setDefaultTimeout(WAIT_MS);
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}?user=alice&channel=general`);
    const message = page.locator(`#messages [data-testid="message"][data-ts="${posted.ts}"]`);
    await message.locator(".block-header", { hasText: "Deploy request" }).waitFor();
    await message.locator(".section b", { hasText: "api-server" }).waitFor();
    await message.locator(".section i", { hasText: "production" }).waitFor();
    await message.locator(".section s", { hasText: "not" }).waitFor();
    await message.locator(".section code", { hasText: "today" }).waitFor();
    await message.locator('.section a[href="https://example.com/runs/1"]', { hasText: "run 1" }).waitFor();
    await message.locator(".mention.me", { hasText: "@alice" }).waitFor();
    await message.locator(".fields .date-token").filter({ hasText: /Nov 14, 2023 at \d+:\d\d [AP]M/ }).waitFor();
    await message.locator(".context", { hasText: "@here" }).locator(".mention", { hasText: "#oops" }).waitFor();
    await message.locator("hr.divider").waitFor();
    await message.locator(".btn.primary", { hasText: "Approve" }).waitFor();
    const ephemeral = page.locator(".msg.ephemeral", { hasText: "Only you can see this hint." });
    await ephemeral.getByText("Only visible to you").waitFor();
    await page.screenshot({ path: path.join(shots, "09-block-kit.png") });

    // The danger button asks first; confirmed, the app gets the real block_actions.
    await message.getByRole("button", { name: "Reject" }).click();
    const confirm = page.getByRole("dialog", { name: "Reject the deploy?" });
    await confirm.getByText("The requester is told.").waitFor();
    await page.screenshot({ path: path.join(shots, "10-confirm.png") });
    await confirm.getByRole("button", { name: "Reject" }).click();
    await message.getByLabel("Environment").selectOption("production");
    const delivered = async (actionId) => {
      const all = await (await fetch(`${base}_sandbox/deliveries?wait_for=1`)).json();
      return all.deliveries.find((d) => d.name === "block_actions" && d.payload.actions[0].action_id === actionId);
    };
    await page.waitForFunction(async (url) => {
      const all = await (await fetch(url)).json();
      const names = all.deliveries.filter((d) => d.name === "block_actions").map((d) => d.payload.actions[0].action_id);
      return names.includes("reject") && names.includes("pick_env");
    }, `${base}_sandbox/deliveries`, { polling: 100 });
    const rejected = await delivered("reject");
    assert.equal(rejected.payload.actions[0].value, "no");
    assert.equal(rejected.payload.actions[0].block_id, "decide");
    assert.equal(rejected.payload.user.id, alice.id);
    assert.equal(rejected.payload.container.message_ts, posted.ts);
    const picked = await delivered("pick_env");
    assert.equal(picked.payload.actions[0].selected_option.value, "production");

    // A reaction from the hover bar; an edit by the app shows "(edited)"; a reply in the thread pane.
    await message.hover();
    await message.getByRole("button", { name: "✅" }).click();
    await message.locator(".reaction.mine", { hasText: "1" }).waitFor();
    await web("chat.update", { channel: posted.channel, ts: posted.ts, text: "Deploy request (approved)", blocks: [
      { type: "section", text: { type: "mrkdwn", text: "*api-server* v2.3: approved :white_check_mark:" } },
    ] });
    await message.locator(".edited", { hasText: "(edited)" }).waitFor();
    await message.hover();
    await message.getByRole("button", { name: "💬" }).click();
    const threadComposer = page.getByTestId("composer-thread");
    await threadComposer.fill("Thanks, rolling out now");
    await threadComposer.press("Enter");
    await page.getByTestId("thread").getByText("Thanks, rolling out now").waitFor();
    await message.getByTestId("thread-link").filter({ hasText: "1 reply" }).waitFor();
    await page.screenshot({ path: path.join(shots, "10b-edited-reaction-thread.png") });

    // Bob does not see alice's ephemeral.
    await page.getByTestId("me").selectOption({ label: "Bob Builder (@bob)" });
    // The page redraws for bob after the switch: wait for alice's ephemeral to go (it throws if
    // it never does), rather than counting at once on what may still be alice's view.
    await page.locator(".msg.ephemeral", { hasText: "Only you can see this hint." })
      .waitFor({ state: "detached", timeout: 10000 });
    await message.locator(".edited").waitFor();
    assert.equal(await page.locator(".msg.ephemeral", { hasText: "Only you can see this hint." }).count(), 0);
    assert.deepEqual(errors, [], "the page threw");
  } catch (err) {
    if (page) await page.screenshot({ path: path.join(shots, "failure-block-kit.png") }).catch(() => {});
    throw err;
  } finally {
    if (browser) await browser.close();
    await stop(demo.child);
  }
});
