"""The web approval form: approver invites, keys enrolled by browsers, login challenges, web sessions.

``approver_invites`` holds one-time enrolment links (``writ approvers invite``), kept by the
SHA-256 of their token only; ``web_keys`` marks the trusted keys a browser enrolled (the key
itself is a row of ``trust_keys``); ``web_challenges`` holds login challenges until they are
used or expire; ``web_sessions`` the approvers' sessions, by the SHA-256 of their cookie.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "approver_invites",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("principal", sa.String(128), sa.ForeignKey("principals.name"), nullable=False),
        sa.Column("token_sha256", sa.String(71), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
        sa.Column("redeemed_at", sa.String(32), nullable=True),
        sa.Column("key_id", sa.String(71), nullable=True),
        sa.UniqueConstraint("token_sha256", name="uq_approver_invites_token_sha256"),
    )
    op.create_table(
        "web_keys",
        sa.Column("key_id", sa.String(71), sa.ForeignKey("trust_keys.key_id"), primary_key=True),
        sa.Column("principal", sa.String(128), sa.ForeignKey("principals.name"), nullable=False),
        sa.Column("invite_id", sa.String(32), sa.ForeignKey("approver_invites.id"), nullable=False),
        sa.Column("user_agent", sa.String(256), nullable=False),
        sa.Column("enrolled_at", sa.String(32), nullable=False),
        sa.UniqueConstraint("invite_id", name="uq_web_keys_invite_id"),
    )
    op.create_index("ix_web_keys_principal", "web_keys", ["principal"])
    op.create_table(
        "web_challenges",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
        sa.Column("used_at", sa.String(32), nullable=True),
    )
    op.create_index("ix_web_challenges_expires_at", "web_challenges", ["expires_at"])
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("token_sha256", sa.String(71), nullable=False),
        sa.Column("principal", sa.String(128), sa.ForeignKey("principals.name"), nullable=False),
        sa.Column("key_id", sa.String(71), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
        sa.Column("ended_at", sa.String(32), nullable=True),
        sa.UniqueConstraint("token_sha256", name="uq_web_sessions_token_sha256"),
    )
    op.create_index("ix_web_sessions_principal", "web_sessions", ["principal"])


def downgrade() -> None:
    op.drop_index("ix_web_sessions_principal", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_index("ix_web_challenges_expires_at", table_name="web_challenges")
    op.drop_table("web_challenges")
    op.drop_index("ix_web_keys_principal", table_name="web_keys")
    op.drop_table("web_keys")
    op.drop_table("approver_invites")
