// The JSON API and the live stream. The token lives in sessionStorage (gone
// when the browser session ends) and goes in the Authorization header; the
// stream is read with fetch rather than EventSource, which cannot send one.

const KEY = 'wattstream.token';
const DEVICE = 'wattstream.device';

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  get device() { return sessionStorage.getItem(DEVICE); },
  set(token, device) {
    sessionStorage.setItem(KEY, token);
    if (device) sessionStorage.setItem(DEVICE, device); else sessionStorage.removeItem(DEVICE);
  },
  clear() { sessionStorage.removeItem(KEY); sessionStorage.removeItem(DEVICE); },
};

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.status = status;
    this.reason = body?.reason;
  }
}

export async function get(path) {
  const headers = session.token ? { Authorization: `Bearer ${session.token}` } : {};
  const r = await fetch(path, { headers });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

// Reads `/v1/stream` (Server-Sent Events) until `stop()`; reconnects with
// backoff. `only`: `{device}` (a meter owner), `{devices: [...]}` (the rows a
// page shows) or nothing (everything). `onEvent(name, data)` for each event,
// `onState(state)` with `connecting`, `live`, `reconnecting` or
// `unauthorized`.
export function subscribe(only, onEvent, onState) {
  const ctl = new AbortController();
  const q = new URLSearchParams();
  if (only?.device) q.set('device', only.device);
  if (only?.devices) q.set('devices', only.devices.join(','));
  const path = `/v1/stream?${q}`;
  (async () => {
    let backoff = 1000;
    while (!ctl.signal.aborted) {
      onState('connecting');
      try {
        const r = await fetch(path, { headers: { Authorization: `Bearer ${session.token}` }, signal: ctl.signal });
        if (r.status === 401) { onState('unauthorized'); return; }
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let name = 'message', data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) name = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (!data) continue;
            if (name === 'hello') { onState('live'); backoff = 1000; }
            onEvent(name, JSON.parse(data));
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      onState('reconnecting');
      await new Promise((ok) => setTimeout(ok, backoff));
      backoff = Math.min(backoff * 2, 30000);
    }
  })();
  return () => ctl.abort();
}
