// The fleet page: every device, filtered, sorted and paginated by the
// server (GET /v1/fleet), live readings patched into the rows shown.

import { h, sparkline, fmtW, fmtTok, fmtInt, ago, short, throttle, keepFocus, newest } from './ui.js';
import { get } from './api.js';

const COLUMNS = [
  ['status', 'Status'], ['device', 'Device'], ['owner', 'Owner'], [null, 'Power'],
  [null, 'Last hour'], ['last_seen', 'Last seen'], ['accepted', 'Accepted'], ['rejected', 'Rejected'], ['balance', 'Balance'],
];

const view = { offset: 0, limit: 50, sort: 'registered', desc: false, q: '', status: '' };

export async function fleetPage({ main, listen, onTeardown }) {
  const counts = h('p', { class: 'counts', 'aria-live': 'polite' });
  const q = h('input', { id: 'q', name: 'q', type: 'search', value: view.q, placeholder: 'id or owner' });
  const status = h('select', { id: 'status', name: 'status' },
    ...[['', 'any'], ['online', 'online'], ['offline', 'offline'], ['revoked', 'revoked']].map(([v, t]) => h('option', { value: v, selected: v === view.status }, t)));
  const size = h('select', { id: 'size', name: 'size' }, ...[25, 50, 100, 200].map((n) => h('option', { value: n, selected: n === view.limit }, n)));
  const head = h('tr');
  const body = h('tbody');
  const pager = h('div', { class: 'pager' });
  main.replaceChildren(
    h('h1', {}, 'Fleet'), counts,
    h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); view.q = q.value.trim(); view.offset = 0; load(); } },
      h('label', { for: 'q' }, 'Search'), q,
      h('label', { for: 'status' }, 'Status'), status,
      h('label', { for: 'size' }, 'Rows'), size,
      h('button', { type: 'submit' }, 'Filter')),
    h('div', { class: 'scroll' }, h('table', { class: 'fleet' }, h('caption', { class: 'sr' }, 'Devices'), h('thead', {}, head), body)),
    pager);
  status.addEventListener('change', () => { view.status = status.value; view.offset = 0; load(); });
  size.addEventListener('change', () => { view.limit = Number(size.value); view.offset = 0; load(); });

  let now = Date.now() / 1000, onlineAfter = 15;
  const rows = new Map();

  function header() {
    keepFocus(head, () => head.replaceChildren(...COLUMNS.map(([key, label]) => {
      if (!key) return h('th', { scope: 'col' }, label);
      const sorted = view.sort === key;
      return h('th', { scope: 'col', 'aria-sort': sorted ? (view.desc ? 'descending' : 'ascending') : 'none' },
        h('button', { type: 'button', class: 'sort', 'data-focus': key, onclick: () => {
          view.desc = sorted ? !view.desc : key === 'balance' || key === 'last_seen' || key === 'accepted';
          view.sort = key; view.offset = 0; load();
        } }, label, sorted ? (view.desc ? ' ▾' : ' ▴') : ''));
    })));
  }

  function row(d) {
    const cells = {
      status: h('td', { class: `status ${d.status}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), d.status),
      power: h('td', { class: 'num', 'data-testid': 'power' }, fmtW(d.last_w)),
      seen: h('td', {}, ago(d.last_seen, now)),
      accepted: h('td', { class: 'num' }, fmtInt(d.accepted)),
    };
    const tr = h('tr', { 'data-testid': 'device-row', 'data-device-id': d.device_id, 'data-status': d.status },
      cells.status,
      h('td', {}, h('a', { href: `#/device/${d.device_id}`, title: d.device_id }, short(d.device_id))),
      h('td', { class: 'owner', title: d.owner ?? '' }, d.owner ? short(d.owner) : '–'),
      cells.power,
      h('td', {}, sparkline(d.spark, 'power over the last hour')),
      cells.seen, cells.accepted,
      h('td', { class: 'num' }, fmtInt(d.rejected)),
      h('td', { class: 'num' }, fmtTok(d.balance)));
    rows.set(d.device_id, { tr, cells, d });
    return tr;
  }

  const turn = newest();
  async function fetchPage() {
    const mine = turn();
    const p = new URLSearchParams({ offset: view.offset, limit: view.limit, sort: view.sort, desc: view.desc });
    if (view.q) p.set('q', view.q);
    if (view.status) p.set('status', view.status);
    const f = await get(`/v1/fleet?${p}`);
    if (!mine()) return;
    now = f.now; onlineAfter = f.online_after_s;
    const c = f.counts;
    counts.textContent = `${fmtInt(c.all)} devices: ${fmtInt(c.online)} online, ${fmtInt(c.offline)} offline, ${fmtInt(c.revoked)} revoked`;
    header();
    rows.clear();
    body.replaceChildren(...f.devices.map(row));
    if (!f.devices.length) body.replaceChildren(h('tr', {}, h('td', { colspan: COLUMNS.length }, 'No device matches.')));
    const last = Math.min(f.offset + f.limit, f.total);
    keepFocus(pager, () => pager.replaceChildren(
      h('button', { type: 'button', 'data-focus': 'previous', disabled: f.offset === 0, onclick: () => { view.offset = Math.max(0, view.offset - view.limit); load(); } }, '← Previous'),
      h('span', { 'aria-live': 'polite' }, f.total ? `${fmtInt(f.offset + 1)}–${fmtInt(last)} of ${fmtInt(f.total)}` : '0 of 0'),
      h('button', { type: 'button', 'data-focus': 'next', disabled: last >= f.total, onclick: () => { view.offset += view.limit; load(); } }, 'Next →')));
  }

  // A page of rows, then the stream for exactly those rows.
  async function load() {
    await fetchPage();
    follow();
  }
  const reload = throttle(() => load().catch(() => {}), 5000);
  // The stream carries the readings of the rows shown only: a new page of
  // rows subscribes again (a 10,000-meter fleet sends 2,000 readings a
  // second; the page needs 50 meters' worth).
  let watching = '';
  const onEvent = (name, e) => {
    if (name === 'reading') {
      const r = rows.get(e.device_id);
      if (!r) return;
      now = Math.max(now, Date.now() / 1000);
      r.d.last_seen = now;
      r.tr.dataset.lastEvent = e.event_id;
      r.cells.power.textContent = fmtW(e.w);
      r.cells.seen.textContent = ago(now, now);
      r.cells.accepted.textContent = fmtInt(++r.d.accepted);
      if (r.d.status === 'offline') {
        r.d.status = 'online';
        r.tr.dataset.status = 'online';
        r.cells.status.className = 'status online';
        r.cells.status.lastChild.textContent = 'online';
      }
      r.tr.classList.remove('flash'); void r.tr.offsetWidth; r.tr.classList.add('flash');
    } else if (name === 'ledger' || name === 'seal' || name === 'lagged') {
      reload();
    }
  };
  const follow = () => {
    const ids = [...rows.keys()].sort().join(',');
    if (ids === watching) return;
    watching = ids;
    listen({ devices: [...rows.keys()] }, onEvent);
  };
  await load();
  // Devices that stop reporting turn offline without a request.
  const tick = setInterval(() => {
    const t = Date.now() / 1000;
    for (const { d, tr, cells } of rows.values()) {
      cells.seen.textContent = ago(d.last_seen, t);
      if (d.status === 'online' && d.last_seen < t - onlineAfter) {
        d.status = 'offline';
        tr.dataset.status = 'offline';
        cells.status.className = 'status offline';
        cells.status.lastChild.textContent = 'offline';
      }
    }
  }, 5000);
  onTeardown(() => clearInterval(tick));
}
