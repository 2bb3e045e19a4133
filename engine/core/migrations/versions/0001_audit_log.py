"""The hash-chained audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen here: a migration never imports the application's current constants.
GENESIS_HASH = "sha256:" + "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(71), nullable=False),
        sa.Column("entry_hash", sa.String(71), nullable=False),
        sa.UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
        sa.UniqueConstraint("entry_hash", name="uq_audit_log_entry_hash"),
        sa.CheckConstraint("seq >= 1", name="ck_audit_log_seq_positive"),
        sa.CheckConstraint(
            f"(seq = 1 AND prev_hash = '{GENESIS_HASH}') OR (seq > 1 AND prev_hash <> '{GENESIS_HASH}')",
            name="ck_audit_log_genesis",
        ),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
