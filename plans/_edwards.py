"""Internal: refuse Ed25519 public keys that let anyone forge signatures. Not a public API.

OpenSSL's cofactorless Ed25519 verification accepts, for the identity point as
public key, the signature ``R = identity, S = 0`` on *every* message (checked in
``tests/test_plans_keys.py``). So a trust store must never hold a small-order
point (the 8 points with ``[8]A = identity``), a non-canonical encoding
(``y >= p``), or an encoding that is not on the curve. Arithmetic follows
RFC 8032 section 5.1.3 (decoding) with the affine twisted Edwards addition law,
which is complete for edwards25519 (``d`` is not a square).
"""

from __future__ import annotations

P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _decode(raw: bytes) -> tuple[int, int] | None:
    if len(raw) != 32:
        return None
    n = int.from_bytes(raw, "little")
    sign, y = n >> 255, n & ((1 << 255) - 1)
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else (0, y)
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if x & 1 != sign:
        x = P - x
    return x, y


def _double(pt: tuple[int, int]) -> tuple[int, int]:
    x, y = pt
    t = D * x * x * y * y % P
    x3 = (2 * x * y) * pow(1 + t, P - 2, P) % P
    y3 = (y * y + x * x) * pow(1 - t, P - 2, P) % P
    return x3, y3


def weak_public_key_reason(raw: bytes) -> str | None:
    """Why ``raw`` must not be trusted as an Ed25519 public key, or ``None`` if it is fine."""
    point = _decode(raw)
    if point is None:
        return "not a canonical encoding of a point on edwards25519"
    for _ in range(3):
        point = _double(point)
    if point == (0, 1):
        return "a small-order point (anyone could forge signatures for it)"
    return None
