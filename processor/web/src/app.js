// The dashboard: a hash router over four pages (fleet, device, applets,
// epochs), the login form, and the one live stream the shown page listens to.

import { h, notice } from './ui.js';
import { session, get, subscribe, ApiError } from './api.js';
import { fleetPage } from './fleet.js';
import { devicePage } from './device.js';
import { appletsPage } from './applets.js';
import { epochsPage } from './epochs.js';

const main = document.getElementById('main');
const linkEl = document.getElementById('link');
const nav = document.getElementById('nav');
let stopStream = null;
let teardown = null;

// The shown page's stream (`only`: see api.js `subscribe`), events to
// `onEvent`; a page calls it again when what it shows changes.
export function listen(only, onEvent) {
  if (stopStream) stopStream();
  stopStream = subscribe(only, onEvent, (state) => {
    linkEl.textContent = state === 'live' ? 'live' : state;
    linkEl.dataset.state = state;
    if (state === 'unauthorized') logout('The token was refused.');
  });
}

function loginPage(message) {
  nav.hidden = true;
  const token = h('input', { name: 'token', id: 'token', type: 'password', autocomplete: 'current-password', required: true });
  const device = h('input', { name: 'device', id: 'device', autocomplete: 'off', spellcheck: 'false', placeholder: 'only with a device read token' });
  const status = h('p', { class: 'notice error', role: 'alert', hidden: !message }, message || '');
  const form = h('form', { class: 'login', onsubmit: async (e) => {
    e.preventDefault();
    const t = token.value.trim(), d = device.value.trim().toLowerCase().replace(/^0x/, '');
    session.set(t, d || null);
    try {
      await get(d ? `/v1/devices/${d}` : '/v1/fleet?limit=1');
      location.hash = d ? `#/device/${d}` : '#/fleet';
      route();
    } catch (err) {
      session.clear();
      status.hidden = false;
      status.textContent = err instanceof ApiError && err.status === 401
        ? (d ? 'That token does not open this device.' : 'That is not the admin token (a meter owner enters the device id too).')
        : `Could not log in: ${err.message}`;
    }
  } },
  h('h1', {}, 'Log in'),
  h('p', {}, 'Operators: the admin token. Meter owners: the device\u2019s read token and its id. The token is kept for this browser session only.'),
  h('label', { for: 'token' }, 'Token'), token,
  h('label', { for: 'device' }, 'Device id (meter owners)'), device,
  h('button', { type: 'submit' }, 'Log in'), status);
  main.replaceChildren(form);
  token.focus();
}

function logout(message) {
  session.clear();
  if (stopStream) { stopStream(); stopStream = null; }
  linkEl.textContent = 'offline';
  linkEl.dataset.state = 'offline';
  location.hash = '#/';
  loginPage(message);
}

async function route() {
  if (teardown) { teardown(); teardown = null; }
  if (stopStream) { stopStream(); stopStream = null; }
  const [page, arg] = location.hash.replace(/^#\/?/, '').split('/');
  if (!session.token) return loginPage();
  const owner = session.device;
  nav.hidden = !!owner;
  for (const a of nav.querySelectorAll('a')) a.setAttribute('aria-current', a.dataset.page === page ? 'page' : 'false');
  const ctx = { main, listen, onTeardown: (f) => { teardown = f; } };
  try {
    if (owner && !(page === 'device' && arg === owner)) { location.hash = `#/device/${owner}`; return; }
    if (page === 'device' && arg) await devicePage(ctx, arg);
    else if (page === 'applets') await appletsPage(ctx);
    else if (page === 'epochs') await epochsPage(ctx);
    else await fleetPage(ctx);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return logout('The token was refused.');
    main.replaceChildren(notice(`Could not load this page: ${err.message}`, 'error'));
  }
  main.focus({ preventScroll: true });
}

document.getElementById('logout').addEventListener('click', () => logout());
window.addEventListener('hashchange', route);
route();
