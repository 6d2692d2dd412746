// The applets page: a project's deployed chain in order, each applet's
// calls, failures and recent times, and the project's recent logs and
// failures.

import { h, fmtInt, fmtTime, short, throttle, newest } from './ui.js';
import { get } from './api.js';

const ms = (v) => (v === null || v === undefined ? '–' : `${v < 1 ? v.toFixed(3) : v.toFixed(1)} ms`);

function rowsTable(caption, rows, columns, cls = '') {
  return h('div', { class: 'scroll' }, h('table', { class: cls },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ...columns.map(([, t]) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, ...(rows.length ? rows.map((r) => h('tr', {}, ...columns.map(([k, , f]) => h('td', {}, f ? f(r[k], r) : r[k] ?? '–'))))
      : [h('tr', {}, h('td', { colspan: columns.length }, 'None.'))]))));
}

export async function appletsPage({ main, listen }) {
  const { default: dflt, projects } = await get('/v1/projects');
  let project = dflt;
  const pick = h('select', { id: 'project', name: 'project' }, ...projects.map((p) => h('option', { value: p, selected: p === project }, p)));
  const chain = h('div'), logs = h('div'), failures = h('div');
  main.replaceChildren(h('h1', {}, 'Applets'),
    h('p', {}, h('label', { for: 'project' }, 'Project '), pick, ` (events posted to /v1/events run project “${dflt}”)`),
    chain, failures, logs);
  // A refresh asked for before a change of project must not draw over it.
  const turn = newest();
  async function load() {
    const mine = turn();
    const [a, l, f] = await Promise.all([
      get(`/v1/projects/${encodeURIComponent(project)}/applets`),
      get(`/v1/projects/${encodeURIComponent(project)}/logs?limit=30`),
      get(`/v1/projects/${encodeURIComponent(project)}/failures?limit=20`),
    ]);
    if (!mine()) return;
    const rows = a.applets.map((x) => ({ ...x, ...(a.stats[x.name] ?? {}) }));
    chain.replaceChildren(rowsTable('Deployed, in the order each event meets them', rows, [
      ['position', '#'], ['name', 'Applet'], ['hash', 'Module', (v) => h('code', { title: v }, short(v))],
      ['handler', 'Handler'], ['gate', 'Gate', (v) => (v ? 'yes' : 'no')], ['mints', 'Mints', (v) => (v ? 'yes' : 'no')],
      ['ok', 'Calls', fmtInt], ['failed', 'Failures', fmtInt], ['p50_ms', 'p50', ms], ['p99_ms', 'p99 (last 5–10 min)', ms],
      ['last_failure', 'Last failure', (v) => (v ? fmtTime(v) : '–')],
    ]));
    failures.replaceChildren(rowsTable('Recent failures, newest first', f.failures ?? [], [
      ['at', 'When', fmtTime], ['applet', 'Applet'], ['code', 'Code'], ['event_id', 'Event'], ['error', 'Error'],
    ], 'wrap-last'));
    logs.replaceChildren(rowsTable('Recent logs, newest first', (l.logs ?? []).reverse(), [
      ['at', 'When', fmtTime], ['applet', 'Applet'], ['level', 'Level'], ['event_id', 'Event'], ['message', 'Message'],
    ], 'wrap-last'));
  }
  pick.addEventListener('change', () => { project = pick.value; load(); });
  await load();
  const reload = throttle(() => load().catch(() => {}), 5000);
  listen(null, (name) => { if (name === 'reading' || name === 'lagged') reload(); });
}
