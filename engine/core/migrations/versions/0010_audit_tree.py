"""The audit log's Merkle tree and its signed checkpoints (ADR 0017).

``audit_tree`` holds the hash of every perfect subtree of the RFC 6962 tree over the log: node
``(level, idx)`` covers leaves ``idx * 2**level`` to ``(idx + 1) * 2**level - 1``, and leaf ``i``
is SHA-256(0x00 || the 32 bytes of entry ``i + 1``'s ``entry_hash``). ``audit_checkpoints`` holds
the signed checkpoints (C2SP signed notes), one per tree size.

The upgrade fills the tree for the entries already in the log, in seq order, from their stored
``entry_hash``. It stops at a gap in seq or a malformed hash (a log that ``writ audit verify``
already reports as bad): appends then fail until the log is dealt with, rather than build a
tree over a broken log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-13
"""

from __future__ import annotations

import hashlib
import re

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen here: a migration never imports the application's current code.
_ENTRY_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_BATCH = 5000


def upgrade() -> None:
    op.create_table(
        "audit_tree",
        sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.CheckConstraint("level >= 0 AND level < 64", name="ck_audit_tree_level"),
        sa.CheckConstraint("idx >= 0", name="ck_audit_tree_idx"),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String(44), nullable=False),
        sa.Column("origin", sa.String(256), nullable=False),
        sa.Column("key_id", sa.String(71), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.CheckConstraint("tree_size >= 1", name="ck_audit_checkpoints_size"),
    )
    _fill_tree(op.get_bind())


def _fill_tree(conn: sa.Connection) -> None:
    """Every perfect node of the tree over the entries 1..n with no gap, from their stored hashes."""
    tree = sa.table("audit_tree", sa.column("level"), sa.column("idx"), sa.column("hash"))
    select = sa.text("SELECT seq, entry_hash FROM audit_log WHERE seq > :after ORDER BY seq LIMIT :n")
    stack: list[tuple[int, int, bytes]] = []  # the perfect subtrees so far, largest first
    after = 0
    while True:
        rows = conn.execute(select, {"after": after, "n": _BATCH}).all()
        nodes: list[dict[str, object]] = []
        for seq, entry_hash in rows:
            if seq != after + 1 or not isinstance(entry_hash, str) or not _ENTRY_HASH.fullmatch(entry_hash):
                rows = []  # a broken log: no tree beyond its last good entry
                break
            level, idx, h = 0, seq - 1, hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash[7:])).digest()
            nodes.append({"level": 0, "idx": idx, "hash": h})
            while stack and stack[-1][0] == level:
                _, left_idx, left = stack.pop()
                level, idx, h = level + 1, left_idx >> 1, hashlib.sha256(b"\x01" + left + h).digest()
                nodes.append({"level": level, "idx": idx, "hash": h})
            stack.append((level, idx, h))
            after = seq
        if nodes:
            conn.execute(tree.insert(), nodes)
        if len(rows) < _BATCH:
            return


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_tree")
