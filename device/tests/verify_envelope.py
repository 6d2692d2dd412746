#!/usr/bin/env python3
"""Independent check of a WattStream envelope with Python's `cryptography`.

Reads an envelope body on stdin, takes the `data` value as the exact bytes in the
body (no re-serialisation), and verifies the r||s signature with ECDSA P-256 /
SHA-256 under the SEC1 public key. Prints the data bytes and exits 0 when the
signature holds; exits 1 with a reason otherwise.
"""
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def raw_data_slice(body: str) -> str:
    decoder = json.JSONDecoder()
    start = body.index('"data"') + len('"data"')
    while body[start] in ' \t\r\n:':
        start += 1
    _, end = decoder.raw_decode(body, start)
    return body[start:end]


def main() -> int:
    body = sys.stdin.read().strip()
    env = json.loads(body)
    data = raw_data_slice(body)
    sig = bytes.fromhex(env["signature"])
    if len(sig) != 64:
        print("signature is not 64 bytes", file=sys.stderr)
        return 1
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(env["public_key"]))
    try:
        key.verify(encode_dss_signature(r, s), data.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        print("signature does not verify", file=sys.stderr)
        return 1
    print(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
