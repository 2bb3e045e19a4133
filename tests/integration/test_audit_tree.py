"""The audit log's Merkle tree in the database (SQLite and PostgreSQL): kept by every append, filled by migration 0010.

Roots and proofs read from ``audit_tree`` must equal those of the same leaves held in memory
(``MemoryTree``, itself checked against the RFC 6962 vectors in tests/unit/test_merkle.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from writ.attestations.audit import GENESIS_HASH, AuditLog, compute_entry_hash
from writ.attestations.merkle import MemoryTree, verify_consistency, verify_inclusion
from writ.attestations.tree import entry_leaf
from writ.engine.core.db import Database, migrate, open_database
from writ.engine.core.errors import AuditError, InputError
from writ.engine.core.settings import Settings


def leaves(log: AuditLog) -> list[bytes]:
    return [entry_leaf(e.entry_hash) for e in log.tail(1_000_000)]


def test_every_size_has_the_root_and_proofs_of_the_same_leaves_in_memory(store: Database) -> None:
    log = AuditLog(store)
    for i in range(70):
        log.append("decision", {"i": i})
    memory = MemoryTree(leaves(log))
    assert log.tree.root() == (70, memory.root())
    for size in range(1, 71):
        assert log.tree.root(size) == (size, memory.root(size))
    for size in (1, 2, 3, 8, 33, 64, 70):
        for seq in {1, (size + 1) // 2, size}:
            proof = log.tree.inclusion_proof(seq, size)
            assert proof == memory.inclusion_proof(seq - 1, size)
            verify_inclusion(seq - 1, size, memory.node(0, seq - 1), proof, memory.root(size))
        for old in {1, size // 2 or 1, size}:
            proof = log.tree.consistency_proof(old, size)
            verify_consistency(old, size, memory.root(old), memory.root(size), proof)
    with pytest.raises(InputError, match="entry 71 is not in a log of 70 entries"):
        log.tree.inclusion_proof(71, 70)


def test_leaf_is_the_rfc6962_leaf_hash_of_the_entry_digest(store: Database) -> None:
    """ADR 0017's leaf, written out: SHA-256(0x00 || the 32 bytes that entry_hash names)."""
    import hashlib

    entry = AuditLog(store).append("decision", {"allow": True})
    digest = bytes.fromhex(entry.entry_hash.removeprefix("sha256:"))
    with store.connect() as conn:
        stored = conn.execute(text("SELECT hash FROM audit_tree WHERE level = 0 AND idx = 0")).scalar_one()
    assert bytes(stored) == hashlib.sha256(b"\x00" + digest).digest() == entry_leaf(entry.entry_hash)


def test_the_tree_stores_each_perfect_subtree_once(store: Database) -> None:
    log = AuditLog(store)
    for i in range(11):
        log.append("decision", {"i": i})
    with store.connect() as conn:
        nodes = sorted(tuple(r) for r in conn.execute(text("SELECT level, idx FROM audit_tree")))
    # 11 leaves; 5 pairs; 2 of four; 1 of eight
    assert nodes == sorted([(0, i) for i in range(11)] + [(1, i) for i in range(5)] + [(2, 0), (2, 1), (3, 0)])


def test_concurrent_writers_keep_one_tree(db_settings: Settings) -> None:
    """Four writers, each with its own connection pool: the tree is the tree of the one chain they made."""
    with open_database(db_settings):
        pass  # migrated once, before the race

    def write(worker: int) -> None:
        with open_database(db_settings) as own:
            log = AuditLog(own)
            for i in range(25):
                log.append("decision", {"worker": worker, "i": i})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open_database(db_settings) as store:
        log = AuditLog(store)
        assert log.verify().ok
        assert log.tree.root() == (100, MemoryTree(leaves(log)).root())


def test_an_append_that_finds_the_tree_damaged_fails_closed(store: Database) -> None:
    log = AuditLog(store)
    for i in range(3):
        log.append("decision", {"i": i})
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_tree WHERE level = 1"))
    with pytest.raises(AuditError, match="Merkle tree has no node at level 1, index 0"):
        log.append("decision", {"i": 3})  # entry 4 completes the subtree of 1-4: its sibling is gone
    assert log.verify().entries == 3  # nothing half written


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migrations_match_the_tree_and_checkpoint_tables(store: Database) -> None:
    with store.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert [d for d in diffs if "audit_tree" in repr(d) or "audit_checkpoints" in repr(d)] == []


# -- migration 0010 fills the tree of a log that existed before it ------------------------------------


def old_log(store: Database, n: int, *, skip: int | None = None) -> list[str]:
    """``n`` entries written as a Writ before migration 0010 did: audit_log rows only. Their hashes."""
    hashes, prev = [], GENESIS_HASH
    with store.engine.begin() as conn:
        for seq in range(1, n + 1):
            h = compute_entry_hash(seq, "2026-01-01T00:00:00.000000Z", "decision", {"i": seq}, prev)
            if seq != skip:
                conn.execute(text(
                    "INSERT INTO audit_log (seq, created_at, kind, payload, prev_hash, entry_hash)"
                    " VALUES (:seq, '2026-01-01T00:00:00.000000Z', 'decision', :p, :prev, :h)"),
                    {"seq": seq, "p": f'{{"i":{seq}}}', "prev": prev, "h": h})
            hashes.append(h)
            prev = h
    return hashes


def test_migration_fills_the_tree_of_an_existing_log(db_settings: Settings) -> None:
    with open_database(db_settings, upgrade=False) as store:
        migrate(store, "0009")
        hashes = old_log(store, 23)
        migrate(store)
        log = AuditLog(store)
        assert log.tree.root() == (23, MemoryTree(entry_leaf(h) for h in hashes).root())
        log.append("decision", {"after": "upgrade"})  # appends go on from the filled tree
        assert log.tree.root() == (24, MemoryTree(leaves(log)).root())
        assert log.verify().ok


def test_migration_stops_the_tree_at_a_gap_in_an_existing_log(db_settings: Settings) -> None:
    with open_database(db_settings, upgrade=False) as store:
        migrate(store, "0009")
        old_log(store, 10, skip=6)
        migrate(store)
        assert AuditLog(store).tree.stored_leaves() == 5  # entries 1-5; the log is reported bad at 6


def test_tree_survives_reopening_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    with open_database(settings) as store:
        for i in range(5):
            AuditLog(store).append("decision", {"i": i})
    with open_database(settings) as store:
        log = AuditLog(store)
        log.append("decision", {"i": 5})
        assert log.tree.root() == (6, MemoryTree(leaves(log)).root())
