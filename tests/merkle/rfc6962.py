"""An independent RFC 6962 Merkle tree, for checking Lever's (`src/evidence/merkle.rs`).

Written from RFC 6962 section 2.1 (MTH, PATH, PROOF/SUBPROOF) alone. Prints, as JSON,
for trees of 0 to 40 leaves (the entries `entry 0`, `entry 1`, ...): each root, each
inclusion proof and each consistency proof, hex-encoded.
"""

import hashlib
import json


def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n <= 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def main() -> None:
    out = []
    for n in range(41):
        d = [f"entry {i}".encode() for i in range(n)]
        out.append(
            {
                "size": n,
                "root": mth(d).hex(),
                "inclusion": [[h.hex() for h in path(i, d)] for i in range(n)],
                "consistency": [[h.hex() for h in subproof(m, d, True)] for m in range(1, n)],
            }
        )
    print(json.dumps(out))


main()
