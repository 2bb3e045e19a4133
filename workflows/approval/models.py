"""What goes in and out of the approval workflow, its activities and its Updates (pydantic, on the wire as JSON).

    StartApproval(plan_id=record.id, planner="plan-bot", title="Fix typo", expires_at=record.expires_at)
    Decision(envelope=sign_approval(plan_id, key, approver="alice").to_json().decode())   # 'approve' Update
    ApprovalCount(...).summary         # '1/2 approvals (alice); missing: code-owners'

Every model is frozen and forbids unknown fields: a workflow replayed from history reads
exactly what was written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApprovalCount",
    "ApprovalStatus",
    "Decision",
    "DecisionSeen",
    "NoticeSent",
    "Notice",
    "OpenedPlan",
    "PlanAt",
    "PlanFinished",
    "PlanSnapshot",
    "Recipient",
    "RecordDecision",
    "RetryPolicyData",
    "Schedule",
    "StartApproval",
    "WorkflowEvent",
    "WorkflowOutcome",
]

NoticeEvent = Literal["waiting", "reminder", "escalation", "approved", "rejected", "expired"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StartApproval(_Model):
    """The workflow's input: facts of the stored, verified plan that the validators need before any activity."""

    plan_id: str
    planner: str
    title: str
    expires_at: datetime


class Schedule(_Model):
    """When to remind and escalate (``data.writ.approval.schedule``); None: never."""

    remind_after_hours: float | None = None
    escalate_after_hours: float | None = None
    escalate_to: tuple[str, ...] = ()


class Recipient(_Model):
    """Someone to notify: a principal, and their email when the trust store has one."""

    principal: str
    email: str | None = None


class RetryPolicyData(_Model):
    """How notification activities retry (from ``WRIT_NOTIFY__*`` on the worker that opened the plan)."""

    max_attempts: int = 5
    first_retry_s: float = 2.0
    timeout_s: float = 10.0


class DecisionSeen(_Model):
    """A counted decision, as the ``status`` query shows it."""

    approver: str
    decision: Literal["approve", "reject"]
    at: datetime


class ApprovalCount(_Model):
    """The count after a decision: what ``writ approve`` prints and the web form shows."""

    plan_id: str
    state: str
    approvals: int
    quorum: int
    approvers: tuple[str, ...] = ()
    rejected_by: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    decisions: tuple[DecisionSeen, ...] = ()

    @property
    def summary(self) -> str:
        """``1/2 approvals (alice); missing: code-owners``, ``2/2 approvals (alice, bob); approved``, ``rejected by bob``."""
        if self.rejected_by:
            return f"rejected by {', '.join(self.rejected_by)}"
        text = f"{self.approvals}/{self.quorum} approvals"
        if self.approvers:
            text += f" ({', '.join(self.approvers)})"
        if self.missing and self.state == "pending":
            text += "; missing: " + ", ".join(self.missing)
        return text if self.state == "pending" else f"{text}; {self.state}"


class OpenedPlan(_Model):
    """What the ``open_plan`` activity learns from the stores and the policy when the workflow starts."""

    state: str
    requirement: dict[str, Any]
    schedule: Schedule
    count: ApprovalCount
    decided: tuple[str, ...]
    approvers: tuple[Recipient, ...]
    escalation: tuple[Recipient, ...]
    channels: tuple[str, ...]
    retry: RetryPolicyData
    link: str


class Decision(_Model):
    """An ``approve`` or ``reject`` Update: the approver's signed statement, as the DSSE envelope's JSON text."""

    envelope: str = Field(max_length=2_097_152)


class RecordDecision(_Model):
    """The ``record_decision`` activity's input."""

    plan_id: str
    envelope: str


class Notice(_Model):
    """One notification of one event about one plan, to its recipients."""

    event: NoticeEvent
    plan_id: str
    title: str
    planner: str
    link: str
    summary: str
    requirement: dict[str, Any]
    expires_at: datetime
    recipients: tuple[Recipient, ...]
    event_id: str


class NoticeSent(_Model):
    """What became of one notice on one channel (``status`` query and the audit log)."""

    event: NoticeEvent
    channel: str
    recipients: tuple[str, ...]
    ok: bool
    detail: str = ""
    at: datetime


class WorkflowEvent(_Model):
    """An audit entry the workflow asks for (``record_event``): kind ``workflow``, with its ids."""

    plan_id: str
    event: str
    event_id: str
    details: dict[str, Any] = Field(default_factory=dict)


class PlanFinished(_Model):
    """The ``plan_finished`` signal: the gateway (or ``writ plan abort``) says execution ended.

    A hint only: the workflow reads the plan's state from the store before it records the end.
    """

    outcome: str = Field(max_length=32)
    by: str = ""


class PlanAt(_Model):
    """A plan, at the workflow's time (the ``expire_plan`` and ``plan_state`` activities' input)."""

    plan_id: str
    at: datetime


class PlanSnapshot(_Model):
    """The plan's state in the store (``plan_state`` activity)."""

    state: str
    ended: bool


class ApprovalStatus(_Model):
    """The ``status`` query: where the sign-off stands."""

    plan_id: str
    state: str
    requirement: dict[str, Any]
    count: ApprovalCount | None
    decisions: tuple[DecisionSeen, ...]
    expires_at: datetime
    notified: tuple[NoticeSent, ...]
    export: str


class WorkflowOutcome(_Model):
    """What the workflow returns when it ends."""

    plan_id: str
    state: str
    export: str
