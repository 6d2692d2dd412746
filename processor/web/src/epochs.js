// The epochs page: the newest seals with their roots and totals, each
// seal's signature checked here, their settlement on chain (when the
// processor is told the settlement chain), and the ledger head.

const SETTLED = { settled: 'settled', not_settled: 'not settled', root_differs: 'ROOT DIFFERS', unknown: 'unknown' };

import { h, fmtInt, fmtTok, fmtTime, short, throttle, newest } from './ui.js';
import { get } from './api.js';
import { sealSigned } from './verify.js';

export async function epochsPage({ main, listen }) {
  const headEl = h('p'), table = h('div', { class: 'scroll' });
  main.replaceChildren(h('h1', {}, 'Epochs'), headEl, table);
  // Each seal's signature is checked before drawing: a slow check of an
  // older answer must not draw over a newer one.
  const turn = newest();
  async function load() {
    const mine = turn();
    const [{ epochs, epoch_s: epochS, settlement_chain: chain }, head] = await Promise.all([get('/v1/epochs?limit=48'), get('/v1/ledger/head')]);
    const signed = await Promise.all(epochs.map((e) => sealSigned(e).catch(() => false)));
    if (!mine()) return;
    headEl.textContent = `Ledger head: entry ${fmtInt(head.seq)}, hash ${short(head.hash)}; processor key ${short(head.processor_public_key)}; epochs of ${epochS} s.`;
    table.replaceChildren(h('table', {},
      h('caption', {}, 'Sealed epochs, newest first'),
      h('thead', {}, h('tr', {}, ...['Epoch', 'Starts', 'Devices', 'Total tokens', 'Entries to', 'Root', 'Signature']
        .concat(chain ? [`Settled on chain ${chain}`] : []).map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ...(epochs.length ? epochs.map((e, i) => h('tr', { 'data-testid': 'epoch-row', 'data-epoch': e.epoch },
        h('td', { class: 'num' }, e.epoch), h('td', {}, fmtTime(e.epoch * epochS)),
        h('td', { class: 'num' }, fmtInt(e.devices)), h('td', { class: 'num' }, fmtTok(e.total_tokens)),
        h('td', { class: 'num' }, fmtInt(e.upto_seq)), h('td', {}, h('code', { title: e.root }, short(e.root))),
        h('td', { class: signed[i] ? 'ok' : 'bad' }, signed[i] ? 'verified' : 'mismatch'),
        chain ? h('td', { class: `settle ${e.settlement?.state}`, title: e.settlement?.error ?? e.settlement?.on_chain ?? '', 'data-testid': 'settlement' },
          SETTLED[e.settlement?.state] ?? '–') : null))
        : [h('tr', {}, h('td', { colspan: chain ? 8 : 7 }, 'No epoch is sealed yet.'))]))));
  }
  await load();
  const reload = throttle(() => load().catch(() => {}), 3000);
  listen(null, (name) => { if (name === 'seal' || name === 'lagged') reload(); });
}
