"""Group membership in the trust store (``writ groups add``), beside the policy data's groups.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "principal_groups",
        sa.Column("group_name", sa.String(128), primary_key=True),
        sa.Column("principal", sa.String(128), sa.ForeignKey("principals.name"), primary_key=True),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_principal_groups_principal", "principal_groups", ["principal"])


def downgrade() -> None:
    op.drop_index("ix_principal_groups_principal", table_name="principal_groups")
    op.drop_table("principal_groups")
