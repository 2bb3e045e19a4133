"""The Merkle tree over the audit log, kept in the database beside the entries (ADR 0017).

    from writ.attestations.tree import AuditTree

    tree = AuditTree(store)
    size, root = tree.root()                          # 1200 b'\\x9a...' (32 bytes)
    proof = tree.inclusion_proof(seq=42, size=size)   # entry 42 is leaf 41
    tree.consistency_proof(1000, size)                # the tree of 1000 entries is a prefix of this one

Leaf ``seq - 1`` is ``leaf_hash(digest)``, where ``digest`` is the 32 bytes of entry ``seq``'s
``entry_hash`` (itself SHA-256 of the entry's RFC 8785 form, which holds its ``seq`` and
``prev_hash``). Table ``audit_tree`` keeps the hash of every perfect subtree, leaves included;
``AuditLog.append`` writes the leaf and the nodes it completes in the entry's own transaction
(``append_rows``). A root or proof at any size reads at most a few log2(n) rows.

These rows are a cache of what the entries imply, kept by whoever can write the database:
``writ audit verify`` recomputes them from the entries and trusts only signed checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, and_, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from writ.attestations.merkle import (
    EMPTY_ROOT,
    NodeSource,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    needed_nodes,
    node_hash,
    perfect_cover,
    range_hash,
)
from writ.engine.core.db import Database, describe_db_error
from writ.engine.core.errors import AuditError, InputError
from writ.engine.core.tables import AuditLogRow, AuditTreeRow

__all__ = ["AuditTree", "append_rows", "check_found", "entry_leaf", "tree_rows"]

_PREFIX = "sha256:"


def entry_leaf(entry_hash: str) -> bytes:
    """The leaf hash of an entry: SHA-256(0x00 || the 32 bytes its ``entry_hash`` names). ``ValueError`` if malformed."""
    digest = bytes.fromhex(entry_hash.removeprefix(_PREFIX)) if entry_hash.startswith(_PREFIX) else b""
    if len(digest) != 32:
        raise ValueError(f"{entry_hash[:80]!r} is not sha256: and 64 hex digits")
    return leaf_hash(digest)


def append_rows(session: Session | Connection, seq: int, entry_hash: str, prev_entry_hash: str | None) -> None:
    """Write the tree rows that entry ``seq`` adds, in ``session``'s transaction: its leaf and the nodes it completes.

    ``prev_entry_hash``: the ``entry_hash`` of entry ``seq - 1`` (its leaf is the first sibling).
    Reads the other siblings (one query, for one entry in four); ``AuditError`` if one is missing
    (a damaged tree). Core statements, not ORM objects: this is on every append's path.
    """
    conn = session if isinstance(session, Connection) else session.connection()
    conn.execute(_TREE.insert(), tree_rows(seq, entry_hash, prev_entry_hash, lambda wanted: _fetch(conn, wanted)))


Fetch = Callable[[set[tuple[int, int]]], dict[tuple[int, int], bytes]]


def tree_rows(seq: int, entry_hash: str, prev_entry_hash: str | None, fetch: Fetch) -> list[dict[str, Any]]:
    """The rows (``level``, ``idx``, ``hash``) entry ``seq`` adds; ``fetch`` reads stored siblings (``AuditError`` if missing)."""
    index = seq - 1
    h = entry_leaf(entry_hash)
    rows: list[dict[str, Any]] = [{"level": 0, "idx": index, "hash": h}]
    completes = (index ^ (index + 1)).bit_length() - 1  # trailing one bits of index
    if completes:
        if prev_entry_hash is None:  # index is odd: there must be an entry before it
            raise AuditError(f"entry {seq} completes a subtree, but no entry {seq - 1} precedes it")
        siblings = {(0, index - 1): entry_leaf(prev_entry_hash)}
        if completes > 1:
            siblings |= fetch({(level, (index >> level) - 1) for level in range(1, completes)})
        for level in range(completes):
            h = node_hash(siblings[(level, (index >> level) - 1)], h)
            rows.append({"level": level + 1, "idx": index >> (level + 1), "hash": h})
    return rows


def check_found(wanted: Iterable[tuple[int, int]], found: dict[tuple[int, int], bytes]) -> dict[tuple[int, int], bytes]:
    """``found``, or ``AuditError`` naming the first node of ``wanted`` it lacks (a damaged tree)."""
    missing = [n for n in sorted(set(wanted)) if n not in found]
    if missing:
        level, index = missing[0]
        raise AuditError(
            f"the audit log's Merkle tree has no node at level {level}, index {index} "
            f"({len(missing)} missing): the tree table was damaged or edited; run `writ audit verify`"
        )
    return found


_TREE = AuditTreeRow.__table__  # type: ignore[attr-defined]


def _fetch(session: Session | Connection, wanted: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored nodes ``wanted``; ``AuditError`` naming the first one missing."""
    wanted = sorted(set(wanted))
    found: dict[tuple[int, int], bytes] = {}
    conn = session if isinstance(session, Connection) else session.connection()  # Core: no ORM objects
    for start in range(0, len(wanted), 200):  # bounded IN lists
        chunk = wanted[start:start + 200]
        # One equality pair per node, OR-ed: each is a primary-key lookup (SQLite plans a row-value IN as a scan).
        query = sa_select(_TREE.c.level, _TREE.c.idx, _TREE.c.hash).where(
            or_(*(and_(_TREE.c.level == level, _TREE.c.idx == idx) for level, idx in chunk)))
        found |= {(level, idx): bytes(h) for level, idx, h in conn.execute(query)}
    return check_found(wanted, found)


class AuditTree:
    """Roots and proofs of the audit log's Merkle tree, read from ``audit_tree``. Safe to share between threads."""

    def __init__(self, store: Database) -> None:
        self._store = store

    def size(self) -> int:
        """How many entries the log holds (the tree's size): its last ``seq``, read from the primary key."""
        with self._reading() as session:
            return int(session.exec(select(func.coalesce(func.max(AuditLogRow.seq), 0))).one())

    def root(self, size: int | None = None) -> tuple[int, bytes]:
        """``(size, root)`` of the tree of the first ``size`` entries (all of them by default)."""
        with self._reading() as session:
            if size is None:
                size = int(session.exec(select(func.coalesce(func.max(AuditLogRow.seq), 0))).one())
            if size == 0:
                return 0, EMPTY_ROOT
            node = self._source(session, needed_nodes([(0, size)]))
            return size, range_hash(0, size, node)

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        """The inclusion proof of entry ``seq`` (leaf ``seq - 1``) in the tree of ``size`` entries."""
        if not 1 <= seq <= size:
            raise InputError(f"entry {seq} is not in a log of {size} entries")
        ranges = inclusion_ranges(seq - 1, size)
        with self._reading() as session:
            node = self._source(session, needed_nodes(ranges))
            return [range_hash(b, e, node) for b, e in ranges]

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """The consistency proof from the tree of ``old`` entries to the tree of ``new`` (1 <= old <= new)."""
        if not 1 <= old <= new:
            raise InputError(f"no consistency proof from {old} entries to {new}")
        ranges = consistency_ranges(old, new)
        with self._reading() as session:
            node = self._source(session, needed_nodes(ranges))
            return [range_hash(b, e, node) for b, e in ranges]

    def frontier(self, size: int) -> list[bytes]:
        """The perfect subtrees of the tree of ``size`` entries, largest first (``CompactRange``'s state)."""
        cover = perfect_cover(0, size)
        with self._reading() as session:
            found = _fetch(session, cover)
        return [found[n] for n in cover]

    def leaves(self, first_seq: int, last_seq: int) -> dict[int, bytes]:
        """The stored leaf hashes of entries ``first_seq`` to ``last_seq``, by seq (absent rows left out)."""
        with self._reading() as session:
            query = (
                select(AuditTreeRow)
                .where(AuditTreeRow.level == 0)
                .where(col(AuditTreeRow.idx) >= first_seq - 1)
                .where(col(AuditTreeRow.idx) <= last_seq - 1)
            )
            return {r.idx + 1: bytes(r.hash) for r in session.exec(query)}

    def stored_leaves(self) -> int:
        """How many leaves the tree table holds (more than the log's entries: entries were removed)."""
        with self._reading() as session:
            query = select(func.count()).select_from(AuditTreeRow).where(AuditTreeRow.level == 0)
            return int(session.exec(query).one())

    # -- internals ------------------------------------------------------------------------------------

    @staticmethod
    def _source(session: Session, wanted: set[tuple[int, int]]) -> NodeSource:
        found = _fetch(session, wanted)
        return lambda level, index: found[(level, index)]

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        try:
            with self._store.session() as session:
                yield session
        except SQLAlchemyError as e:
            raise AuditError(
                f"cannot read the audit log's Merkle tree in {self._store.url}: {describe_db_error(e)}"
            ) from e
