"""RFC 6962 / RFC 9162 Merkle trees: hashes, roots, inclusion and consistency proofs. Pure, no IO.

    from writ.attestations.merkle import MemoryTree, leaf_hash, verify_inclusion, verify_consistency

    tree = MemoryTree([leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")])
    proof = tree.inclusion_proof(1, 3)                 # [leaf_hash(b"a"), leaf_hash(b"c")]
    verify_inclusion(1, 3, leaf_hash(b"b"), proof, tree.root(3))     # or ProofError naming why
    verify_consistency(2, 3, tree.root(2), tree.root(3), tree.consistency_proof(2, 3))

A leaf hash is SHA-256(0x00 || data), an interior node SHA-256(0x01 || left || right); the
tree of n leaves splits at the largest power of two below n (RFC 9162 section 2.1.1).

Proofs are lists of hashes of subtrees. Generation is written against a ``NodeSource``: a
function giving the hash of a *perfect* subtree, ``(level, index) -> hash`` for leaves
``index * 2**level`` to ``(index + 1) * 2**level - 1``. Every subtree a proof or a root needs
is made of at most log2(n) such nodes (``perfect_cover``), so a store that keeps the perfect
subtrees (``writ.attestations.tree``) answers any size without rehashing the log.
``needed_nodes`` says which nodes to fetch first. Verification follows RFC 9162 sections
2.1.3.2 and 2.1.4.2 step by step, one ``ProofError`` per failed step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from writ.engine.core import reasons
from writ.engine.core.errors import VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MemoryTree",
    "NodeSource",
    "ProofError",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "needed_nodes",
    "node_hash",
    "perfect_cover",
    "range_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree."""

NodeSource = Callable[[int, int], bytes]
"""``(level, index) -> hash`` of the perfect subtree over leaves ``[index << level, (index + 1) << level)``."""

Range = tuple[int, int]


class ProofError(VerificationError):
    """A Merkle proof does not prove what it claims; the message names the failed step."""

    code = reasons.PROOF_INVALID


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# -- subtrees -------------------------------------------------------------------------------------


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_cover(begin: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` that make up the subtree over ``[begin, end)``, left to right.

    ``[begin, end)`` must be a subtree of some tree (``begin`` a multiple of the largest power of
    two not above ``end - begin``), as every subtree of a root or proof is.
    """
    out: list[tuple[int, int]] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin % (1 << level):
            raise ValueError(f"[{begin}, {end}) is not a subtree: {begin} is not a multiple of {1 << level}")
        out.append((level, begin >> level))
        begin += 1 << level
    return out


def range_hash(begin: int, end: int, node: NodeSource) -> bytes:
    """The Merkle tree hash of leaves ``[begin, end)`` (a subtree), from perfect nodes."""
    if begin >= end:
        return EMPTY_ROOT
    cover = perfect_cover(begin, end)
    result = node(*cover[-1])
    for level, index in reversed(cover[:-1]):
        result = node_hash(node(level, index), result)
    return result


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose hashes form the inclusion proof of leaf ``index`` in the tree of ``size``, in order."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    out: list[Range] = []
    begin, end = 0, size
    while end - begin > 1:  # RFC 9162 PATH(m, D[n]), from the root down; the proof lists it bottom up
        k = _split(end - begin)
        if index < begin + k:
            out.append((begin + k, end))
            end = begin + k
        else:
            out.append((begin, begin + k))
            begin += k
    return out[::-1]


def consistency_ranges(old: int, new: int) -> list[Range]:
    """The subtrees whose hashes form the consistency proof from the tree of ``old`` leaves to ``new``."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from a tree of {old} leaves to one of {new}")
    out: list[Range] = []
    begin, end, whole = 0, new, True  # RFC 9162 SUBPROOF(m, D[n], b)
    m = old
    while m != end - begin:
        k = _split(end - begin)
        if m <= k:
            out.append((begin + k, end))
            end = begin + k
        else:
            out.append((begin, begin + k))
            m -= k
            begin += k
            whole = False
    if not whole:
        out.append((begin, end))
    return out[::-1]


def needed_nodes(ranges: Iterable[Range]) -> set[tuple[int, int]]:
    """Every perfect node ``(level, index)`` that the hashes of ``ranges`` are made of."""
    return {n for begin, end in ranges for n in perfect_cover(begin, end)}


def inclusion_proof(index: int, size: int, node: NodeSource) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    return [range_hash(b, e, node) for b, e in inclusion_ranges(index, size)]


def consistency_proof(old: int, new: int, node: NodeSource) -> list[bytes]:
    """The RFC 9162 consistency proof from the tree of ``old`` leaves to the tree of ``new`` (0 < old <= new)."""
    return [range_hash(b, e, node) for b, e in consistency_ranges(old, new)]


# -- verification (RFC 9162 2.1.3.2 and 2.1.4.2) ----------------------------------------------------


def _check_hashes(proof: Sequence[bytes] | None, what: str) -> list[bytes]:
    hashes = list(proof or [])
    for i, h in enumerate(hashes):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            size = len(h) if isinstance(h, bytes) else type(h).__name__
            raise ProofError(f"{what} hash {i} is {size} bytes, expected {HASH_SIZE}")
    return hashes


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes] | None) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` in a tree of ``size``; ``ProofError`` if malformed."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
        raise ProofError(f"the leaf hash is {len(leaf) if isinstance(leaf, bytes) else 'not'} bytes, expected 32")
    hashes = _check_hashes(proof, "inclusion proof")
    fn, sn, r = index, size - 1, leaf
    for p in hashes:
        if sn == 0:
            raise ProofError(f"inclusion proof has {len(hashes)} hashes, more than a tree of {size} needs")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"inclusion proof has {len(hashes)} hashes, fewer than a tree of {size} needs")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes] | None, root: bytes) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` with ``root``, or raise ``ProofError``."""
    got = root_from_inclusion_proof(index, size, leaf, proof)
    if got != root:
        raise ProofError(
            f"inclusion proof of leaf {index} leads to root {got.hex()}, not the tree of {size}'s root {root.hex()}"
        )


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes] | None
) -> None:
    """Check that the tree of ``old`` leaves (``old_root``) is a prefix of the tree of ``new`` (``new_root``).

    An empty old tree is refused: it is a prefix of anything, so a proof from it proves nothing.
    """
    hashes = _check_hashes(proof, "consistency proof")
    if old <= 0:
        raise ProofError(f"no consistency proof from a tree of {old} leaves: it proves nothing")
    if old > new:
        raise ProofError(f"the old tree ({old} leaves) is larger than the new one ({new})")
    if old == new:
        if hashes:
            raise ProofError(f"both trees have {old} leaves, yet the proof is not empty")
        if old_root != new_root:
            raise ProofError(f"both trees have {old} leaves but their roots differ")
        return
    if not hashes:
        raise ProofError(f"empty consistency proof from {old} to {new} leaves")
    if old & (old - 1) == 0:  # a power of two: the old root is the first subtree of the path
        hashes = [old_root, *hashes]
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof from {old} to {new} leaves has too many hashes")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"consistency proof from {old} to {new} leaves has too few hashes")
    if fr != old_root:
        raise ProofError(f"consistency proof leads to old root {fr.hex()}, not {old_root.hex()}")
    if sr != new_root:
        raise ProofError(f"consistency proof leads to new root {sr.hex()}, not {new_root.hex()}")


# -- trees held in memory -----------------------------------------------------------------------------


class CompactRange:
    """The perfect subtrees of a growing tree (at most log2(n) hashes): push leaves, read the root at any time.

        r = CompactRange()
        for h in leaf_hashes:
            completed = r.push(h)      # the nodes (level, index, hash) this leaf completed, itself first
        r.size, r.root()
    """

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        """Resume from the ``nodes`` of ``perfect_cover(0, size)``, largest first."""
        cover = perfect_cover(0, size)
        if len(cover) != len(nodes):
            raise ValueError(f"a tree of {size} leaves has {len(cover)} perfect subtrees, got {len(nodes)}")
        self.size = size
        self._stack = [(level, index, h) for (level, index), h in zip(cover, nodes, strict=True)]

    def push(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add the next leaf hash; the perfect nodes it completes, ``(level, index, hash)``, lowest first."""
        level, index, h = 0, self.size, leaf
        done = [(0, index, h)]
        while self._stack and self._stack[-1][0] == level:
            _, left_index, left = self._stack.pop()
            level, index, h = level + 1, left_index >> 1, node_hash(left, h)
            done.append((level, index, h))
        self._stack.append((level, index, h))
        self.size += 1
        return done

    def root(self) -> bytes:
        """The root of the tree of ``size`` leaves (``EMPTY_ROOT`` when empty)."""
        if not self._stack:
            return EMPTY_ROOT
        result = self._stack[-1][2]
        for _, _, h in reversed(self._stack[:-1]):
            result = node_hash(h, result)
        return result


class MemoryTree:
    """A whole tree of leaf hashes in memory, for proofs and roots at any size (tests, small logs, bundles)."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        """Add a leaf hash and every perfect node it completes."""
        self._levels[0].append(leaf)
        level, index = 0, len(self._levels[0]) - 1
        while index & 1:
            if len(self._levels) == level + 1:
                self._levels.append([])
            row = self._levels[level]
            self._levels[level + 1].append(node_hash(row[index - 1], row[index]))
            level, index = level + 1, index >> 1

    def node(self, level: int, index: int) -> bytes:
        """The perfect node ``(level, index)``; ``KeyError`` if the tree does not have it yet."""
        try:
            return self._levels[level][index]
        except IndexError:
            raise KeyError((level, index)) from None

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (all of them by default)."""
        return range_hash(0, self.size if size is None else size, self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.node)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        return consistency_proof(old, self.size if new is None else new, self.node)
