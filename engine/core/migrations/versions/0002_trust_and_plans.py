"""The trust store (principals, keys) and the plan store (plans, approvals, step claims).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen here: a migration never imports the application's current constants.
ROLES = "role IN ('planner', 'executor', 'approver', 'auditor', 'admin')"
STATES = (
    "state IN ('proposed', 'pending', 'approved', 'rejected', 'expired', "
    "'executing', 'completed', 'failed', 'aborted')"
)
OUTCOME = (
    "(outcome IS NULL AND finished_at IS NULL) OR "
    "(outcome IN ('succeeded', 'failed') AND finished_at IS NOT NULL)"
)


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.CheckConstraint(ROLES, name="ck_principals_role"),
        sa.UniqueConstraint("name", "role", name="uq_principals_name_role"),
    )
    op.create_index("uq_principals_name_lower", "principals", [sa.text("lower(name)")], unique=True)
    op.create_table(
        "trust_keys",
        sa.Column("key_id", sa.String(71), primary_key=True),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("not_before", sa.String(32), nullable=True),
        sa.Column("not_after", sa.String(32), nullable=True),
        sa.Column("revoked_at", sa.String(32), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["principal", "role"], ["principals.name", "principals.role"], name="fk_trust_keys_principal_role"
        ),
        sa.CheckConstraint(ROLES, name="ck_trust_keys_role"),
    )
    op.create_index("ix_trust_keys_principal", "trust_keys", ["principal"])
    op.create_table(
        "plans",
        sa.Column("id", sa.String(71), primary_key=True),
        sa.Column("planner", sa.String(128), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("executor", sa.String(128), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
        sa.Column("submitted_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.CheckConstraint(STATES, name="ck_plans_state"),
    )
    op.create_index("ix_plans_state_expires_at", "plans", ["state", "expires_at"])
    op.create_table(
        "plan_approvals",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("plan_id", sa.String(71), sa.ForeignKey("plans.id"), nullable=False),
        sa.Column("approver", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(71), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("envelope_digest", sa.String(71), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
        sa.UniqueConstraint("plan_id", "envelope_digest", name="uq_plan_approvals_envelope"),
        sa.CheckConstraint("decision IN ('approve', 'reject')", name="ck_plan_approvals_decision"),
    )
    op.create_index("ix_plan_approvals_plan_id", "plan_approvals", ["plan_id", "seq"])
    op.create_table(
        "step_claims",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("plan_id", sa.String(71), sa.ForeignKey("plans.id"), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("executor", sa.String(128), nullable=False),
        sa.Column("claimed_at", sa.String(32), nullable=False),
        sa.Column("args_digest", sa.String(71), nullable=False),
        sa.Column("result_digest", sa.String(71), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.UniqueConstraint("plan_id", "step_index", name="uq_step_claims_plan_step"),
        sa.CheckConstraint("step_index >= 0", name="ck_step_claims_step_index"),
        sa.CheckConstraint(OUTCOME, name="ck_step_claims_outcome"),
    )


def downgrade() -> None:
    op.drop_table("step_claims")
    op.drop_table("plan_approvals")
    op.drop_index("ix_plans_state_expires_at", table_name="plans")
    op.drop_table("plans")
    op.drop_index("ix_trust_keys_principal", table_name="trust_keys")
    op.drop_table("trust_keys")
    op.drop_index("uq_principals_name_lower", table_name="principals")
    op.drop_table("principals")
