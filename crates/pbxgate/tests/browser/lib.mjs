// Shared by the browser tests: launch Debian's chromium through playwright-core,
// log in to the admin interface, save screenshots, report steps to the Rust test.
//
// Environment (set by crates/pbxgate/tests/kit/browser.rs and the test):
//   PBXGATE_URL        https://127.0.0.1:<port> of the pbxgate under test
//   ADMIN_USER, ADMIN_PASSWORD
//   PBXGATE_SCREENSHOTS  directory for the PNG files
//   CHROMIUM           the browser binary (/usr/bin/chromium)
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";

export { assert };

export const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};

export const base = () => env("PBXGATE_URL");

// Tells the Rust test that the script reached `name`.
export function step(name) {
  process.stdout.write(`STEP ${name}\n`);
}

// Waits until the Rust test says `GO <name>` (it checks things between steps).
const goes = [];
const waiters = [];
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
  let nl;
  while ((nl = input.indexOf("\n")) >= 0) {
    const line = input.slice(0, nl).trim();
    input = input.slice(nl + 1);
    if (line.startsWith("GO ")) {
      goes.push(line.slice(3));
      for (const w of waiters.splice(0)) w();
    }
  }
});
export async function proceed(name, timeoutMs = 120000) {
  const deadline = Date.now() + timeoutMs;
  while (!goes.includes(name)) {
    if (Date.now() > deadline) throw new Error(`no GO ${name} from the test`);
    await new Promise((r) => { waiters.push(r); setTimeout(r, 500); });
  }
}

export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  // A page that breaks its Content-Security-Policy or throws is a failure.
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Failed loads are judged by their answer below (a 401 login page is expected).
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  page.on("response", (r) => {
    const u = new URL(r.url());
    if (r.status() >= 500 || (r.status() === 404 && u.pathname.startsWith("/admin/assets/"))) {
      problems.push(`${r.status()} for ${u.pathname}`);
    }
  });
  page.on("requestfailed", (r) => {
    // Navigations away abort pending requests; anything else is a failure.
    if (!/ERR_ABORTED/.test(r.failure()?.errorText || "")) {
      problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
    }
  });
  return { browser, context, page, problems };
}

export async function login(page, user = env("ADMIN_USER"), password = env("ADMIN_PASSWORD")) {
  await page.goto(`${base()}/admin/login`);
  await page.fill("#username", user);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL(/\/admin\/status$/), page.click("button[type=submit]")]);
}

export async function shot(page, name) {
  const file = path.join(env("PBXGATE_SCREENSHOTS"), `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  process.stdout.write(`screenshot ${file}\n`);
}

// Runs `body` with a logged-out page; closes the browser and fails the
// process with the error (and any page errors) when something goes wrong.
export async function run(body) {
  const b = await launch();
  try {
    await body(b);
    assert.deepEqual(b.problems, [], "the pages logged errors");
  } catch (e) {
    try { await shot(b.page, `failure-${path.basename(process.argv[1], ".mjs")}`); } catch (_) { /* ignore */ }
    console.error(e && e.stack ? e.stack : e);
    if (b.problems.length) console.error(b.problems.join("\n"));
    await b.browser.close();
    process.exit(1);
  }
  await b.browser.close();
  process.stdin.destroy();
}
