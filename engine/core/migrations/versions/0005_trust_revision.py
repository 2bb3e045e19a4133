"""The trust store's revision number, and the attempt number of a step claim.

Every change to the trust store (principals, keys, revocations, groups) bumps
``trust_revision.revision`` in the same transaction, so a plan verified under
revision N is known to be still backed while the revision is N. A failed step
that policy lets the executor retry is claimed again on the same row, with
``attempt`` counting its claims.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    table = op.create_table(
        "trust_revision",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_trust_revision_single_row"),
        sa.CheckConstraint("revision >= 0", name="ck_trust_revision_non_negative"),
    )
    op.bulk_insert(table, [{"id": 1, "revision": 0}])
    with op.batch_alter_table("step_claims") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("step_claims") as batch:
        batch.drop_column("attempt")
    op.drop_table("trust_revision")
