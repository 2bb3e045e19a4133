"""Writ's tables, as SQLModel classes. The schema itself is made by the migrations in ``migrations/``.

    from sqlmodel import col, select
    from writ.engine.core.tables import AuditLogRow

    with store.session() as session:
        last = session.exec(select(AuditLogRow).order_by(col(AuditLogRow.seq).desc())).first()

Rows of ``audit_log`` are written only by ``writ.attestations.audit.AuditLog.append``;
its constraints keep the chain linear: ``seq`` and ``prev_hash`` are unique (two
entries can never claim the same predecessor), ``seq`` starts at 1, and only
entry 1 links to the genesis hash.

The trust store (``principals``, ``trust_keys``, ``principal_groups``) is written by
``writ.plans.trust_store.TrustStore``; plans, their approvals and step claims by
``writ.plans.store.PlanStore``. The database enforces what must hold across
processes: a key has its principal's role (a composite foreign key), principal
names are unique ignoring case, the same approval envelope is stored once, and a
plan step is claimed at most once (``UNIQUE (plan_id, step_index)``).

Times are UTC text, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (fixed width, so text order is
time order on both SQLite and PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

GENESIS_HASH = "sha256:" + "0" * 64
"""The ``prev_hash`` of the first audit entry."""


class AuditLogRow(SQLModel, table=True):
    """One stored audit entry, exactly as hashed (see ``writ.attestations.audit``)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
        UniqueConstraint("entry_hash", name="uq_audit_log_entry_hash"),
        CheckConstraint("seq >= 1", name="ck_audit_log_seq_positive"),
        CheckConstraint(
            f"(seq = 1 AND prev_hash = '{GENESIS_HASH}') OR (seq > 1 AND prev_hash <> '{GENESIS_HASH}')",
            name="ck_audit_log_genesis",
        ),
    )

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))
    kind: str = Field(sa_column=Column(String(64), nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(sa_column=Column(String(71), nullable=False))
    entry_hash: str = Field(sa_column=Column(String(71), nullable=False))


ROLES = ("planner", "executor", "approver", "auditor", "admin")
PLAN_STATES = ("proposed", "pending", "approved", "rejected", "expired", "executing", "completed", "failed", "aborted")
STEP_OUTCOMES = ("succeeded", "failed")
STEP_CLAIM_UNIQUE = "uq_step_claims_plan_step"
"""The constraint that makes a step claim exactly-once; its violation is ``StepAlreadyClaimed``."""


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class PrincipalRow(SQLModel, table=True):
    """A principal: a person or an agent identity, with exactly one role."""

    __tablename__ = "principals"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="ck_principals_role"),
        UniqueConstraint("name", "role", name="uq_principals_name_role"),  # target of trust_keys' foreign key
        Index("uq_principals_name_lower", text("lower(name)"), unique=True),
    )

    name: str = Field(sa_column=Column(String(128), primary_key=True))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))


class TrustedKeyRow(SQLModel, table=True):
    """A trusted Ed25519 public key of one principal, in that principal's role, with its validity window."""

    __tablename__ = "trust_keys"
    __table_args__ = (
        ForeignKeyConstraint(
            ["principal", "role"], ["principals.name", "principals.role"], name="fk_trust_keys_principal_role"
        ),
        CheckConstraint(_in("role", ROLES), name="ck_trust_keys_role"),
        Index("ix_trust_keys_principal", "principal"),
    )

    key_id: str = Field(sa_column=Column(String(71), primary_key=True))
    principal: str = Field(sa_column=Column(String(128), nullable=False))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    public_key: str = Field(sa_column=Column(String(64), nullable=False))  # base64 of the 32 raw bytes
    not_before: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    not_after: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    revoked_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))


class GroupMemberRow(SQLModel, table=True):
    """One principal's membership of one group (``writ groups add``), beside those of the policy data."""

    __tablename__ = "principal_groups"
    __table_args__ = (Index("ix_principal_groups_principal", "principal"),)

    group_name: str = Field(sa_column=Column(String(128), primary_key=True))
    principal: str = Field(
        sa_column=Column(String(128), ForeignKey("principals.name"), primary_key=True)
    )
    created_at: str = Field(sa_column=Column(String(32), nullable=False))


class PlanRow(SQLModel, table=True):
    """A submitted plan: the exact envelope bytes as received, and where it stands in its lifecycle."""

    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint(_in("state", PLAN_STATES), name="ck_plans_state"),
        Index("ix_plans_state_expires_at", "state", "expires_at"),
    )

    id: str = Field(sa_column=Column(String(71), primary_key=True))  # Plan.id, sha256:<hex> of the payload
    planner: str = Field(sa_column=Column(String(128), nullable=False))
    title: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(sa_column=Column(String(16), nullable=False))
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    executor: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))  # the plan's own created_at
    expires_at: str = Field(sa_column=Column(String(32), nullable=False))  # the plan's own expires_at
    submitted_at: str = Field(sa_column=Column(String(32), nullable=False))
    updated_at: str = Field(sa_column=Column(String(32), nullable=False))


class ApprovalRow(SQLModel, table=True):
    """A signed approval or rejection of a plan, kept exactly as received, in the order received."""

    __tablename__ = "plan_approvals"
    __table_args__ = (
        UniqueConstraint("plan_id", "envelope_digest", name="uq_plan_approvals_envelope"),
        CheckConstraint("decision IN ('approve', 'reject')", name="ck_plan_approvals_decision"),
        Index("ix_plan_approvals_plan_id", "plan_id", "seq"),
    )

    seq: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    plan_id: str = Field(sa_column=Column(String(71), ForeignKey("plans.id"), nullable=False))
    approver: str = Field(sa_column=Column(String(128), nullable=False))
    key_id: str = Field(sa_column=Column(String(71), nullable=False))  # the trusted key that verified it
    decision: str = Field(sa_column=Column(String(8), nullable=False))
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    envelope_digest: str = Field(sa_column=Column(String(71), nullable=False))  # of the envelope's canonical JSON
    received_at: str = Field(sa_column=Column(String(32), nullable=False))
    # set once its `approval` audit entry is written; only audited rows count (migration 0012)
    audited_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class StepClaimRow(SQLModel, table=True):
    """One executor's claim on one plan step. ``uq_step_claims_plan_step`` makes every step run at most once."""

    __tablename__ = "step_claims"
    __table_args__ = (
        UniqueConstraint("plan_id", "step_index", name=STEP_CLAIM_UNIQUE),
        CheckConstraint("step_index >= 0", name="ck_step_claims_step_index"),
        CheckConstraint(
            f"(outcome IS NULL AND finished_at IS NULL) OR ({_in('outcome', STEP_OUTCOMES)} AND finished_at IS NOT NULL)",
            name="ck_step_claims_outcome",
        ),
    )

    seq: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    plan_id: str = Field(sa_column=Column(String(71), ForeignKey("plans.id"), nullable=False))
    step_index: int = Field(sa_column=Column(Integer, nullable=False))
    executor: str = Field(sa_column=Column(String(128), nullable=False))
    claimed_at: str = Field(sa_column=Column(String(32), nullable=False))
    args_digest: str = Field(sa_column=Column(String(71), nullable=False))
    result_digest: str | None = Field(default=None, sa_column=Column(String(71), nullable=True))
    outcome: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    finished_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    attempt: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))


class TrustRevisionRow(SQLModel, table=True):
    """The trust store's one revision number, bumped in the same transaction as every trust change.

    A plan verified as backed under revision N stays backed while the revision is N.
    """

    __tablename__ = "trust_revision"
    __table_args__ = (
        CheckConstraint("id = 1", name="ck_trust_revision_single_row"),
        CheckConstraint("revision >= 0", name="ck_trust_revision_non_negative"),
    )

    id: int = Field(default=1, sa_column=Column(Integer, primary_key=True, autoincrement=False))
    revision: int = Field(sa_column=Column(BigInteger, nullable=False))


class GatewayTokenRow(SQLModel, table=True):
    """A bearer token of the gateway's HTTP transport (``writ tokens new``): only its sha256 is kept.

    A token acts for one principal of the trust store; a revoked token stays, so its id is never reused.
    """

    __tablename__ = "gateway_tokens"
    __table_args__ = (
        UniqueConstraint("token_sha256", name="uq_gateway_tokens_token_sha256"),
        Index("ix_gateway_tokens_principal", "principal"),
    )

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    principal: str = Field(sa_column=Column(String(128), ForeignKey("principals.name"), nullable=False))
    token_sha256: str = Field(sa_column=Column(String(71), nullable=False))  # sha256:<hex> of the token text
    created_at: str = Field(sa_column=Column(String(32), nullable=False))
    revoked_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class PrincipalStatusRow(SQLModel, table=True):
    """Whether a principal is locked (after a violation) or disabled; no row: neither.

    A lock belongs to the principal, not to one session: every gateway process reads this row
    before each call. It is lifted only by an operator (``writ principals unlock``).
    """

    __tablename__ = "principal_status"

    principal: str = Field(sa_column=Column(String(128), ForeignKey("principals.name"), primary_key=True))
    locked_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    lock_session: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    lock_decision: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    lock_reasons: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # comma-separated codes
    disabled_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    disable_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: str = Field(sa_column=Column(String(32), nullable=False))


class GatewaySessionRow(SQLModel, table=True):
    """One agent session of a gateway process (``writ mcp``, or an MCP session of ``writ serve``).

    ``ended_at`` stays empty for a session whose process died without ending it; ``process`` is
    ``host:pid``, so an operator can tell.
    """

    __tablename__ = "gateway_sessions"
    __table_args__ = (
        CheckConstraint("transport IN ('stdio', 'http')", name="ck_gateway_sessions_transport"),
        Index("ix_gateway_sessions_principal", "principal"),
        Index("ix_gateway_sessions_ended_at", "ended_at"),
    )

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    principal: str = Field(sa_column=Column(String(128), ForeignKey("principals.name"), nullable=False))
    transport: str = Field(sa_column=Column(String(8), nullable=False))
    process: str = Field(sa_column=Column(String(160), nullable=False))
    started_at: str = Field(sa_column=Column(String(32), nullable=False))
    ended_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    locked_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class PrincipalContactRow(SQLModel, table=True):
    """Where to reach a principal (``writ principals contact``): the approval workflow emails approvers here.

    Written only by ``writ.plans.contacts.ContactStore``; no row: no email, the webhook alone tells them.
    """

    __tablename__ = "principal_contacts"

    principal: str = Field(sa_column=Column(String(128), ForeignKey("principals.name"), primary_key=True))
    email: str = Field(sa_column=Column(String(254), nullable=False))
    updated_at: str = Field(sa_column=Column(String(32), nullable=False))


CONTENT_STATUSES = ("captured", "absent", "unavailable", "not_a_file_write")


class PlanContentRow(SQLModel, table=True):
    """What one plan step's file write replaces, read when the plan was proposed (the approval page's diff).

    Written only by ``writ.plans.contents.ContentStore``, once per (plan, step). ``content`` is
    UTF-8 text and present only when ``status`` is ``captured``; otherwise ``reason`` says why
    there is no diff.
    """

    __tablename__ = "plan_contents"
    __table_args__ = (
        CheckConstraint("step_index >= 0", name="ck_plan_contents_step_index"),
        CheckConstraint(_in("status", CONTENT_STATUSES), name="ck_plan_contents_status"),
        CheckConstraint(
            "(status = 'captured' AND content IS NOT NULL AND content_sha256 IS NOT NULL)"
            " OR (status <> 'captured' AND content IS NULL AND content_sha256 IS NULL)",
            name="ck_plan_contents_content",
        ),
    )

    plan_id: str = Field(sa_column=Column(String(71), ForeignKey("plans.id"), primary_key=True))
    step_index: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    server: str = Field(sa_column=Column(String(128), nullable=False))
    tool: str = Field(sa_column=Column(String(128), nullable=False))
    path: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # as given in the step
    status: str = Field(sa_column=Column(String(24), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    content: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    content_sha256: str | None = Field(default=None, sa_column=Column(String(71), nullable=True))  # sha256:<hex>
    captured_at: str = Field(sa_column=Column(String(32), nullable=False))


class ApproverInviteRow(SQLModel, table=True):
    """A one-time link that lets a browser enrol a key for an approver (``writ approvers invite``).

    Only the SHA-256 of the link's token is kept. ``redeemed_at`` is set once, by the enrolment
    that used it (an ``UPDATE ... WHERE redeemed_at IS NULL``): a link works once, before ``expires_at``.
    """

    __tablename__ = "approver_invites"
    __table_args__ = (UniqueConstraint("token_sha256", name="uq_approver_invites_token_sha256"),)

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    principal: str = Field(sa_column=Column(String(128), ForeignKey("principals.name"), nullable=False))
    token_sha256: str = Field(sa_column=Column(String(71), nullable=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))
    expires_at: str = Field(sa_column=Column(String(32), nullable=False))
    redeemed_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    key_id: str | None = Field(default=None, sa_column=Column(String(71), nullable=True))


class WebKeyRow(SQLModel, table=True):
    """A trusted key that a browser generated and enrolled through an invite (its private half never left it)."""

    __tablename__ = "web_keys"
    __table_args__ = (
        UniqueConstraint("invite_id", name="uq_web_keys_invite_id"),
        Index("ix_web_keys_principal", "principal"),
    )

    key_id: str = Field(sa_column=Column(String(71), ForeignKey("trust_keys.key_id"), primary_key=True))
    principal: str = Field(sa_column=Column(String(128), ForeignKey("principals.name"), nullable=False))
    invite_id: str = Field(sa_column=Column(String(32), ForeignKey("approver_invites.id"), nullable=False))
    user_agent: str = Field(sa_column=Column(String(256), nullable=False))
    enrolled_at: str = Field(sa_column=Column(String(32), nullable=False))


class WebChallengeRow(SQLModel, table=True):
    """A login challenge a browser signs with its enrolled key; used once, within minutes."""

    __tablename__ = "web_challenges"
    __table_args__ = (Index("ix_web_challenges_expires_at", "expires_at"),)

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    principal: str = Field(sa_column=Column(String(128), nullable=False))  # as asked: it may name nobody
    payload: str = Field(sa_column=Column(Text, nullable=False))  # the exact bytes the browser signs
    created_at: str = Field(sa_column=Column(String(32), nullable=False))
    expires_at: str = Field(sa_column=Column(String(32), nullable=False))
    used_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class WebSessionRow(SQLModel, table=True):
    """An approver's web session: only the SHA-256 of its cookie is kept; it ends at ``expires_at`` or logout."""

    __tablename__ = "web_sessions"
    __table_args__ = (
        UniqueConstraint("token_sha256", name="uq_web_sessions_token_sha256"),
        Index("ix_web_sessions_principal", "principal"),
    )

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    token_sha256: str = Field(sa_column=Column(String(71), nullable=False))
    principal: str = Field(sa_column=Column(String(128), ForeignKey("principals.name"), nullable=False))
    key_id: str = Field(sa_column=Column(String(71), nullable=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))
    expires_at: str = Field(sa_column=Column(String(32), nullable=False))
    ended_at: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class AuditTreeRow(SQLModel, table=True):
    """One node of the Merkle tree over the audit log: the hash of a perfect subtree (ADR 0017).

    Node ``(level, idx)`` covers leaves ``idx * 2**level`` to ``(idx + 1) * 2**level - 1``; leaf
    ``i`` (level 0) is SHA-256(0x00 || the 32 bytes of entry ``i + 1``'s ``entry_hash``). Written
    only by ``writ.attestations.audit.AuditLog.append``, in the transaction of the entry that
    completes the node, so the tree never runs ahead of or behind the log.
    """

    __tablename__ = "audit_tree"
    __table_args__ = (
        CheckConstraint("level >= 0 AND level < 64", name="ck_audit_tree_level"),
        CheckConstraint("idx >= 0", name="ck_audit_tree_idx"),
    )

    level: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class AuditCheckpointRow(SQLModel, table=True):
    """A signed checkpoint of the audit log's tree: a C2SP signed note (``writ.attestations.checkpoints``).

    One per tree size. The same note is appended to the checkpoint file outside the database;
    ``note`` is the exact text that was signed and written.
    """

    __tablename__ = "audit_checkpoints"
    __table_args__ = (CheckConstraint("tree_size >= 1", name="ck_audit_checkpoints_size"),)

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: str = Field(sa_column=Column(String(44), nullable=False))  # base64, as in the note
    origin: str = Field(sa_column=Column(String(256), nullable=False))
    key_id: str = Field(sa_column=Column(String(71), nullable=False))  # the instance key's sha256: id
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))


class PolicyBundleRow(SQLModel, table=True):
    """The OPA bundle (``.tar.gz``) of one policy revision an engine of this instance loaded (ADR 0022).

    Written by ``writ.attestations.policy_bundles.PolicyBundles`` when an engine first loads the
    revision; read when an attestation bundle carries the policy that decided its plan.
    """

    __tablename__ = "policy_bundles"

    revision: str = Field(sa_column=Column(String(71), primary_key=True))  # sha256: of the policy set
    bundle: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    first_seen: str = Field(sa_column=Column(String(32), nullable=False))
