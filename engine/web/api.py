"""The plans API beside the pages: the same session, the same authorization, JSON, in the OpenAPI schema.

    GET  /v1/plans?state=pending                 the plans the policy lets me see ({"plans": [...]})
    GET  /v1/plans/{plan_id}                     one plan: steps, constraints in words, diffs, count, audit trail
    GET  /v1/plans/{plan_id}/envelope            the signed plan envelope, byte for byte as stored
    GET  /v1/plans/{plan_id}/approvals           the counted decisions and where the count stands
    POST /v1/plans/{plan_id}/approvals           {"envelope", "decision"}: sent to the workflow; its count

Authentication is the approver's session cookie (log in on ``/login``); the POST also needs the
``Origin`` of this server and the ``X-CSRF-Token`` header (the ``writ_csrf`` cookie's value).
Every error is ``{"error": {"code": ..., "message": ...}}`` with the status of its code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field, JsonValue

from writ.engine.core import reasons
from writ.engine.core.errors import WritError
from writ.engine.web.context import ViewerDep, WebDep
from writ.engine.web.decide import decide
from writ.engine.web.decisions import Refusal
from writ.engine.web.security import post_guard, refusal_of, refused_json
from writ.engine.web.views import Access, PlanView, Viewer, plan_view, visible_plans

__all__ = ["router"]

StateFilter = Literal["all", "proposed", "pending", "approved", "rejected", "expired", "executing", "completed",
                      "failed", "aborted"]


class ErrorDetail(BaseModel):
    """Why a request was refused: a stable code and a sentence."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """Writ's one JSON error shape."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 415, 429, 503)}


class PlanSummary(BaseModel):
    """A plan in a list."""

    id: str
    title: str
    planner: str
    state: str
    created_at: datetime
    expires_at: datetime
    decided: bool = Field(description="This approver already decided on it.")
    why_not: str | None = Field(description="Why this approver cannot decide it now (None: they can).")


class PlanList(BaseModel):
    """The plans the policy lets this approver see."""

    plans: list[PlanSummary]


class DiffOut(BaseModel):
    """A step's unified diff, or why there is none."""

    available: bool
    note: str
    diff: str


class StepOut(BaseModel):
    """One step of the plan."""

    index: int
    server: str
    tool: str
    definition_digest: str
    args: dict[str, JsonValue]
    constraints: list[str]
    diff: DiffOut | None


class DecisionOut(BaseModel):
    """A counted approval or rejection."""

    principal: str
    decision: str
    comment: str
    at: datetime


class AuditOut(BaseModel):
    """An audit entry about the plan."""

    seq: int
    at: str
    kind: str
    summary: str


class ApprovalsOut(BaseModel):
    """Where the count stands: the requirement and the counted decisions."""

    plan_id: str
    quorum: int
    required_groups: list[str]
    summary: str
    decisions: list[DecisionOut]


class PlanDetail(ApprovalsOut):
    """One plan in full."""

    title: str
    rationale: str
    planner: str
    state: str
    created_at: datetime
    expires_at: datetime
    ordered: bool
    steps: list[StepOut]
    problem: str | None
    why_not: str | None
    audit: list[AuditOut]


class DecisionIn(BaseModel):
    """A signed decision: the DSSE envelope (JSON text) of the in-toto approval statement, and what it decides."""

    envelope: str = Field(min_length=1, max_length=2_097_152)
    decision: Literal["approve", "reject"]


class CountOut(BaseModel):
    """The count the plan's approval workflow returned."""

    plan_id: str
    state: str
    approvals: int
    quorum: int
    approvers: list[str]
    rejected_by: list[str]
    missing: list[str]
    summary: str


router = APIRouter(prefix="/v1/plans", tags=["plans"], responses=ERRORS)


def _summary(a: Access) -> PlanSummary:
    r = a.record
    return PlanSummary(id=r.id, title=a.plan.title, planner=r.planner, state=r.state.value, created_at=r.created_at,
                       expires_at=r.expires_at, decided=a.decided, why_not=a.undecidable[1] if a.undecidable else None)


def _approvals(v: PlanView) -> dict[str, Any]:
    return {"plan_id": v.record.id, "quorum": v.requirement.quorum, "required_groups": list(v.requirement.required_groups),
            "summary": v.summary, "decisions": [DecisionOut(principal=d.principal, decision=d.decision, comment=d.comment,
                                                            at=d.at) for d in v.decisions]}


def _detail(v: PlanView) -> PlanDetail:
    steps = [StepOut(index=s.index, server=s.server, tool=s.tool, definition_digest=s.definition_digest,
                     args=v.plan.steps[s.index].args, constraints=list(s.constraints),
                     diff=DiffOut(**s.diff.as_dict()) if s.diff else None) for s in v.steps]
    return PlanDetail(**_approvals(v), title=v.plan.title, rationale=v.plan.rationale, planner=v.plan.planner,
                      state=v.record.state.value, created_at=v.plan.created_at, expires_at=v.plan.expires_at,
                      ordered=v.plan.ordered, steps=steps, problem=v.problem,
                      why_not=v.undecidable[1] if v.undecidable else None,
                      audit=[AuditOut(seq=a.seq, at=a.at, kind=a.kind, summary=a.summary) for a in v.audit])


async def _view(web: WebDep, viewer: Viewer, plan_id: str) -> PlanView | Refusal:
    try:
        return await run_in_threadpool(plan_view, web.services, viewer, plan_id)
    except WritError as e:
        return refusal_of(e.code, e.message)


@router.get("", response_model=PlanList)
async def list_plans(web: WebDep, viewer: ViewerDep, state: StateFilter = "all") -> Any:
    """The plans the ``writ.approval`` policy lets the logged-in approver see, newest first."""
    found = await run_in_threadpool(visible_plans, web.services, viewer, None if state == "all" else state)
    return PlanList(plans=[_summary(a) for a in found])


@router.get("/{plan_id}", response_model=PlanDetail)
async def get_plan(web: WebDep, viewer: ViewerDep, plan_id: str) -> Any:
    """One plan: every step, constraints in words, diffs, the count and the plan's audit trail."""
    view = await _view(web, viewer, plan_id)
    return refused_json(view) if isinstance(view, Refusal) else _detail(view)


@router.get("/{plan_id}/envelope", response_class=Response,
            responses={200: {"content": {"application/json": {"schema": {"type": "object"}}},
                             "description": "The DSSE envelope of the plan, exactly as the planner signed and Writ stored it."}})
async def get_envelope(web: WebDep, viewer: ViewerDep, plan_id: str) -> Response:
    """The signed plan envelope as stored: the page's script checks the plan digest from its payload itself."""
    view = await _view(web, viewer, plan_id)
    if isinstance(view, Refusal):
        return refused_json(view)
    return Response(view.record.envelope, media_type="application/json")


@router.get("/{plan_id}/approvals", response_model=ApprovalsOut)
async def get_approvals(web: WebDep, viewer: ViewerDep, plan_id: str) -> Any:
    """The counted approvals and rejections, and where the count stands."""
    view = await _view(web, viewer, plan_id)
    return refused_json(view) if isinstance(view, Refusal) else ApprovalsOut(**_approvals(view))


@router.post("/{plan_id}/approvals", response_model=CountOut, dependencies=[Depends(post_guard)])
async def post_approval(web: WebDep, viewer: ViewerDep, plan_id: str, body: DecisionIn) -> Any:
    """Send a decision signed in the browser to the plan's approval workflow; the count it returns.

    Needs the ``Origin`` of this server and the ``X-CSRF-Token`` header (the ``writ_csrf`` cookie).
    """
    outcome = await decide(web, viewer, plan_id, body.envelope, body.decision)
    if outcome.refusal is not None or outcome.count is None:
        return refused_json(outcome.refusal or refusal_of(reasons.WORKFLOW_FAILED, "the workflow returned no count"))
    c = outcome.count
    return CountOut(plan_id=c.plan_id, state=c.state, approvals=c.approvals, quorum=c.quorum, approvers=list(c.approvers),
                    rejected_by=list(c.rejected_by), missing=list(c.missing), summary=c.summary)
