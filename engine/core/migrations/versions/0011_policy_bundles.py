"""The OPA bundle of every policy revision an engine of this instance loaded (ADR 0022).

``policy_bundles`` keeps, per policy revision (``sha256:`` of the policy set), the reproducible
``.tar.gz`` that ``writ policy bundle`` writes, and when this instance first loaded it. An
attestation bundle carries the policy bundle of each revision that decided its plan's calls
and its approval requirement, so an auditor re-evaluates them offline; policies change over
time, so each revision is kept when it is first loaded. Existing logs get no rows: a revision
that decided before this migration and is no longer in force cannot be exported.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "policy_bundles",
        sa.Column("revision", sa.String(71), primary_key=True),
        sa.Column("bundle", sa.LargeBinary, nullable=False),
        sa.Column("first_seen", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("policy_bundles")
