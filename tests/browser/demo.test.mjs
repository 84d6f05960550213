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
