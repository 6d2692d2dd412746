#!/usr/bin/env python3
"""Writes the project's signed envelope vectors, signed by an implementation
independent of ours (Python `cryptography`), into sdk/tests/vectors/:

- devices.json: {"devices": [uncompressed public key hex, ...]}: register these
  before sending the cases;
- envelopes.jsonl: one case a line, {"name", "expect", "body"}; `body` is the
  exact HTTP body, `expect` is `accept`, `duplicate` (an earlier case sent the
  same reading bytes) or `reject`. Send them in file order to POST /v1/events.

Keys are derived from fixed seeds, so the devices are the same every run; ECDSA
signatures are randomised, so a new run gives new signature bytes. The output
is committed: tests read it, they do not run this script. Timestamps are fixed
(November 2026): the processor accepts old readings (meters catch up after
outages) up to its `max_age_s`.

Usage: python3 scripts/make-vectors.py [OUT_DIR]
"""

import hashlib
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 order


def key(seed: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big") % (N - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def pub_hex(k, compressed=False) -> str:
    fmt = PublicFormat.CompressedPoint if compressed else PublicFormat.UncompressedPoint
    return k.public_key().public_bytes(Encoding.X962, fmt).hex()


def sign_rs(k, data: str, high_s=False) -> str:
    r, s = decode_dss_signature(k.sign(data.encode(), ec.ECDSA(hashes.SHA256())))
    low = min(s, N - s)
    s = N - low if high_s else low
    return r.to_bytes(32, "big").hex() + s.to_bytes(32, "big").hex()


def body(data: str, signature=None, public_key=None) -> str:
    parts = [f'"data":{data}']
    if signature is not None:
        parts.append(f'"signature":"{signature}"')
    if public_key is not None:
        parts.append(f'"public_key":"{public_key}"')
    return "{" + ",".join(parts) + "}"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "sdk/tests/vectors"
    out.mkdir(parents=True, exist_ok=True)
    a, b, c = key("wattstream-vector-a"), key("wattstream-vector-b"), key("wattstream-vector-c")
    stranger = key("wattstream-vector-unregistered")
    pa = pub_hex(a)
    cases = []

    def case(name, expect, text):
        cases.append({"name": name, "expect": expect, "body": text})

    # The seed format: only sensor_reading and timestamp.
    seed = '{"sensor_reading":134.70,"timestamp":1795515050}'
    case("seed-compact", "accept", body(seed, sign_rs(a, seed), pa))
    case("seed-compact-replayed", "duplicate", body(seed, sign_rs(a, seed), pa))
    # The meter's full format, spaces kept as sent (the signature covers the raw bytes).
    full = ('{"sensor_reading": 4.21, "timestamp": 1795515055, "seq": 1042, "window_s": 5, '
            '"energy_wh": 0.00585, "min_w": 4.1, "max_w": 4.33, "voltage_v": 12.02, '
            '"current_a": 0.35, "samples": 50}')
    case("meter-format-with-spaces", "accept", body(full, sign_rs(a, full), pa))
    case("meter-format-replayed", "duplicate", body(full, sign_rs(a, full), pa))
    high = '{"sensor_reading":5.5,"timestamp":1795515060,"seq":1043}'
    case("high-s-signature", "accept", body(high, sign_rs(a, high, high_s=True), pa))
    upper = '{"sensor_reading":5.6,"timestamp":1795515065,"seq":1044}'
    case("uppercase-hex", "accept", body(upper, sign_rs(a, upper).upper(), pa.upper()))
    comp = '{"sensor_reading":5.7,"timestamp":1795515066,"seq":1045}'
    case("compressed-public-key", "accept", body(comp, sign_rs(a, comp), pub_hex(a, compressed=True)))
    # Rejections.
    tampered = '{"sensor_reading":1.0,"timestamp":1795515070}'
    case("tampered-reading", "reject",
         body(tampered, sign_rs(a, tampered.replace("1.0", "9.0")), pa))
    other = '{"sensor_reading":12.0,"timestamp":1795515070}'
    case("wrong-key", "reject", body(other, sign_rs(b, other), pa))
    case("unregistered-device", "reject", body(other, sign_rs(stranger, other), pub_hex(stranger)))
    case("short-signature", "reject", body(other, sign_rs(a, other)[:126], pa))
    case("missing-signature", "reject", body(other, None, pa))
    der = a.sign(other.encode(), ec.ECDSA(hashes.SHA256())).hex()
    case("der-signature", "reject", body(other, der, pa))
    negative = '{"sensor_reading":-3.0,"timestamp":1795515071}'
    case("negative-reading", "reject", body(negative, sign_rs(a, negative), pa))
    no_ts = '{"sensor_reading":3.0}'
    case("missing-timestamp", "reject", body(no_ts, sign_rs(a, no_ts), pa))
    case("not-json", "reject", "sensor_reading=12")
    # A second and third device.
    for i, (k, w, t) in enumerate([(b, 4.56, 1795515151), (c, 2.66, 1795515152)], start=1):
        d = f'{{"sensor_reading":{w},"timestamp":{t}}}'
        case(f"other-device-{i}", "accept", body(d, sign_rs(k, d), pub_hex(k)))

    (out / "devices.json").write_text(json.dumps({"devices": [pa, pub_hex(b), pub_hex(c)]}, indent=1) + "\n")
    with open(out / "envelopes.jsonl", "w") as f:
        for c_ in cases:
            f.write(json.dumps(c_) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
