// Call control switched on the API Configuration page and a real held call
// accepted on the Live calls page, driven by the Rust test
// `admin::apiconfig::call_control_switched_on_the_page_holds_calls_accepted_by_clicking`:
//   cc-on       <- user crm added with Call Control on
//               -> it places an inbound call from CALLER
//   accepted    <- the held call was accepted by clicking
//   cc-off      <- Call Control switched off again
import { assert, base, env, login, proceed, run, shot, step } from "./lib.mjs";

const WAIT = { timeout: 20000 };

await run(async ({ page }) => {
  await login(page);
  await page.goto(`${base()}/admin/api-config`);
  await page.fill("#user-add-username", "crm");
  await page.fill("#user-add-password", "call control 1");
  await page.check("#user-add-call-control");
  await Promise.all([page.waitForURL(/saved=user/), page.click('#user-add button[type="submit"]')]);
  assert.equal(await page.isChecked("#user-0-call-control"), true);
  step("cc-on");
  await proceed("call-placed");

  await page.click('nav a[href="/admin/live"]');
  await page.waitForSelector("#live-state.up", WAIT);
  const held = page.locator("#held tbody tr").filter({ hasText: env("CALLER") });
  await held.waitFor(WAIT);
  await shot(page, "live-held-call");
  await held.locator("button.accept").click();
  await held.waitFor({ state: "detached", timeout: 20000 });
  assert.match(await page.textContent("#live-notice"), /Accepted: PJSIP\/trunk-/);
  step("accepted");

  await page.goto(`${base()}/admin/api-config`);
  await page.uncheck("#user-0-call-control");
  await Promise.all([
    page.waitForURL(/saved=user/),
    page.click('#user-0 form[action="/admin/api-config/user"] button[type="submit"]'),
  ]);
  assert.equal(await page.isChecked("#user-0-call-control"), false);
  step("cc-off");
});
