"""One decision from the browser, checked and sent to the plan's approval workflow: the form and the API share it.

    outcome = await decide(web, viewer, plan_id, envelope_text, "approve")
    outcome.count.summary      # '1/2 approvals (alice); missing: code-owners'   (ApprovalCount, from the workflow)
    outcome.refusal            # or the Refusal: its status, code and reason

The checks here are the web's own (who may act on what); everything that makes a decision
count is the workflow's and the store's (ADR 0015): the signature, the key, the groups, the
plan's state and expiry. In order:

1. ``decision`` is ``approve`` or ``reject``; the envelope is there (the page's script signs it:
   without it, ``decision_not_signed``).
2. The plan exists (``plan_not_found``), the policy lets this approver see it (``plan_forbidden``)
   and they did not write it (``self_approval``).
3. The signed statement (read, not yet verified) names this approver (``approver_mismatch``:
   a session may only send its own decisions), this plan, and this decision.
4. The workflow Update: its count, or its refusal (``approval_refused`` audited by the client
   or the store), or ``workflow_unavailable`` when Temporal cannot be reached.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool

from writ.engine.core import reasons
from writ.engine.core.errors import ApprovalRefused, WorkflowUnavailable, WritError
from writ.engine.web.context import WebContext
from writ.engine.web.decisions import Refusal
from writ.engine.web.security import refusal_of
from writ.engine.web.views import Access, Viewer, access
from writ.plans.models import short_plan_id
from writ.plans.statements import unverified_statement
from writ.workflows.approval.client import DecisionKind
from writ.workflows.approval.models import ApprovalCount

__all__ = ["Outcome", "decide"]

# What the web refuses itself; the other reasons a viewer cannot decide (expired, not pending, already
# decided) are left to the workflow's validator, which refuses and audits them.
WEB_REFUSALS = (reasons.PLAN_FORBIDDEN, reasons.SELF_APPROVAL)


@dataclass(frozen=True)
class Outcome:
    """The workflow's count after the decision, or why it was refused."""

    count: ApprovalCount | None = None
    refusal: Refusal | None = None


def _checked(web: WebContext, viewer: Viewer, plan_id: str, envelope: str, decision: str) -> Access | Refusal:
    """Checks 1 to 3 (database reads: run off the event loop)."""
    if decision not in ("approve", "reject"):
        return refusal_of(reasons.INPUT_INVALID, f"decision must be approve or reject, not {decision[:20]!r}")
    if not envelope:
        return refusal_of(reasons.DECISION_NOT_SIGNED, "the decision carries no signed statement: the page's script "
                          "signs it with this browser's key; enable JavaScript and send it from the plan's page")
    try:
        a = access(web.services, viewer, web.services.plans.get(plan_id))
    except WritError as e:
        return refusal_of(e.code, e.message)
    if a.hidden is not None:
        return refusal_of(*a.hidden)
    if a.undecidable is not None and a.undecidable[0] in WEB_REFUSALS:
        return refusal_of(*a.undecidable)
    try:
        statement = unverified_statement(envelope.encode("utf-8", "surrogatepass"), web.services.settings.limits.plans)
    except WritError as e:
        return refusal_of(e.code, f"the signed decision is malformed: {e.message}")
    claimed = statement.predicate
    if claimed.approver != viewer.principal.name:
        return refusal_of(reasons.APPROVER_MISMATCH, f"the signed statement names {claimed.approver!r}, but "
                          f"{viewer.principal.name} is logged in: a session sends only its own decisions")
    if statement.plan_id != plan_id:
        return refusal_of(reasons.WRONG_PLAN, f"the signed statement is about plan {short_plan_id(statement.plan_id)}, "
                          f"not {short_plan_id(plan_id)}")
    if claimed.decision != decision:
        return refusal_of(reasons.INPUT_INVALID, f"the signed statement says {claimed.decision}, the form {decision}")
    return a


async def decide(web: WebContext, viewer: Viewer, plan_id: str, envelope: str, decision: str) -> Outcome:
    """Check, then send the signed decision as the workflow's Update; the count it returns or the refusal."""
    checked = await run_in_threadpool(_checked, web, viewer, plan_id, envelope, decision)
    if isinstance(checked, Refusal):
        return Outcome(refusal=checked)
    try:
        client = await web.approval_client()
        kind: DecisionKind = "approve" if decision == "approve" else "reject"
        return Outcome(count=await client.decide(plan_id, envelope.encode("utf-8"), kind))
    except (ApprovalRefused, WorkflowUnavailable) as e:
        return Outcome(refusal=refusal_of(e.code, e.message))
    except WritError as e:  # the audit log or the database, while the client audited a refusal: nothing counted
        return Outcome(refusal=Refusal(503, e.code, e.message, logged=False))
