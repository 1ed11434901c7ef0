// The CDR page: filter by caller (the rows the cdrapi gives), open a call's
// legs, play a recording (its <audio> loads through Range requests), export
// CSV (the cdrapi's bytes), screenshot.
//
// Environment (besides lib.mjs's): CALLER (a caller filter), EXPECT_SESSIONS
// (JSON list of the sessions the page must show, newest first), EXPECT_CSV
// (a file with the CSV the export must give), RECORDING (the recording a call
// of those rows has, as in its recordfiles).
import fs from "node:fs";
import { assert, base, env, login, run, shot, step } from "./lib.mjs";

const expectSessions = JSON.parse(env("EXPECT_SESSIONS"));
const expectCsv = fs.readFileSync(env("EXPECT_CSV"), "utf8");
const recording = env("RECORDING");

await run(async ({ page }) => {
  // Every answer to a recording request, to check the player used ranges.
  const media = [];
  page.on("response", async (r) => {
    const u = new URL(r.url());
    if (u.pathname === "/admin/cdr/recording") {
      const h = await r.allHeaders();
      media.push({ status: r.status(), range: r.request().headers()["range"] || "", contentRange: h["content-range"] || "", acceptRanges: h["accept-ranges"] || "" });
    }
  });

  await login(page);
  await page.click('nav a[href="/admin/cdr"]');
  await page.waitForURL(/\/admin\/cdr$/);
  // The first visit: the last week, newest first, with its chart.
  assert.ok(await page.inputValue("#f-startTime"), "a default start");
  assert.ok((await page.locator("#cdr-table tr.call").count()) > 0, "calls of the last week");
  assert.ok((await page.locator("#cdr-chart g.bar").count()) >= 24, "bars per hour");

  // Filter: the address carries the filter (empty fields left out).
  await page.fill("#f-caller", env("CALLER"));
  await Promise.all([page.waitForURL(/caller=/), page.click("#cdr-filters button[type=submit]")]);
  const url = new URL(page.url());
  assert.equal(url.searchParams.get("caller"), env("CALLER"));
  assert.equal(url.searchParams.has("callee"), false, `empty fields are not sent: ${url}`);
  const sessions = await page.$$eval("#cdr-table tr.call", (rows) => rows.map((r) => r.dataset.session));
  assert.deepEqual(sessions, expectSessions);
  assert.equal(await page.getAttribute("#cdr-count", "data-count"), String(expectSessions.length));
  step("filtered");

  // Open the legs of a grouped call, then close them.
  const toggle = page.locator("#cdr-table button.legs-toggle").first();
  const ids = (await toggle.getAttribute("aria-controls")).split(" ");
  assert.ok(ids.length > 1);
  for (const id of ids) assert.equal(await page.isVisible(`#${id}`), false);
  await toggle.click();
  assert.equal(await toggle.getAttribute("aria-expanded"), "true");
  for (const id of ids) assert.equal(await page.isVisible(`#${id}`), true, `leg row ${id}`);
  const legCaller = await page.textContent(`#${ids[1]} td:nth-child(3)`);
  assert.match(legCaller, /^10\d\d/);

  // Play the recording: metadata loads through a Range request answered 206.
  const audio = page.locator(`audio[src="/admin/cdr/recording?file=${encodeURIComponent(recording)}"]`);
  assert.equal(await audio.count(), 1, "one player for the recording");
  await audio.scrollIntoViewIfNeeded();
  await audio.evaluate((a) => { a.preload = "metadata"; a.load(); });
  await page.waitForFunction((sel) => document.querySelector(sel).readyState >= 1,
    `audio[src="/admin/cdr/recording?file=${encodeURIComponent(recording)}"]`, { timeout: 15000 });
  const duration = await audio.evaluate((a) => a.duration);
  assert.ok(Math.abs(duration - 3) < 0.1, `a 3 s recording, got ${duration}`);
  // Playing is allowed without a gesture in this headless browser; if the
  // policy refuses it, the loaded metadata above still proves the player works.
  const played = await audio.evaluate(async (a) => {
    try { a.muted = true; await a.play(); await new Promise((r) => setTimeout(r, 400)); a.pause(); return a.currentTime; } catch (e) { return `refused: ${e.name}`; }
  });
  console.log(`played ${played}`);
  const ranged = media.find((m) => m.status === 206 && m.range.startsWith("bytes="));
  assert.ok(ranged, `a Range request answered 206: ${JSON.stringify(media)}`);
  assert.equal(ranged.acceptRanges, "bytes");
  assert.match(ranged.contentRange, /^bytes \d+-\d+\/\d+$/);
  console.log(`range ${ranged.status} ${ranged.contentRange}`);

  await shot(page, "cdr");

  // Export CSV: a download of the cdrapi's bytes for this filter.
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.click("a.export:text-is('CSV')"),
  ]);
  assert.equal(download.suggestedFilename(), "cdr-export.csv");
  const got = fs.readFileSync(await download.path(), "utf8");
  assert.equal(got, expectCsv);
  assert.ok(got.split("\n").length > expectSessions.length, "a line per leg");
  console.log(`export ${got.length} bytes, ${got.trimEnd().split("\n").length - 1} legs`);

  // A wrong value: the cdrapi's message beside the field, nothing crashes.
  await page.fill("#f-minDur", "ten");
  await Promise.all([page.waitForURL(/minDur=ten/), page.click("#cdr-filters button[type=submit]")]);
  assert.match(await page.textContent("#e-minDur"), /minDur: not a number: "ten"/);
  assert.equal(await page.getAttribute("#f-minDur", "aria-invalid"), "true");
  await shot(page, "cdr-error");
});
