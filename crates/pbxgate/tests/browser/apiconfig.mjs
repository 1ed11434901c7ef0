// The API Configuration page: add an API user, see a validation error beside
// its field, then narrow the user's permitted IPs; the Rust test checks the
// API between the steps (the client from the removed address is refused at once).
import { assert, login, proceed, run, shot, step } from "./lib.mjs";

await run(async ({ page }) => {
  await login(page);
  await page.click('nav a[href="/admin/api-config"]');
  await page.waitForURL(/\/admin\/api-config$/);
  await shot(page, "api-config");

  // Add the user `crm`, permitted from 127.0.0.1 only.
  await page.fill("#user-add-username", "crm");
  await page.fill("#user-add-password", "browser pass 1");
  await page.fill("#user-add-ips", "127.0.0.1/255.255.255.255");
  await Promise.all([page.waitForURL(/saved=user/), page.click('#user-add button[type="submit"]')]);
  assert.match(await page.textContent("[role=status]"), /API user saved and in force/);
  assert.equal(await page.inputValue("#user-0-username"), "crm");
  step("user-added");
  await proceed("user-checked");

  // A malformed address: refused beside the field, nothing changed.
  const save = '#user-0 form[action="/admin/api-config/user"] button[type="submit"]';
  await page.fill("#user-0-ips", "127.0.0.2/255.255.255.256");
  await page.click(save);
  await page.waitForSelector('#user-0 [data-field="permitted_ips"]');
  assert.match(await page.textContent('#user-0 [data-field="permitted_ips"]'), /entry 1/);
  await shot(page, "api-config-error");

  // Only 127.0.0.2 from now on.
  await page.fill("#user-0-ips", "127.0.0.2/255.255.255.255");
  await Promise.all([page.waitForURL(/saved=user/), page.click(save)]);
  assert.equal(await page.inputValue("#user-0-ips"), "127.0.0.2/255.255.255.255");
  step("ips-changed");
  await proceed("ips-checked");

  // The old API table is there with its help texts.
  assert.match(await page.textContent("#old-form"), /TLS Bind Address/);
  assert.ok(await page.isChecked("#old-enable") === false, "the old API is off by default");

  // CDR Real-Time Output: a refused port is answered beside it, then the
  // receiver is saved and the output switched on.
  await page.fill("#receiver-new-name", "billing");
  await page.fill("#receiver-new-address", "127.0.0.1");
  await page.fill("#receiver-new-port", "0");
  await page.click('#receiver-new button[type="submit"]');
  await page.waitForSelector('#receiver-new [data-field="port"]');
  assert.match(await page.textContent('#receiver-new [data-field="port"]'), /between 1 and 65535/);
  assert.equal(await page.inputValue("#receiver-new-name"), "billing");
  await page.fill("#receiver-new-port", process.env.RECEIVER_PORT);
  await Promise.all([page.waitForURL(/saved=cdr-receiver/), page.click('#receiver-new button[type="submit"]')]);
  assert.equal(await page.inputValue("#receiver-0-name"), "billing");
  await page.check("#cdr-enable-box");
  await Promise.all([page.waitForURL(/saved=cdr-output/), page.click('#cdr-enable button[type="submit"]')]);
  assert.ok(await page.isChecked("#cdr-enable-box"));
  await shot(page, "api-config-cdr-output");
  step("receiver-added");
});
