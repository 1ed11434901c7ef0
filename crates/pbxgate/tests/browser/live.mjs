// The Live calls page on the rig, driven by the Rust test
// `admin::live::the_live_calls_page_works_in_a_real_browser`, which places the
// calls between the steps:
//   ready           -> it places a bridged call (1001 -> 1000) and a held inbound call from ACCEPT_CALLER
//   hung-up         <- the bridged call was hung up by clicking (the held call's countdown runs meanwhile)
//   accepted        <- the held call was accepted by clicking
//                   -> it places a held call from REFUSE_CALLER
//   refused         <- refused by clicking
//                   -> it places a held call from RACE_CALLER
//   accept-pending  <- Accept clicked, the request held back in the browser
//                   -> it accepts the call through the API as another user
//   already-decided <- the page showed that the call was already accepted
//                   -> it places a short bridged call
//   bridged-ended   <- the call appeared and disappeared without a reload
import { assert, base, env, login, run, shot, step } from "./lib.mjs";

const WAIT = { timeout: 20000 };

const bridgedRow = '#bridged tbody tr[data-channel1^="PJSIP/1001-"][data-channel2^="PJSIP/1000-"]';

// The held call from `caller` (callers are unique in the test).
const heldRow = (page, caller) => page.locator("#held tbody tr").filter({ hasText: caller });

// Seconds on a countdown such as "0:37" or "1:02:03".
const seconds = (text) => text.split(":").reduce((t, p) => t * 60 + Number(p), 0);

await run(async ({ page }) => {
  await login(page);
  await page.goto(`${base()}/admin/live`);
  assert.equal(await page.getAttribute('nav a[aria-current="page"]', "href"), "/admin/live");
  await page.waitForSelector("#live-state.up", WAIT);
  assert.equal(await page.textContent("#live-state"), "Live updates");
  assert.equal(await page.isVisible("#held-empty"), true);
  step("ready");

  // The held call, with DID, trunk and a countdown that runs.
  const held = heldRow(page, env("ACCEPT_CALLER"));
  await held.waitFor(WAIT);
  assert.equal(await held.locator("td.did").textContent(), "5550100");
  assert.equal(await held.locator("td.trunk").textContent(), "trunk");
  const before = seconds(await held.locator("td.countdown").textContent());
  assert.ok(before > 20 && before <= 40, `countdown ${before}`);
  await page.waitForSelector(bridgedRow, WAIT);
  await page.waitForTimeout(1500);
  const after = seconds(await held.locator("td.countdown").textContent());
  assert.ok(after < before, `the countdown runs: ${before} then ${after}`);
  await shot(page, "live");

  // Hang up by clicking: the bridged call disappears.
  await page.locator(`${bridgedRow} button.hangup`).nth(1).click();
  await page.waitForSelector(bridgedRow, { state: "detached", timeout: 20000 });
  assert.match(await page.textContent("#live-notice"), /Hung up: PJSIP\/1000-/);
  step("hung-up");

  // Accept by clicking.
  await held.locator("button.accept").click();
  await held.waitFor({ state: "detached", timeout: 20000 });
  assert.match(await page.textContent("#live-notice"), /Accepted: PJSIP\/trunk-/);
  assert.equal(await page.isVisible("#live-error"), false);
  step("accepted");

  // Refuse by clicking.
  const refused = heldRow(page, env("REFUSE_CALLER"));
  await refused.waitFor(WAIT);
  await refused.locator("button.refuse").click();
  await refused.waitFor({ state: "detached", timeout: 20000 });
  assert.match(await page.textContent("#live-notice"), /Refused: PJSIP\/trunk-/);
  step("refused");

  // Decided elsewhere while the page's request is on its way: the page says so.
  const race = heldRow(page, env("RACE_CALLER"));
  await race.waitFor(WAIT);
  await page.route("**/admin/api/live/accept", async (route) => {
    await race.waitFor({ state: "detached", timeout: 20000 });
    await route.continue();
  });
  await race.locator("button.accept").click();
  step("accept-pending");
  await page.waitForSelector("#live-error:not([hidden])", WAIT);
  const error = await page.textContent("#live-error");
  assert.match(error, /^Accept PJSIP\/trunk-\S+ failed: the call on PJSIP\/trunk-\S+ was already accepted$/);
  await shot(page, "live-error");
  await page.unroute("**/admin/api/live/accept");
  step("already-decided");

  // A call that ends by itself comes and goes.
  await page.waitForSelector(bridgedRow, WAIT);
  await page.waitForSelector(bridgedRow, { state: "detached", timeout: 20000 });
  assert.equal(await page.isVisible("#bridged-empty"), true);
  step("bridged-ended");
});
