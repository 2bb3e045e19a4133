"""Check the entries of an audit log against its recorded Merkle tree and signed checkpoints. No IO of its own.

    check = TreeCheck(held_checkpoints, recorded_leaves=tree.leaves, recorded_size=tree.stored_leaves())
    for entry in verified_entries_in_seq_order:        # what passed the hash-chain walk
        check.add(entry.seq, entry.entry_hash)
    finding = check.finish(log_entries=n, chain_ok=True)   # None, or where and what the first bad entry is

The hash chain alone cannot see an entry edited, removed or inserted with every later hash
recomputed, nor a cut tail. Two witnesses can:

- the tree recorded when each entry was appended (``audit_tree``): it names the exact entry,
  but it lives in the same database, so a careful attacker rewrites it too;
- signed checkpoints, kept outside the database: the root of the first ``size`` entries must
  be the signed one. A root names no entry: a mismatch places the first bad entry after the
  largest checkpoint that still matches and at or before the smallest that does not.

A log shorter than what a witness committed to lost entries: a cut tail when everything
left still matches, ``deleted`` when an entry before the end differs too; otherwise an entry
that differs is ``edited``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from writ.attestations.checkpoints import HeldCheckpoint
from writ.attestations.merkle import CompactRange
from writ.attestations.tree import entry_leaf

__all__ = ["Finding", "TreeCheck"]

_BATCH = 1000


@dataclass(frozen=True)
class Finding:
    """The first bad entry found by the tree check: at least ``first_seq``, at most ``last_seq``."""

    first_seq: int
    last_seq: int
    problem: str  # 'edited', 'deleted' or 'truncated' (AuditProblem values)
    message: str


class TreeCheck:
    """Follows entries in seq order and compares them with the recorded tree and the held checkpoints."""

    def __init__(
        self,
        checkpoints: Sequence[HeldCheckpoint] = (),
        *,
        recorded_leaves: Callable[[int, int], dict[int, bytes]] = lambda _a, _b: {},
        recorded_size: int = 0,
    ) -> None:
        """``recorded_leaves(first, last)``: the tree's stored leaf hashes of those seqs; ``recorded_size``: how many."""
        self._by_size: dict[int, list[HeldCheckpoint]] = defaultdict(list)
        for held in checkpoints:
            self._by_size[held.checkpoint.size].append(held)
        self._recorded = recorded_leaves
        self.recorded_size = recorded_size
        self._cached: dict[int, bytes] = {}
        self._cached_until = 0
        self._range = CompactRange()
        self.leaf_mismatch: int | None = None  # first seq whose leaf is not the one recorded
        self.matched: list[HeldCheckpoint] = []  # checkpoints whose root the entries reproduce
        self.mismatched: list[HeldCheckpoint] = []

    @property
    def committed(self) -> int:
        """The most entries a witness says the log had: the recorded tree or the largest checkpoint."""
        return max([self.recorded_size, *self._by_size])

    def add(self, seq: int, entry_hash: str) -> None:
        """The next entry (seq = entries added so far + 1) that passed the chain walk."""
        leaf = entry_leaf(entry_hash)
        if seq > self._cached_until:
            self._cached = self._recorded(seq, seq + _BATCH - 1)
            self._cached_until = seq + _BATCH - 1
        recorded = self._cached.get(seq)
        if self.leaf_mismatch is None and recorded is not None and recorded != leaf:
            self.leaf_mismatch = seq
        self._range.push(leaf)
        held = self._by_size.get(seq)
        if held:
            root = self._range.root()
            for h in held:
                (self.matched if h.checkpoint.root == root else self.mismatched).append(h)

    def finish(self, *, log_entries: int, chain_ok: bool) -> Finding | None:
        """The first bad entry the witnesses show among the ``log_entries`` added, or None.

        ``chain_ok``: the chain walk reached the end of the log (else only what it verified was added,
        and a witness beyond that proves nothing about the end of the log).
        """
        found: list[Finding] = []
        removed = chain_ok and self.committed > log_entries
        kind = "deleted" if removed else "edited"
        if self.leaf_mismatch is not None:
            k = self.leaf_mismatch
            found.append(Finding(k, k, kind, (
                f"it is not the entry recorded in the Merkle tree when entry {k} was appended "
                f"({'entries were removed before the end and the rest renumbered' if removed else 'rewritten'}, "
                "with every later hash recomputed)")))
        if self.mismatched:
            bad = min(self.mismatched, key=lambda h: h.checkpoint.size)
            good = max((h.checkpoint.size for h in self.matched if h.checkpoint.size < bad.checkpoint.size), default=0)
            where = f"entry {good + 1}" if good + 1 == bad.checkpoint.size else (
                f"one of entries {good + 1} to {bad.checkpoint.size}")
            found.append(Finding(good + 1, bad.checkpoint.size, kind, (
                f"the first {bad.checkpoint.size} entries do not hash to the root signed in {bad.source}"
                + (f" (they did up to the checkpoint of {good})" if good else "")
                + f": {where} was {'removed' if removed else 'changed'} since, with the chain recomputed")))
        if chain_ok and not found and self.committed > log_entries:
            found.append(self._shorter(log_entries))
        return min(found, key=lambda f: (f.first_seq, f.last_seq)) if found else None

    def _shorter(self, n: int) -> Finding:
        """The log holds ``n`` entries, fewer than a witness committed to, and every entry it has matches."""
        witness = (f"a signed checkpoint ({self._by_size[max(self._by_size)][0].source})"
                   if max(self._by_size, default=0) > n else "the Merkle tree recorded at append")
        said = f"the log ends at entry {n} but {witness} holds {self.committed} entries"
        confirmed = max((h.checkpoint.size for h in self.matched), default=0)
        if self.recorded_size > n or confirmed == n:  # the n entries left are the first n that were committed
            return Finding(n + 1, n + 1, "truncated", f"{said}: entries {n + 1} to {self.committed} were cut from the end")
        # Only roots say so: the entries may be gone from the end, or from anywhere after the last confirmed one.
        return Finding(confirmed + 1, n + 1, "deleted", (
            f"{said}: {_entries(self.committed - n)} removed, from the end or from anywhere after entry "
            f"{confirmed} (the last a signed checkpoint confirms) with the rest renumbered"))


def _entries(k: int) -> str:
    return "1 entry was" if k == 1 else f"{k} entries were"
