"""Bearer tokens of the gateway's HTTP transport (only their sha256).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("principal", sa.String(128), sa.ForeignKey("principals.name"), nullable=False),
        sa.Column("token_sha256", sa.String(71), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32), nullable=True),
        sa.UniqueConstraint("token_sha256", name="uq_gateway_tokens_token_sha256"),
    )
    op.create_index("ix_gateway_tokens_principal", "gateway_tokens", ["principal"])


def downgrade() -> None:
    op.drop_index("ix_gateway_tokens_principal", table_name="gateway_tokens")
    op.drop_table("gateway_tokens")
