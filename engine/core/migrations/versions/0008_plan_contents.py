"""The content a proposed file change replaces, for the approval page's diffs.

``plan_contents`` holds one row per (plan, step) that the gateway looked at when the plan was
proposed: the file's text as the planner's session read it (``captured``), or why there is no
diff (``absent``: a new file; ``unavailable``: no read tool, read denied, upstream error, binary
or too large; ``not_a_file_write``: e.g. a git commit). Written once by
``writ.plans.contents.ContentStore``; a re-proposal of the same plan adds nothing.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "plan_contents",
        sa.Column("plan_id", sa.String(71), sa.ForeignKey("plans.id"), primary_key=True),
        sa.Column("step_index", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("server", sa.String(128), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("content_sha256", sa.String(71), nullable=True),
        sa.Column("captured_at", sa.String(32), nullable=False),
        sa.CheckConstraint("step_index >= 0", name="ck_plan_contents_step_index"),
        sa.CheckConstraint(
            "status IN ('captured', 'absent', 'unavailable', 'not_a_file_write')",
            name="ck_plan_contents_status",
        ),
        sa.CheckConstraint(
            "(status = 'captured' AND content IS NOT NULL AND content_sha256 IS NOT NULL)"
            " OR (status <> 'captured' AND content IS NULL AND content_sha256 IS NULL)",
            name="ck_plan_contents_content",
        ),
    )


def downgrade() -> None:
    op.drop_table("plan_contents")
