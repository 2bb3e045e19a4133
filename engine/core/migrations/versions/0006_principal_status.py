"""Principal locks and disables (every gateway process checks them), and the gateway's sessions.

``principal_status`` holds at most one row per principal: whether it is locked (since when,
by which session and decision, for which reasons) and whether it is disabled. A lock is
lifted only by an operator (``writ principals unlock``); the history is in the audit log.
``gateway_sessions`` lists the agent sessions of every gateway process (``writ sessions list``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "principal_status",
        sa.Column("principal", sa.String(128), sa.ForeignKey("principals.name"), primary_key=True),
        sa.Column("locked_at", sa.String(32), nullable=True),
        sa.Column("lock_session", sa.String(64), nullable=True),
        sa.Column("lock_decision", sa.String(64), nullable=True),
        sa.Column("lock_reasons", sa.Text(), nullable=True),
        sa.Column("disabled_at", sa.String(32), nullable=True),
        sa.Column("disable_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "gateway_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("principal", sa.String(128), sa.ForeignKey("principals.name"), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("process", sa.String(160), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("ended_at", sa.String(32), nullable=True),
        sa.Column("locked_at", sa.String(32), nullable=True),
        sa.CheckConstraint("transport IN ('stdio', 'http')", name="ck_gateway_sessions_transport"),
    )
    op.create_index("ix_gateway_sessions_principal", "gateway_sessions", ["principal"])
    op.create_index("ix_gateway_sessions_ended_at", "gateway_sessions", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_gateway_sessions_ended_at", table_name="gateway_sessions")
    op.drop_index("ix_gateway_sessions_principal", table_name="gateway_sessions")
    op.drop_table("gateway_sessions")
    op.drop_table("principal_status")
