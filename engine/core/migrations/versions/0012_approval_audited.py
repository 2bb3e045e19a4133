"""An approval counts only once its audit entry is written: ``plan_approvals.audited_at``.

``PlanStore.add_approval`` stores a decision, appends its ``approval`` audit entry, then sets
``audited_at``. Only rows with ``audited_at`` set are counted; a row whose append failed is
completed (entry appended, ``audited_at`` set) when the same envelope is submitted again, as the
approval workflow's retried activity does. Rows stored before this migration were audited right
after they were stored (ADR 0009), so they take their ``received_at``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("plan_approvals") as batch:
        batch.add_column(sa.Column("audited_at", sa.String(32), nullable=True))
    op.execute("UPDATE plan_approvals SET audited_at = received_at")


def downgrade() -> None:
    with op.batch_alter_table("plan_approvals") as batch:
        batch.drop_column("audited_at")
