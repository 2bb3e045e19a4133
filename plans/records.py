"""What the plan store hands back: stored plans, approvals and step claims, as the database has them.

    record = plans.get(plan_id)                   # PlanRecord: state, planner, executor, times, raw envelope
    record.unverified_plan().title                # for display only: PlanStore verifies on every use
    [a.approver for a in plans.approvals(plan_id)]          # ApprovalRecord, in the order received
    [(c.step_index, c.outcome) for c in plans.claims(plan_id)]   # ClaimRecord, one per claimed step
    status = plans.status(plan_id)                # PlanStatus: the verifier's count and the policy's

Records are plain frozen dataclasses read from rows: nothing in them has been
verified (``PlanStatus`` is the exception: it is built only from a plan that
verified). ``PLANS``, ``APPROVALS`` and ``CLAIMS`` are the tables the store writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Table

from writ.engine.core.errors import WritError
from writ.engine.core.tables import ApprovalRow, PlanRow, StepClaimRow
from writ.engine.core.timeutil import from_db_time
from writ.plans import dsse
from writ.plans.approval_result import ApprovalResult
from writ.plans.assessment import PolicyApprovalResult
from writ.plans.lifecycle import PlanState
from writ.plans.models import Plan, PlanLimits
from writ.plans.statements import ApprovalStatement

__all__ = [
    "APPROVALS",
    "CLAIMS",
    "PLANS",
    "ApprovalRecord",
    "ClaimRecord",
    "FinishOutcome",
    "PlanRecord",
    "PlanStatus",
    "StepOutcome",
    "approval_record",
    "claim_record",
    "plan_record",
]

StepOutcome = Literal["succeeded", "failed"]
FinishOutcome = Literal["completed", "failed", "aborted"]

PLANS: Table = PlanRow.__table__  # type: ignore[attr-defined]
APPROVALS: Table = ApprovalRow.__table__  # type: ignore[attr-defined]
CLAIMS: Table = StepClaimRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PlanRecord:
    """A stored plan as the database has it. ``envelope`` is unverified: ``PlanStore`` verifies on use.

        record = plans.get(plans.resolve("3f2a9c0d"))
        print(record.state, record.planner, record.expires_at)     # PlanState.PENDING alice 2026-11-22 14:00:00+00:00
    """

    id: str
    planner: str
    title: str
    state: PlanState
    executor: str | None
    created_at: datetime
    expires_at: datetime
    submitted_at: datetime
    updated_at: datetime
    envelope: bytes

    def unverified_plan(self, limits: PlanLimits | None = None) -> Plan:
        """The plan in the stored envelope, parsed but NOT verified: for display only."""
        env = dsse.Envelope.from_json(self.envelope, max_bytes=(limits or PlanLimits()).max_envelope_bytes)
        return Plan.from_payload(env.payload, limits)


@dataclass(frozen=True)
class ApprovalRecord:
    """One stored approval or rejection, with its envelope exactly as received (unverified).

        for a in plans.approvals(plan_id):
            print(a.seq, a.approver, a.decision, a.comment())     # 1 bob approve looks right
    """

    seq: int
    plan_id: str
    approver: str
    key_id: str
    decision: str
    envelope: bytes
    envelope_digest: str
    received_at: datetime
    audited: bool = True  # its `approval` audit entry is written; only audited decisions count

    def comment(self) -> str:
        """The statement's comment (unverified: for display)."""
        try:
            env = dsse.Envelope.from_json(self.envelope)
            return ApprovalStatement.from_payload(env.payload).predicate.comment
        except WritError:
            return ""


@dataclass(frozen=True)
class ClaimRecord:
    """A claimed plan step: who claimed it, for which arguments, and (once recorded) how it ended.

        claim = plans.claim_step(plan_id, 0, "exec-bot", server="fs", tool="write_file",
                                 definition_digest=d, args=args)
        claim.outcome                 # None until plans.record_result(plan_id, 0, digest, "succeeded")
    """

    plan_id: str
    step_index: int
    executor: str
    claimed_at: datetime
    args_digest: str
    result_digest: str | None
    outcome: str | None
    finished_at: datetime | None
    attempt: int = 1  # how many times the step was claimed (more than 1 only if policy let a failed step retry)


@dataclass(frozen=True)
class PlanStatus:
    """A stored plan, verified now: the verifier's count, the policy's, and where they differ.

        status = plans.status(plan_id)
        status.result.approved, status.result.summary()   # False  'plan sha256:3f2a.. has 1/2 approvals; ...'
        status.policy.satisfied, status.disagreements      # the writ.approval policy's view, and any difference
    """

    record: PlanRecord
    plan: Plan
    result: ApprovalResult  # the gate folded in: ``approved`` only if the policy agrees
    policy: PolicyApprovalResult
    disagreements: tuple[str, ...]
    verifier_approved: bool


def plan_record(row: Any) -> PlanRecord:
    """A ``plans`` row as a ``PlanRecord``."""
    return PlanRecord(
        id=row.id,
        planner=row.planner,
        title=row.title,
        state=PlanState(row.state),
        executor=row.executor,
        created_at=from_db_time(row.created_at),
        expires_at=from_db_time(row.expires_at),
        submitted_at=from_db_time(row.submitted_at),
        updated_at=from_db_time(row.updated_at),
        envelope=bytes(row.envelope),
    )


def approval_record(row: Any) -> ApprovalRecord:
    """A ``plan_approvals`` row as an ``ApprovalRecord``."""
    return ApprovalRecord(
        seq=row.seq,
        plan_id=row.plan_id,
        approver=row.approver,
        key_id=row.key_id,
        decision=row.decision,
        envelope=bytes(row.envelope),
        envelope_digest=row.envelope_digest,
        received_at=from_db_time(row.received_at),
        audited=row.audited_at is not None,
    )


def claim_record(row: Any) -> ClaimRecord:
    """A ``step_claims`` row as a ``ClaimRecord``."""
    return ClaimRecord(
        plan_id=row.plan_id,
        step_index=row.step_index,
        executor=row.executor,
        claimed_at=from_db_time(row.claimed_at),
        args_digest=row.args_digest,
        result_digest=row.result_digest,
        outcome=row.outcome,
        finished_at=from_db_time(row.finished_at) if row.finished_at else None,
        attempt=int(row.attempt),
    )
