#!/usr/bin/env python3
"""Writes COUNT distinct, valid RS256 JWTs (one per line) for the S3f scenario
("a fresh token per request"), so that a gateway cannot answer from a cache of
verified tokens.

    jwt_pool.py KEY.pem COUNT EXP OUT

The key is an RSA private key in PEM; its numbers are read with `openssl rsa
-text`, and the PKCS#1 v1.5 / SHA-256 signature is computed here (CRT, pure
Python) because forking openssl per token is ~10x slower. Only the standard
library is used.
"""
import base64
import hashlib
import json
import re
import subprocess
import sys

# DER prefix of DigestInfo{sha256} (RFC 8017, 9.2 note 1)
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rsa_numbers(key_path: str) -> dict:
    text = subprocess.run(["openssl", "rsa", "-in", key_path, "-noout", "-text"],
                          check=True, capture_output=True, text=True).stdout
    numbers, name, digits = {}, None, ""
    for line in text.splitlines():
        m = re.match(r"^(\w+):\s*(.*)$", line)
        if m:
            if name:
                numbers[name] = int(digits, 16)
            name, digits = m.group(1), ""
            rest = m.group(2)
            inline = re.match(r"^(\d+) \(0x[0-9a-f]+\)$", rest)   # publicExponent: 65537 (0x10001)
            if inline:
                numbers[name], name = int(inline.group(1)), None
        elif name:
            digits += line.strip().replace(":", "")
    if name:
        numbers[name] = int(digits, 16)
    return numbers


def sign(n: dict, message: bytes) -> bytes:
    k = (n["modulus"].bit_length() + 7) // 8
    t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    m = int.from_bytes(em, "big")
    s1 = pow(m % n["prime1"], n["exponent1"], n["prime1"])
    s2 = pow(m % n["prime2"], n["exponent2"], n["prime2"])
    h = (n["coefficient"] * (s1 - s2)) % n["prime1"]
    return (s2 + h * n["prime2"]).to_bytes(k, "big")


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    key, count, exp, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    n = rsa_numbers(key)
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    with open(out + ".tmp", "w") as f:
        for i in range(count):
            claims = {"sub": "bench-user-%d" % i, "iss": "gwbench", "scope": "api", "exp": exp, "jti": "%08x" % i}
            payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
            signing_input = (header + "." + payload).encode()
            f.write("%s.%s.%s\n" % (header, payload, b64url(sign(n, signing_input))))
    import os
    os.replace(out + ".tmp", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
