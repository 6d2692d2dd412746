// The epochs page: the newest seals with their roots and totals, each
// seal's signature checked here, and the ledger head.

import { h, fmtInt, fmtTok, fmtTime, short, throttle } from './ui.js';
import { get } from './api.js';
import { sealSigned } from './verify.js';

export async function epochsPage({ main, listen }) {
  const headEl = h('p'), table = h('div', { class: 'scroll' });
  main.replaceChildren(h('h1', {}, 'Epochs'), headEl, table);
  async function load() {
    const [{ epochs, epoch_s: epochS }, head] = await Promise.all([get('/v1/epochs?limit=48'), get('/v1/ledger/head')]);
    headEl.textContent = `Ledger head: entry ${fmtInt(head.seq)}, hash ${short(head.hash)}; processor key ${short(head.processor_public_key)}; epochs of ${epochS} s.`;
    const signed = await Promise.all(epochs.map((e) => sealSigned(e).catch(() => false)));
    table.replaceChildren(h('table', {},
      h('caption', {}, 'Sealed epochs, newest first'),
      h('thead', {}, h('tr', {}, ...['Epoch', 'Starts', 'Devices', 'Total tokens', 'Entries to', 'Root', 'Signature'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ...(epochs.length ? epochs.map((e, i) => h('tr', { 'data-testid': 'epoch-row', 'data-epoch': e.epoch },
        h('td', { class: 'num' }, e.epoch), h('td', {}, fmtTime(e.epoch * epochS)),
        h('td', { class: 'num' }, fmtInt(e.devices)), h('td', { class: 'num' }, fmtTok(e.total_tokens)),
        h('td', { class: 'num' }, fmtInt(e.upto_seq)), h('td', {}, h('code', { title: e.root }, short(e.root))),
        h('td', { class: signed[i] ? 'ok' : 'bad' }, signed[i] ? 'verified' : 'mismatch')))
        : [h('tr', {}, h('td', { colspan: 7 }, 'No epoch is sealed yet.'))]))));
  }
  await load();
  const reload = throttle(() => load().catch(() => {}), 3000);
  listen(null, (name) => { if (name === 'seal' || name === 'lagged') reload(); });
}
