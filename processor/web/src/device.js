// A device's page: power over time (hour/day/week, downsampled by the
// server, with its min/max band), energy per day, rewards per epoch, and the
// latest seal with this meter's proof verified here with WebCrypto.

import { h, fmtW, fmtWh, fmtTok, fmtInt, fmtTime, ago, notice, throttle, newest } from './ui.js';
import { get } from './api.js';
import { checkRewards } from './verify.js';

const RANGES = [['hour', 'Hour'], ['day', 'Day'], ['week', 'Week']];

function powerChart(el, series, range) {
  const b = series.buckets;
  const data = [b.map((x) => x.t), b.map((x) => x.avg_w), b.map((x) => x.min_w), b.map((x) => x.max_w)];
  el.dataset.points = String(b.length);
  el.dataset.range = range;
  el.replaceChildren();
  if (!b.length) { el.append(notice('No readings in this range.')); return null; }
  const width = Math.max(280, el.clientWidth || 600);
  /* global uPlot */
  return new uPlot({
    width, height: 260,
    // The whole range asked for, whatever part of it has readings.
    scales: { x: { time: true, range: [series.from, series.to] } },
    series: [
      {},
      { label: 'mean', stroke: '#1d4ed8', width: 2, value: (u, v) => fmtW(v) },
      { label: 'min', stroke: '#7c9be0', value: (u, v) => fmtW(v) },
      { label: 'max', stroke: '#7c9be0', value: (u, v) => fmtW(v) },
    ],
    bands: [{ series: [3, 2], fill: 'rgba(29, 78, 216, 0.12)' }],
    axes: [{}, { label: 'W', size: 60 }],
  }, data, el);
}

// A bar `share` (0..1) of the widest (set through CSSOM: the page's
// Content-Security-Policy allows no inline style attributes).
function bar(share) {
  const el = h('span', { class: 'bar', 'aria-hidden': 'true' });
  el.style.width = `${Math.max(2, share * 120)}px`;
  return el;
}

function energyTable(week) {
  const rows = week.buckets;
  const max = Math.max(...rows.map((r) => r.energy_wh), 0.001);
  return h('table', { class: 'bars' },
    h('caption', {}, 'Energy per day'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day'), h('th', { scope: 'col' }, 'Energy'))),
    h('tbody', {}, ...(rows.length ? rows.map((r) => h('tr', {},
      h('th', { scope: 'row' }, new Date(r.t * 1000).toLocaleDateString()),
      h('td', {}, bar(r.energy_wh / max), fmtWh(r.energy_wh))))
      : [h('tr', {}, h('td', { colspan: 2 }, 'No readings this week.'))])));
}

function epochsTable(epochs, epochS) {
  return h('div', { class: 'scroll' }, h('table', {},
    h('caption', {}, 'Rewards per epoch'),
    h('thead', {}, h('tr', {}, ...['Epoch', 'Starts', 'Tokens', 'Sealed'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, ...(epochs.length ? epochs.map((e) => h('tr', {},
      h('td', { class: 'num' }, e.epoch), h('td', {}, fmtTime(e.epoch * epochS)),
      h('td', { class: 'num' }, fmtTok(e.tokens)), h('td', {}, e.sealed ? 'yes' : 'open'))) :
      [h('tr', {}, h('td', { colspan: 4 }, 'No rewards yet.'))]))));
}

export async function devicePage({ main, listen, onTeardown }, id) {
  const dev = await get(`/v1/devices/${id}`);
  let range = 'hour';
  const chartEl = h('div', { class: 'chart', 'data-testid': 'power-chart', role: 'img', 'aria-label': 'Power over time' });
  const picker = h('fieldset', { class: 'range' }, h('legend', {}, 'Range'),
    ...RANGES.map(([v, t]) => h('label', {}, h('input', { type: 'radio', name: 'range', value: v, checked: v === range,
      onchange: () => { range = v; drawChart(); } }), t)));
  const last = h('p', { class: 'big', 'aria-live': 'polite', 'data-testid': 'last-reading' });
  const sealStatus = h('strong', { 'data-testid': 'seal-status' }, 'checking…');
  const sealWhy = h('p', { class: 'why' });
  const balance = h('p', { class: 'big' });
  const energy = h('div');
  const epochs = h('div');
  const counts = dev.counts;
  main.replaceChildren(
    h('h1', {}, 'Meter ', h('code', {}, id)),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Status'), h('dd', {}, dev.status),
      h('dt', {}, 'Owner'), h('dd', {}, dev.owner ?? 'none'),
      h('dt', {}, 'Registered'), h('dd', {}, fmtTime(dev.registered_at)),
      h('dt', {}, 'Envelopes'), h('dd', {}, `${fmtInt(counts.accepted)} accepted, ${fmtInt(counts.duplicate)} duplicate, ${fmtInt(counts.rejected + counts.conflict)} rejected`)),
    h('section', { 'aria-labelledby': 'power-h' }, h('h2', { id: 'power-h' }, 'Power'), last, picker, chartEl),
    h('div', { class: 'two' },
      h('section', { 'aria-labelledby': 'rewards-h' }, h('h2', { id: 'rewards-h' }, 'Rewards'), balance,
        h('p', {}, 'Latest seal: ', sealStatus), sealWhy, epochs),
      h('section', { 'aria-labelledby': 'energy-h' }, h('h2', { id: 'energy-h' }, 'Energy'), energy)));

  let chart = null;
  let lastAt = dev.last_reading?.timestamp ?? null;
  const showLast = (w, t) => { last.textContent = w === undefined ? 'No reading yet' : `${fmtW(w)} · ${ago(t)}`; };
  showLast(dev.last_reading?.sensor_reading, lastAt);

  // A refresh asked for before a new range must not draw over it, nor an
  // older rewards answer over a newer one.
  const chartTurn = newest(), rewardsTurn = newest();
  async function drawChart() {
    const mine = chartTurn(), asked = range;
    const s = await get(`/v1/devices/${id}/series?range=${asked}`);
    if (!mine()) return;
    if (chart) chart.destroy();
    chart = powerChart(chartEl, s, asked);
  }
  async function drawEnergy() {
    energy.replaceChildren(energyTable(await get(`/v1/devices/${id}/series?range=week&bucket_s=86400`)));
  }
  async function drawRewards() {
    const mine = rewardsTurn();
    const [r, e] = await Promise.all([get(`/v1/devices/${id}/rewards`), get(`/v1/devices/${id}/epochs?limit=12`)]);
    if (!mine()) return;
    balance.textContent = `${fmtTok(r.balance)} tokens · ${fmtTok(r.rate_per_h)} per hour`;
    epochs.replaceChildren(epochsTable(e.epochs, e.epoch_s));
    const v = await checkRewards(id, r);
    if (!mine()) return;
    sealStatus.textContent = v.status;
    sealStatus.className = `seal ${v.status.replace(/ /g, '-')}`;
    sealWhy.textContent = v.why;
  }
  await Promise.all([drawChart(), drawEnergy(), drawRewards()]);

  const refreshChart = throttle(() => drawChart().catch(() => {}), 5000);
  const refreshRewards = throttle(() => drawRewards().catch(() => {}), 3000);
  listen({ device: id }, (name, e) => {
    if (name === 'reading') {
      lastAt = e.timestamp;
      showLast(e.w, e.timestamp);
      refreshChart();
    } else if (name === 'ledger' || name === 'seal' || name === 'lagged') {
      refreshRewards();
    }
  });
  const tick = setInterval(() => { if (lastAt) last.textContent = last.textContent.replace(/·.*$/, `· ${ago(lastAt)}`); }, 5000);
  const resize = () => chart && chart.setSize({ width: Math.max(280, chartEl.clientWidth), height: 260 });
  window.addEventListener('resize', resize);
  onTeardown(() => { clearInterval(tick); window.removeEventListener('resize', resize); if (chart) chart.destroy(); });
}
