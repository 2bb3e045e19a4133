"""What an approver sees of a plan, and whether they may: built once, rendered by the pages and the JSON API.

    viewer = Viewer(principal=trust.principal("alice"), session=session)
    access(services, viewer, record)        # Access: the plan, its requirement, why not visible or decidable
    view = plan_view(services, viewer, record.id)     # PlanView: steps, constraints in words, diffs, approvals, audit
    waiting(services, viewer)               # the pending plans alice may decide and has not decided yet

Who may see a plan is what the ``writ.approval`` policy says of it: an approver who could be
counted (not the planner; in one of the required groups when the policy names any), or one who
already decided on it. Deciding also needs the plan pending. Everything shown comes from the
stored, signed plan (parsed without trusting the database row), plus the verifier's count
(``PlanStore.status``) and the plan's entries in the audit log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from writ.engine.core import reasons
from writ.engine.core.errors import PermissionDenied, WritError
from writ.engine.core.tables import AuditLogRow
from writ.engine.core.timeutil import utc_now
from writ.engine.web.diffs import DiffView, step_diff
from writ.engine.web.sessions import WebSession
from writ.engine.wiring.services import Services
from writ.plans.approval_result import ApprovalRequirement
from writ.plans.assessment import requirement_for
from writ.plans.contents import ContentStore
from writ.plans.models import ContentSha256, OneOf, PathGlob, Plan, PlanStep, short_plan_id
from writ.plans.records import PlanRecord
from writ.plans.trust_records import PrincipalRecord

__all__ = ["Access", "PlanView", "StepView", "Viewer", "access", "constraint_words", "plan_view", "visible_plans",
           "waiting"]

AUDIT_TRAIL_LIMIT = 200
_AUDIT_FIELDS = ("event", "from", "to", "approver", "decision", "code", "reason", "step_index", "executor", "outcome",
                 "principal", "channel", "state")


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the logged-in approver (their trust-store record) and their session."""

    principal: PrincipalRecord
    session: WebSession


@dataclass(frozen=True)
class Access:
    """A plan as one viewer may use it: ``hidden`` (why they may not see it) or ``undecidable`` (why not decide)."""

    record: PlanRecord
    plan: Plan
    requirement: ApprovalRequirement
    decided: bool
    hidden: tuple[str, str] | None
    undecidable: tuple[str, str] | None


@dataclass(frozen=True)
class StepView:
    """One step as the page shows it: every argument as formatted JSON, constraints in words, its diff."""

    index: int
    server: str
    tool: str
    definition_digest: str
    args_json: str
    constraints: tuple[str, ...]
    diff: DiffView | None


@dataclass(frozen=True)
class DecisionView:
    """A counted approval or rejection: who, what, when, with their comment."""

    principal: str
    decision: str
    comment: str
    at: datetime


@dataclass(frozen=True)
class AuditLine:
    """One audit entry about the plan, summarised."""

    seq: int
    at: str
    kind: str
    summary: str


@dataclass(frozen=True)
class PlanView:
    """Everything the plan page shows, and whether this viewer may decide (``undecidable``: why not)."""

    record: PlanRecord
    plan: Plan
    requirement: ApprovalRequirement
    steps: tuple[StepView, ...]
    decisions: tuple[DecisionView, ...]
    summary: str
    problem: str | None
    audit: tuple[AuditLine, ...]
    decided: bool
    undecidable: tuple[str, str] | None


def constraint_words(c: Any) -> str:
    """A constraint as an approver reads it: ``path: any path under /repo matching docs/**``."""
    if isinstance(c, PathGlob):
        return f"{c.arg}: any path under {c.root} matching {c.glob}"
    if isinstance(c, ContentSha256):
        return f"{c.arg}: any text whose UTF-8 bytes have sha256 {c.sha256}"
    if isinstance(c, OneOf):
        return f"{c.arg}: one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in c.values)
    return f"{getattr(c, 'arg', '?')}: {getattr(c, 'kind', 'a constraint')}"


def _decided(services: Services, plan_id: str, principal: str) -> bool:
    return any(a.approver == principal for a in services.plans.approvals(plan_id))


def access(services: Services, viewer: Viewer, record: PlanRecord, *, now: datetime | None = None) -> Access:
    """Whether ``viewer`` may see and decide ``record`` under the policy now (never raises for a refusal)."""
    now = now or utc_now()
    plan = record.unverified_plan(services.settings.limits.plans)
    requirement = requirement_for(services.policy, plan, now)
    me = viewer.principal
    decided = _decided(services, record.id, me.name)
    hidden: tuple[str, str] | None = None
    required = set(requirement.required_groups)
    if not decided and required and not required & set(me.groups):
        hidden = (reasons.PLAN_FORBIDDEN, f"plan {short_plan_id(record.id)} needs approvers from "
                  f"{', '.join(sorted(required))}; {me.name} is in none of them, so the policy does not show it")
    undecidable: tuple[str, str] | None = hidden
    if undecidable is None:
        if plan.planner == me.name:
            undecidable = (reasons.SELF_APPROVAL, f"{me.name} wrote this plan: its author cannot approve or reject it")
        elif decided:
            undecidable = (reasons.DUPLICATE_APPROVER, f"{me.name} already decided on this plan; the first decision "
                           "stands")
        elif plan.is_expired(now):
            undecidable = (reasons.PLAN_EXPIRED, f"this plan expired at {plan.expires_at:%Y-%m-%d %H:%M:%S} UTC: it "
                           "takes no more decisions")
        elif record.state.value != "pending":
            undecidable = (reasons.PLAN_NOT_PENDING, f"this plan is {record.state.value}: it takes no more decisions")
    return Access(record, plan, requirement, decided, hidden, undecidable)


def visible_plans(services: Services, viewer: Viewer, state: str | None = None) -> list[Access]:
    """Every stored plan (in ``state``) this viewer may see, newest first; a plan the policy cannot judge is left out."""
    found = []
    now = utc_now()
    for record in reversed(services.plans.list_plans(state)):
        try:
            a = access(services, viewer, record, now=now)
        except WritError:
            continue
        if a.hidden is None:
            found.append(a)
    return found


def waiting(services: Services, viewer: Viewer) -> list[Access]:
    """Pending plans this viewer may decide and has not decided yet."""
    return [a for a in visible_plans(services, viewer, "pending") if a.undecidable is None]


def _step_view(i: int, step: PlanStep, captured: Any) -> StepView:
    return StepView(i, step.server, step.tool, step.definition_digest,
                    json.dumps(step.args, indent=2, ensure_ascii=False, sort_keys=True),
                    tuple(constraint_words(c) for c in step.constraints), step_diff(step, captured))


def audit_trail(services: Services, plan_id: str) -> tuple[AuditLine, ...]:
    """The plan's entries in the audit log (those whose payload names it as ``plan_id``), oldest first."""
    needle = f'%"plan_id":"{plan_id}"%'  # payloads are RFC 8785 JSON; a plan id is sha256:<hex>, nothing to escape
    query = (select(AuditLogRow.seq, AuditLogRow.created_at, AuditLogRow.kind, AuditLogRow.payload)  # type: ignore[call-overload]
             .where(AuditLogRow.payload.like(needle))  # type: ignore[attr-defined]
             .order_by(AuditLogRow.seq).limit(AUDIT_TRAIL_LIMIT))
    with services.store.connect() as conn:
        rows = conn.execute(query).all()
    lines = []
    for seq, at, kind, payload in rows:
        try:
            value = json.loads(payload)
        except ValueError:
            value = None
        parts = [f"{k}={value[k]}" for k in _AUDIT_FIELDS if isinstance(value, dict) and value.get(k) not in (None, "")]
        lines.append(AuditLine(int(seq), at[:19].replace("T", " "), kind, " ".join(parts)[:300]))
    return tuple(lines)


def plan_view(services: Services, viewer: Viewer, plan_id: str, *, now: datetime | None = None) -> PlanView:
    """The plan page's content; ``PermissionDenied`` (``plan_forbidden``) if the policy hides it from this viewer."""
    now = now or utc_now()
    a = access(services, viewer, services.plans.get(plan_id), now=now)
    if a.hidden is not None:
        raise PermissionDenied(a.hidden[1], code=a.hidden[0])
    captured = {c.step_index: c for c in ContentStore(services.store, audit=services.audit).for_plan(plan_id)}
    steps = tuple(_step_view(i, s, captured.get(i)) for i, s in enumerate(a.plan.steps))
    decisions: tuple[DecisionView, ...] = ()
    problem = None
    try:
        status = services.plans.status(plan_id, now=now)
        result = status.result
        decisions = tuple(DecisionView(d.principal, d.decision, d.comment, d.at)
                          for d in sorted((*result.approvals, *result.rejections), key=lambda d: d.index))
        summary = result.summary()
    except WritError as e:
        problem = f"{e.code}: {e.message}"
        summary = "the plan does not verify now: no decision on it can count"
    undecidable = a.undecidable or ((reasons.PLAN_TAMPERED, problem) if problem else None)
    return PlanView(a.record, a.plan, a.requirement, steps, decisions, summary, problem,
                    audit_trail(services, plan_id), a.decided, undecidable)
