// The Status page, driven by the Rust test
// `admin::status::the_status_page_works_in_a_real_browser`: pbxgate with an
// AMI nobody answers, a web certificate ending in 10 days, the old API on a
// generated certificate, and a few API requests already made.
//   shown  <- the facts are on the page
//          -> the test makes a getSystemGeneralStatus request
//   (end)  <- it appeared without a reload; the Live calls page says Asterisk is unreachable
import { assert, base, login, run, shot, step } from "./lib.mjs";

const WAIT = { timeout: 20000 };

await run(async ({ page }) => {
  // Logging in leads to the status page: the admin home page.
  await login(page);
  assert.equal(await page.getAttribute('nav a[aria-current="page"]', "href"), "/admin/status");
  await page.waitForSelector("#card-ami", WAIT);

  // Asterisk's AMI: configured, not up, with its last error (wait for the first failure).
  const ami = page.locator("#card-ami");
  await page.waitForFunction(() => !/Last error\s*none/.test(document.querySelector("#card-ami").innerText), null, WAIT);
  const amiText = await ami.innerText();
  assert.match(amiText, /State\s*(down|connecting)/);
  assert.match(amiText, /127\.0\.0\.1:9/);
  assert.match(amiText, /Not connected since/);
  assert.match(amiText, /refused/i);
  assert.match(await page.locator("#card-ari").innerText(), /not configured/);
  assert.match(await page.locator("#card-db").innerText(), /Reachable\s*yes/);
  assert.match(await page.locator("#card-db").innerText(), /Query latency\s*[\d.]+ ms/);
  assert.match(await page.locator("#card-ingest").innerText(), /Newest CDR\s*none stored/);

  // The nodes serving the Asterisk: this one owns it (PostgreSQL: it took the
  // lease; SQLite: the only node).
  await page.waitForFunction(() => /owner|the only one/.test(document.querySelector("#card-cluster")?.innerText ?? ""), null, WAIT);
  const nodes = await page.locator("#card-cluster").innerText();
  assert.match(nodes, /This node\s*\S+:\d+/);
  assert.match(nodes, /Owner\s*\S+:\d+ since .*lease renewed|the only one/);

  // A CDR output receiver nobody answers: failing, with the reason.
  await page.waitForFunction(() => /failing/.test(document.querySelector("#card-out-billing")?.innerText ?? ""), null, WAIT);
  const out = await page.locator("#card-out-billing").innerText();
  assert.match(out, /tcp:\/\/127\.0\.0\.1:9/);
  assert.match(out, /Backlog\s*0 record\(s\) waiting/);
  assert.match(out, /Last error\s*connect: .*refused/i);

  // Certificates: the web one is flagged, the old API's generated one is not.
  const web = page.locator('#certs tr[data-listener="web"]');
  assert.match(await web.locator("td.source").textContent(), /configured/);
  assert.match(await web.locator("td.days").textContent(), /^(9|10)renew soon: under 30 days left$/);
  const old = page.locator('#certs tr[data-listener="old API"]');
  assert.equal(await old.locator("td.source").textContent(), "generated");
  assert.doesNotMatch(await old.locator("td.days").textContent(), /renew soon/);

  // The latest requests of both APIs, and the audit trail with the logins.
  const requests = await page.locator("#requests tbody").innerText();
  assert.match(requests, /new\s+127\.0\.0\.1\s+cdrapi\s+login\s+0/);
  assert.match(requests, /old\s+127\.0\.0\.1\s+—\s+GET \/cdrapi\s+401/);
  const audit = await page.locator("#audit tbody").innerText();
  assert.match(audit, /login\s+admin\s+127\.0\.0\.1\s+ok\s+admin/);
  assert.match(audit, /login\s+cdrapi\s+127\.0\.0\.1\s+ok/);
  await shot(page, "status");
  step("shown");

  // Refreshed without a reload.
  await page.waitForFunction(
    () => document.querySelector("#requests tbody").innerText.includes("getSystemGeneralStatus"),
    null,
    WAIT,
  );

  // The Live calls page says why it shows no channels.
  await page.click('nav a[href="/admin/live"]');
  await page.waitForSelector("#live-state.up", WAIT);
  await page.waitForSelector("#live-asterisk:not([hidden])", WAIT);
  assert.match(await page.textContent("#live-asterisk"), /Asterisk's AMI is (down|connecting)/);
  assert.match(await page.textContent("#held-note"), /needs pbxgate's connection to Asterisk's ARI/);
  await shot(page, "live-no-asterisk");
});
