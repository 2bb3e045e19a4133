"""Approvers' contacts: the email the approval workflow notifies a principal at.

``principal_contacts`` holds at most one row per principal (``writ principals contact``);
no row means no email (the webhook, if configured, still carries the notice).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "principal_contacts",
        sa.Column("principal", sa.String(128), sa.ForeignKey("principals.name"), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("principal_contacts")
