// The login page: a wrong password is refused with a message, the right one
// opens the status page; logout returns to the login page.
import { assert, base, login, run, shot, step } from "./lib.mjs";

await run(async ({ page }) => {
  await page.goto(`${base()}/admin/`);
  await page.waitForURL(/\/admin\/login$/);
  await shot(page, "login");
  await page.fill("#username", process.env.ADMIN_USER);
  await page.fill("#password", "not the password");
  await page.click("button[type=submit]");
  assert.match(await page.textContent("[role=alert]"), /Wrong user name or password/);
  await login(page);
  assert.equal(await page.getAttribute('nav a[aria-current="page"]', "href"), "/admin/status");
  step("logged-in");
  await page.click("header .logout button");
  await page.waitForURL(/\/admin\/login$/);
  step("logged-out");
});
