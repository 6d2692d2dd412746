// DOM helpers and formatters. Everything the server sends is text: `h` sets
// textContent and attributes, never HTML, so an owner name cannot inject
// markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

// A sparkline of `values` (nulls are gaps) as inline SVG, with a text
// alternative for screen readers.
export function sparkline(values, label) {
  const w = 96, hgt = 24;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('width', w);
  svg.setAttribute('height', hgt);
  svg.setAttribute('role', 'img');
  svg.setAttribute('class', 'spark');
  const nums = values.filter((v) => v !== null);
  svg.setAttribute('aria-label', nums.length ? `${label}: ${fmtW(Math.min(...nums))} to ${fmtW(Math.max(...nums))}` : `${label}: no readings`);
  if (!nums.length) return svg;
  const lo = Math.min(...nums), hi = Math.max(...nums), span = hi - lo || 1;
  const step = w / Math.max(values.length - 1, 1);
  let d = '', pen = false;
  values.forEach((v, i) => {
    if (v === null) { pen = false; return; }
    const x = (i * step).toFixed(1), y = (hgt - 2 - ((v - lo) / span) * (hgt - 4)).toFixed(1);
    d += `${pen ? 'L' : 'M'}${x} ${y} `;
    pen = true;
  });
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', d.trim());
  svg.append(path);
  return svg;
}

export const fmtW = (w) => (w === null || w === undefined ? '–' : `${w.toFixed(1)} W`);
export const fmtWh = (wh) => `${wh < 10 ? wh.toFixed(3) : wh.toFixed(1)} Wh`;
export const fmtTok = (t) => (t === null || t === undefined ? '–' : t.toLocaleString('en', { maximumFractionDigits: 4 }));
export const fmtInt = (n) => (n ?? 0).toLocaleString('en');
export const fmtTime = (s) => (s ? new Date(s * 1000).toLocaleString() : '–');
export const short = (hex) => (hex && hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex ?? '');

export function ago(s, now = Date.now() / 1000) {
  if (!s) return 'never';
  const d = Math.max(0, Math.round(now - s));
  if (d < 60) return `${d} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} d ago`;
}

// A message in the page (errors, empty states).
export function notice(text, kind = 'info') {
  return h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

// Redraws `box` with `draw` and gives the keyboard focus back: a control
// inside `box` that had it (marked `data-focus`) is focused again in the new
// drawing. Live refreshes redraw headers and pagers under a keyboard user.
export function keepFocus(box, draw) {
  const had = box.contains(document.activeElement) ? document.activeElement.dataset.focus : undefined;
  draw();
  if (had !== undefined) box.querySelector(`[data-focus="${had}"]:not([disabled])`)?.focus();
}

// Answers can arrive out of order (a refresh asked for before a sort or a
// new range): `const turn = newest()`, then in each load `const mine =
// turn()` before asking and `if (!mine()) return` after; only the newest
// load draws its answer.
export function newest() {
  let n = 0;
  return () => { const mine = ++n; return () => mine === n; };
}

// Runs `fn` at most once per `ms`, the last call winning (live updates
// refresh a view without a request per event).
export function throttle(fn, ms) {
  let timer = null, again = false;
  const run = () => {
    timer = null;
    if (again) { again = false; fn(); timer = setTimeout(run, ms); }
  };
  return () => {
    if (timer) { again = true; return; }
    fn();
    timer = setTimeout(run, ms);
  };
}
