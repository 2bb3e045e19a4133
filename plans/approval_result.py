"""What counting approvals gives: the requirement it counts against, and the result object.

    requirement = ApprovalRequirement(quorum=2, required_groups=("code-owners",), max_ttl_seconds=86400)
    result = evaluate_approvals(plan, envelopes, trust, now=now, requirement=requirement)   # writ.plans.verify
    result.approved, result.approvers, result.missing       # False ('bob',) ('code-owners',)
    [(i.principal, i.reason) for i in result.ignored]       # [('carol', IgnoreReason.KEY_INVALID)]
    result.summary()        # 'plan sha256:3f2a9c0d41be.. has 1/2 approvals; missing: code-owners; ignored: ...'

The verifier (``writ.plans.verify``) makes these; the approval page renders them, and
``require_approved`` raises ``result.summary()`` when a plan is not approved.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from writ.engine.core.timeutil import iso
from writ.plans.models import short_plan_id
from writ.plans.statements import Decision

__all__ = ["ApprovalRequirement", "ApprovalResult", "CountedDecision", "IgnoreReason", "IgnoredApproval"]


class IgnoreReason(StrEnum):
    """Why an approval does not count. The same codes, in the same precedence, as ``data.writ.approval``.

        {i.reason for i in result.ignored} == {IgnoreReason.SELF_APPROVAL}    # the planner approved their own plan
    """

    MALFORMED = "malformed"  # not an envelope or not an approval statement, or not exactly one signature
    BAD_SIGNATURE = "bad_signature"  # verifies under no trusted key of an approver (nor the one it names)
    FOREIGN_KEY = "foreign_key"  # names one approver, signed by another principal's key
    SELF_APPROVAL = "self_approval"  # signed by the plan's own planner (with any of their keys)
    NOT_AN_APPROVER = "not_an_approver"  # signed by a trusted key of another role
    WRONG_PLAN = "wrong_plan"  # about another plan digest
    KEY_INVALID = "key_invalid"  # revoked, expired or not yet valid at `now`
    NOT_IN_REQUIRED_GROUP = "not_in_required_group"  # groups are required and the approver is in none
    DUPLICATE_APPROVER = "duplicate_approver"  # this principal already decided; the first decision counts
    OVER_LIMIT = "over_limit"  # beyond limits.max_approvals, not even checked


class ApprovalRequirement(BaseModel):
    """What policy requires: the shape of ``data.writ.approval.requirement``. Never satisfied by nothing.

        ApprovalRequirement(quorum=2, required_groups=("code-owners",), max_ttl_seconds=86400)
        requirement_for(engine, plan, now)      # the same, as the writ.approval policy gives it
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    quorum: int = Field(ge=1, description="Distinct approvers needed (never 0: an empty 'all of' is an error).")
    required_groups: tuple[str, ...] = Field(
        (),
        description="Each group needs one counted approver; if any, only members of these groups count.",
    )
    max_ttl_seconds: int | None = Field(None, gt=0, description="Longest allowed expires_at - created_at.")
    no_self_approval: Literal[True] = Field(True, description="Always true: it cannot be switched off.")


class CountedDecision(BaseModel):
    """An approval or rejection that counts: whose, with which key, and what it says.

        [(c.principal, c.decision, c.comment) for c in result.approvals]   # [('bob', 'approve', 'looks right')]
    """

    model_config = ConfigDict(frozen=True)

    index: int
    principal: str
    key_id: str
    decision: Decision
    comment: str
    at: datetime


class IgnoredApproval(BaseModel):
    """An approval that does not count, with the reason code and a sentence saying why.

        [(i.index, i.reason, i.detail) for i in result.ignored]
        # [(1, IgnoreReason.KEY_INVALID, "key sha256:9a1f0c3e2b7d of 'carol' was revoked at 2026-11-21T09:00:00Z")]
    """

    model_config = ConfigDict(frozen=True)

    index: int
    reason: IgnoreReason
    detail: str
    principal: str | None = None
    key_id: str | None = None


class ApprovalResult(BaseModel):
    """Where a plan stands: who counted, what is missing, what was ignored and why.

        result = evaluate_approvals(plan, envelopes, trust, now=now, requirement=requirement)
        result.approved, result.approvers, result.missing     # False ('bob',) ('code-owners',)
        result.summary()        # 'plan sha256:3f2a9c0d41be.. has 1/2 approvals; missing: code-owners'
    """

    model_config = ConfigDict(frozen=True)

    plan_id: str
    requirement: ApprovalRequirement
    approvals: tuple[CountedDecision, ...]
    rejections: tuple[CountedDecision, ...]
    ignored: tuple[IgnoredApproval, ...]
    missing_groups: tuple[str, ...]
    violations: tuple[str, ...] = Field(description="What is wrong with the plan itself, whatever the approvals.")
    expires_at: datetime
    expired: bool

    @computed_field  # type: ignore[prop-decorator]
    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(a.principal for a in self.approvals)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rejected(self) -> bool:
        return bool(self.rejections)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missing_approvals(self) -> int:
        return max(0, self.requirement.quorum - len(self.approvals))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missing(self) -> tuple[str, ...]:
        """Required groups not covered, then how many more approvals beyond those groups."""
        extra = self.missing_approvals - len(self.missing_groups)
        more = (f"{extra} more approval{'s' if extra > 1 else ''}",) if extra > 0 else ()
        return self.missing_groups + more

    @computed_field  # type: ignore[prop-decorator]
    @property
    def approved(self) -> bool:
        return (
            self.missing_approvals == 0
            and not self.missing_groups
            and not self.rejected
            and not self.expired
            and not self.violations
        )

    def summary(self) -> str:
        """One sentence on where the plan stands, as ``require_approved`` raises it."""
        pid = short_plan_id(self.plan_id)
        if self.violations:
            return f"plan {pid} {'; '.join(self.violations)}"
        if self.expired:
            return f"plan {pid} expired at {iso(self.expires_at)}"
        if self.rejected:
            by = ", ".join(f"{r.principal} ({r.comment})" if r.comment else r.principal for r in self.rejections)
            return f"plan {pid} was rejected by {by}"
        text = f"plan {pid} has {len(self.approvals)}/{self.requirement.quorum} approvals"
        if self.missing:
            text += "; missing: " + ", ".join(self.missing)
        if self.ignored:
            text += "; ignored: " + ", ".join(f"{i.principal or f'#{i.index}'} ({i.reason})" for i in self.ignored)
        return text
