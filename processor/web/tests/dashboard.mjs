// The dashboard in a real browser (Debian's chromium, driven by
// playwright-core), against a running `wattstream demo`: log in, the demo's
// three meters, a reading arriving live, a device's chart and its seal
// verified in the browser, a tampered proof shown as a mismatch, a meter
// owner's read token, the applets and epochs pages.
//
// Run by processor/tests/dashboard.rs, which starts the demo and passes:
//   WS_URL, WS_TOKEN (admin), WS_READ_DEVICE and WS_READ_TOKEN (a device's
//   read token); optional WS_SCREENSHOTS (a directory: each page is saved
//   there as PNG) and CHROMIUM (default /usr/bin/chromium).
// Exits non-zero with the failed step on stderr.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const url = process.env.WS_URL;
const token = process.env.WS_TOKEN;
const shots = process.env.WS_SCREENSHOTS;
assert.ok(url && token, 'WS_URL and WS_TOKEN are required');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const errors = [];
const step = (what) => console.log(`dashboard: ${what}`);
// Every wait below has playwright's 30 s timeout except the script's own
// promises: should one never settle, fail rather than hang the suite.
setTimeout(() => {
  console.error('dashboard: FAILED: the checks did not finish within 5 minutes');
  process.exit(1);
}, 300_000).unref();

async function newPage(viewport = { width: 1280, height: 860 }) {
  const page = await browser.newPage({ viewport });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  return page;
}

// Holds the first request to `pattern` that `wanted` picks until
// `release()`, then answers it with its real answer changed by `mark`: an
// older answer that arrives after newer ones. `asked` settles once it is held.
async function holdOne(page, pattern, wanted, mark) {
  let release, caught, request;
  const held = new Promise((r) => { release = r; });
  const asked = new Promise((r) => { caught = r; });
  await page.route(pattern, async (route) => {
    if (request || !wanted(route.request())) return route.continue();
    request = route.request();
    caught();
    await held;
    const res = await route.fetch();
    const body = await res.json();
    mark(body);
    await route.fulfill({ response: res, json: body });
  });
  return { asked, release, request: () => request };
}

async function shot(page, name, fullPage = true) {
  if (shots) await page.screenshot({ path: `${shots}/dashboard-${name}.png`, fullPage });
}

// The next reading the processor streams (read here, outside the browser).
async function nextReading() {
  const ctl = new AbortController();
  const r = await fetch(`${url}/v1/stream`, { headers: { Authorization: `Bearer ${token}` }, signal: ctl.signal });
  assert.equal(r.status, 200);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'the stream ended before a reading');
    buf += value;
    const m = buf.match(/event: reading\ndata: (.*)\n\n/);
    if (m) { ctl.abort(); return { at: Date.now(), event: JSON.parse(m[1]) }; }
  }
}

try {
  const page = await newPage();

  step('a wrong token is refused on the login form');
  await page.goto(url);
  await page.fill('input[name="token"]', 'not-the-token');
  await page.click('button[type="submit"]');
  await page.getByRole('alert').filter({ hasText: 'not the admin token' }).waitFor();
  errors.length = 0; // the browser logs the refused request (401) it was meant to get

  step('log in and see the three meters');
  await page.fill('input[name="token"]', token);
  await page.click('button[type="submit"]');
  const rows = page.locator('[data-testid="device-row"]');
  await rows.nth(2).waitFor();
  assert.equal(await rows.count(), 3);
  const table = await page.locator('table.fleet').innerText();
  for (const owner of ['demo-frugal', 'demo-average', 'demo-heavy']) assert.ok(table.includes(owner), `${owner} in ${table}`);
  assert.equal(await page.locator('[data-testid="device-row"][data-status="online"]').count(), 3, 'all three online');
  await page.locator('[data-testid="link-state"][data-state="live"]').waitFor();

  step('a new reading arrives on the fleet page through the stream (fleet reloads are blocked)');
  await page.route('**/v1/fleet*', (route) => route.abort());
  const mark = errors.length;
  const { at, event } = await nextReading();
  const row = page.locator(`[data-testid="device-row"][data-device-id="${event.device_id}"][data-last-event="${event.event_id}"]`);
  await row.waitFor({ timeout: 15000 });
  console.log(`dashboard: reading on the page ${Date.now() - at} ms after the stream delivered it`);
  assert.equal(await row.locator('[data-testid="power"]').innerText(), `${event.w.toFixed(1)} W`);
  await page.unroute('**/v1/fleet*');
  // A ledger event in the meantime asks for the page again: the browser logs
  // the blocked request, which this step caused.
  errors.splice(mark, errors.length, ...errors.slice(mark).filter((e) => !e.includes('net::ERR_FAILED')));
  await shot(page, 'fleet');

  step('the sort button keeps the keyboard focus while a ledger event refreshes the rows');
  // The page asks for its rows again on ledger events (at most every 5 s) and
  // draws the header anew: a keyboard user must not be thrown out of it.
  await page.getByRole('button', { name: 'Balance' }).focus();
  const before = await page.locator('table.fleet thead th', { hasText: 'Balance' }).elementHandle();
  await page.waitForFunction((th) => !th.isConnected, before);
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Balance', 'the focus is still on the Balance button');

  step('sort by balance from the keyboard; a refresh asked for before the sort does not undo it');
  // Hold the next refresh in the old order (a ledger event asks for it),
  // sort, then let the old answer through, marked: the page must not draw it.
  const oldFleet = await holdOne(page, '**/v1/fleet*',
    (r) => new URL(r.url()).searchParams.get('sort') === 'registered',
    (b) => { for (const d of b.devices) d.owner = 'older-answer'; });
  await oldFleet.asked;
  await page.keyboard.press('Enter');
  const sorted = page.locator('th[aria-sort="descending"]', { hasText: 'Balance' });
  await sorted.waitFor();
  const drawn = await sorted.elementHandle();
  oldFleet.release();
  // The next drawing of the header: the old answer's if the page took it.
  await page.waitForFunction((th) => !th.isConnected, drawn);
  const shown = await page.locator('table.fleet').innerText();
  assert.ok(!shown.includes('older-answer'), `the older answer is not drawn over the sorted rows: ${shown}`);
  assert.equal(await page.locator('table.fleet thead th', { hasText: 'Balance' }).getAttribute('aria-sort'), 'descending');
  await page.unroute('**/v1/fleet*');
  await rows.nth(2).waitFor();

  step('open the frugal meter: the chart has points, the seal is verified');
  const frugal = page.locator('[data-testid="device-row"]', { hasText: 'demo-frugal' });
  const frugalId = await frugal.getAttribute('data-device-id');
  await frugal.getByRole('link').click();
  await page.waitForURL(`**/#/device/${frugalId}`);
  const chart = page.locator('[data-testid="power-chart"]');
  await chart.locator('canvas').waitFor();
  assert.ok(Number(await chart.getAttribute('data-points')) > 0, 'the chart has points');
  const seal = page.locator('[data-testid="seal-status"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="seal-status"]').textContent !== 'checking…');
  assert.equal(await seal.innerText(), 'verified', await page.locator('.why').innerText());
  for (const range of ['Day', 'Week']) {
    await page.getByLabel(range).check();
    await page.waitForFunction(() => document.querySelector('[data-testid="power-chart"] canvas'));
  }
  await page.getByLabel('Hour').check();
  await shot(page, 'device');

  step('a chart refresh asked for before a new range does not draw over it');
  // Hold the hour's series (a reading asks for it again), pick Day, let the
  // hour's answer through: the chart must stay on the day.
  const hourSeries = (u) => u.pathname.endsWith('/series') && u.searchParams.get('range') === 'hour';
  const oldHour = await holdOne(page, hourSeries, () => true, () => {});
  await oldHour.asked;
  await page.getByLabel('Day').check();
  await page.locator('[data-testid="power-chart"][data-range="day"]').waitFor({ state: 'attached' });
  // Every range the chart is drawn in from here on. (Waiting for the next
  // drawing instead timed out when no reading came to ask for one.)
  await page.evaluate(() => {
    const el = document.querySelector('[data-testid="power-chart"]');
    window.drawnRanges = [];
    new MutationObserver(() => window.drawnRanges.push(el.dataset.range))
      .observe(el, { attributes: true, attributeFilter: ['data-range'] });
  });
  const hourIn = page.waitForResponse((r) => r.request() === oldHour.request());
  oldHour.release();
  await hourIn;
  // A range of its own, asked for after the hour's answer was in and drawn
  // a network round trip later.
  await page.getByLabel('Week').check();
  await page.locator('[data-testid="power-chart"][data-range="week"]').waitFor({ state: 'attached' });
  const ranges = await page.evaluate(() => window.drawnRanges);
  assert.ok(!ranges.includes('hour'), `the hour's late answer was drawn: ${ranges}`);
  await page.unroute(hourSeries);

  step('a tampered proof shows mismatch; no seal shows no seal yet');
  const tamper = (edit) => async (route) => {
    const res = await route.fetch();
    const body = await res.json();
    edit(body);
    await route.fulfill({ response: res, json: body });
  };
  await page.route('**/v1/devices/*/rewards', tamper((b) => { b.proof.balance = (BigInt(b.proof.balance) + 1n).toString(); }));
  await page.reload();
  await page.waitForFunction(() => document.querySelector('[data-testid="seal-status"]')?.textContent === 'mismatch');
  await page.unroute('**/v1/devices/*/rewards');
  await page.route('**/v1/devices/*/rewards', tamper((b) => { b.latest_epoch.signature = b.latest_epoch.signature.replace(/^../, (x) => (x === '00' ? '01' : '00')); }));
  await page.reload();
  await page.waitForFunction(() => document.querySelector('[data-testid="seal-status"]')?.textContent === 'mismatch');
  await page.unroute('**/v1/devices/*/rewards');
  await page.route('**/v1/devices/*/rewards', tamper((b) => { b.latest_epoch = null; b.proof = null; }));
  await page.reload();
  await page.waitForFunction(() => document.querySelector('[data-testid="seal-status"]')?.textContent === 'no seal yet');
  await page.unroute('**/v1/devices/*/rewards');
  await page.reload();
  await page.waitForFunction(() => document.querySelector('[data-testid="seal-status"]')?.textContent === 'verified');

  step('the applets page lists the deployed chain with its calls');
  await page.getByRole('link', { name: 'Applets' }).click();
  // The chain's table by its caption: until the applets page has rendered,
  // the device page's tables are still the first on the page (seen in CI).
  const chain = page.locator('table').filter({ has: page.locator('caption', { hasText: 'Deployed, in the order' }) });
  await chain.locator('tbody tr').first().waitFor();
  const firstRow = await chain.locator('tbody tr').first().innerText();
  assert.ok(firstRow.includes('identity'), firstRow);
  const calls = await chain.locator('tbody tr').first().locator('td').nth(6).innerText();
  assert.ok(Number(calls.replace(/,/g, '')) > 0, `identity calls: ${calls}`);
  await shot(page, 'applets', false);

  step('an applets page answer that comes after a newer one does not draw over it');
  // Two loads of the project (the picker's change), the first held until the
  // second is drawn, then let through, marked. Whatever draws it is caught as
  // it happens; a third load, asked for once the first's answer is in, is
  // drawn after that answer's turn has passed. (Not a live refresh: the
  // demo's meters may have stopped by now.)
  const oldApplets = await holdOne(page, '**/v1/projects/*/applets', () => true,
    (b) => { for (const a of b.applets) a.name = 'older-answer'; });
  await page.evaluate(() => {
    window.olderDrawn = false;
    new MutationObserver(() => { if (document.body.textContent.includes('older-answer')) window.olderDrawn = true; })
      .observe(document.body, { childList: true, subtree: true, characterData: true });
  });
  const loadAgain = async () => {
    const drawn = await chain.elementHandle();
    await page.locator('#project').dispatchEvent('change');
    await page.waitForFunction((t) => !t.isConnected, drawn);
  };
  await page.locator('#project').dispatchEvent('change');
  await oldApplets.asked;
  await loadAgain();
  const oldAnswered = page.waitForResponse((r) => r.request() === oldApplets.request());
  oldApplets.release();
  await oldAnswered;
  await loadAgain();
  assert.equal(await page.evaluate(() => window.olderDrawn), false, 'the older answer was drawn over the newer one');
  assert.ok((await chain.locator('tbody tr').first().innerText()).includes('identity'));
  await page.unroute('**/v1/projects/*/applets');

  step('the epochs page lists sealed epochs with verified signatures');
  await page.getByRole('link', { name: 'Epochs' }).click();
  await page.locator('[data-testid="epoch-row"]').first().waitFor();
  assert.ok(await page.locator('[data-testid="epoch-row"] td.ok').count() > 0);
  assert.equal(await page.locator('[data-testid="epoch-row"] td.bad').count(), 0);
  await shot(page, 'epochs');
  await page.close();

  if (process.env.WS_READ_TOKEN) {
    step('a meter owner logs in with the read token and sees only that meter');
    const owner = await newPage({ width: 390, height: 844 });
    await owner.goto(url);
    await owner.fill('input[name="token"]', process.env.WS_READ_TOKEN);
    await owner.fill('input[name="device"]', process.env.WS_READ_DEVICE);
    await owner.click('button[type="submit"]');
    await owner.waitForFunction(() => document.querySelector('[data-testid="seal-status"]')?.textContent === 'verified');
    assert.ok(await owner.locator('#nav').isHidden(), 'no fleet navigation for an owner');
    await owner.goto(`${url}/#/fleet`);
    await owner.waitForURL(`**/#/device/${process.env.WS_READ_DEVICE}`);
    await owner.locator('[data-testid="link-state"][data-state="live"]').waitFor();
    const [wide, screen] = await owner.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(wide <= screen, `the page fits a phone's width (${wide} px on a ${screen} px screen)`);
    await shot(owner, 'owner-phone');
    await owner.close();
  }

  assert.deepEqual(errors, [], 'the pages ran without script errors');
  step('all checks passed');
} catch (e) {
  console.error(`dashboard: FAILED: ${e.stack || e}`);
  if (errors.length) console.error(errors.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
