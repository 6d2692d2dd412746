// A seal and a device's proof, checked in the browser with WebCrypto, as
// the meter checks them (wattstream_sdk::proof):
//   leaf = SHA-256(0x00 || address[20] || epoch_total u128 || balance u128 || epoch u64)
//   node = SHA-256(0x01 || left[32] || right[32])
//   seal message = "wattstream-seal-v1" || epoch u64 || upto_seq u64 || head[32] || root[32]
//   signature: ECDSA P-256 over SHA-256 of the message, r || s.
// All integers big-endian.

export function hexBytes(hex) {
  const s = hex.startsWith('0x') ? hex.slice(2) : hex;
  if (s.length % 2 || /[^0-9a-fA-F]/.test(s)) throw new Error(`not hex: ${hex}`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export const bytesHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

// `n` (a decimal string or BigInt) as `len` big-endian bytes.
export function be(n, len) {
  let v = BigInt(n);
  if (v < 0n || v >= 1n << BigInt(8 * len)) throw new Error(`${n} does not fit ${len} bytes`);
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n; }
  return out;
}

const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};

const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest('SHA-256', b));

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

export async function leafHash(address, epochTotal, balance, epoch) {
  return sha256(concat([0], hexBytes(address), be(epochTotal, 16), be(balance, 16), be(epoch, 8)));
}

export async function fold(leaf, steps) {
  let acc = leaf;
  for (const s of steps) {
    const sib = hexBytes(s.sibling);
    if (sib.length !== 32) throw new Error('a sibling is not 32 bytes');
    acc = await sha256(s.left ? concat([1], sib, acc) : concat([1], acc, sib));
  }
  return acc;
}

export function sealMessage(seal) {
  return concat(new TextEncoder().encode('wattstream-seal-v1'), be(seal.epoch, 8), be(seal.upto_seq, 8),
    hexBytes(seal.head), hexBytes(seal.root));
}

export async function sealSigned(seal) {
  const key = await crypto.subtle.importKey('raw', hexBytes(seal.public_key),
    { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  return crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, hexBytes(seal.signature), sealMessage(seal));
}

// `{status: 'verified'|'mismatch'|'no seal yet', why}` for the rewards
// answer of `deviceId` (GET /v1/devices/{id}/rewards).
export async function checkRewards(deviceId, rewards) {
  const seal = rewards.latest_epoch, proof = rewards.proof;
  if (!seal || !proof) return { status: 'no seal yet', why: seal ? 'this meter has no leaf in the latest seal' : 'no epoch is sealed yet' };
  try {
    if (hexBytes(proof.address).length !== 20 || !same(hexBytes(proof.address), hexBytes(deviceId))) {
      return { status: 'mismatch', why: 'the proof is for another address' };
    }
    const leaf = await leafHash(proof.address, proof.epoch_total, proof.balance, seal.epoch);
    const root = await fold(leaf, proof.steps);
    if (!same(root, hexBytes(seal.root))) return { status: 'mismatch', why: 'the proof does not lead to the sealed root' };
    if (!(await sealSigned(seal))) return { status: 'mismatch', why: 'the seal signature does not verify' };
    return { status: 'verified', why: `epoch ${seal.epoch}: the leaf proves to the root, and the root is signed by ${seal.public_key.slice(0, 16)}…` };
  } catch (e) {
    return { status: 'mismatch', why: `malformed proof: ${e.message}` };
  }
}
