"""What the offline verifier checks of a bundle's executed steps, beyond their arguments (issue 12 red team).

    check_executors(plan, execution, trust)      # an executor, not the planner, the one that began the plan
    check_claims(plan, entries, execution)       # every logged claim is of an approved step, at an unexpired time
    on_time = approvals_in_time(approvals, entries, began)   # approvals the first claim could have counted

The execution record is the store's, signed only by the instance key: an operator can write
any executor and time there. What it cannot change are the approvers' signed times and, once
a checkpoint is held apart, the order of the audit log. So a step's executor must hold an
executor key in the auditor's trust root and never be the planner (as ``claim_step`` and
``begin`` require live); every ``step_claim`` entry that claimed a step must name the approved
server, tool and definition digest; and only approvals logged before the first claim, and
signed no later than it (give or take ``CLOCK_SKEW``), can have let the plan run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from writ.engine.core.errors import BundleError, WritError
from writ.engine.core.timeutil import iso, parse_iso
from writ.plans import dsse
from writ.plans.models import Plan
from writ.plans.statements import ApprovalStatement
from writ.plans.trust import TrustSet

__all__ = ["CLOCK_SKEW", "approvals_in_time", "check_claims", "check_executors", "claim_time"]

CLOCK_SKEW = timedelta(minutes=5)  # writ.plans.submission.CLOCK_SKEW (not imported: it loads the store)


def claim_time(step: dict[str, Any]) -> datetime:
    """When an executed step was claimed; ``BundleError`` if the record has no time."""
    try:
        return parse_iso(step["claimed_at"], f"step {step.get('step_index')}'s claimed_at")
    except WritError as e:
        raise BundleError("executed steps", e.message) from None


def check_executors(plan: Plan, execution: dict[str, Any], trust: TrustSet) -> None:
    """Each step run by the principal that began the plan: holding an executor key, not the planner."""
    begun_by = execution.get("executor")
    for s in execution["steps"]:
        i, who = s["step_index"], s.get("executor")
        if who == plan.planner:
            raise BundleError("executed steps", f"step {i} was run by {who!r}, who wrote the plan: the planner "
                              "never executes")
        if not isinstance(who, str) or not trust.keys_for("executor", who):
            raise BundleError("executed steps", f"step {i} was run by {who!r}, who holds no executor key (in the "
                              "bundle's trust subset, as your trust root allows it)")
        if who != begun_by:
            raise BundleError("executed steps", f"step {i} was run by {who!r}, the plan was begun by {begun_by!r}")
        if plan.is_expired(at := claim_time(s)):
            raise BundleError("executed steps", f"step {i} was claimed at {iso(at)}, after the plan expired at "
                              f"{iso(plan.expires_at)}")


def _mismatch(plan: Plan, p: dict[str, Any]) -> str | None:
    i = p.get("step_index")
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(plan.steps):
        return f"it names step {i!r}, the approved plan has {len(plan.steps)} steps"
    step = plan.steps[i]
    if p.get("server") != step.server:
        return f"server is {p.get('server')!r}, the plan step is on {step.server!r}"
    if p.get("tool") != step.tool:
        return f"tool is {p.get('tool')!r}, the plan step calls {step.tool!r}"
    if p.get("definition_digest") != step.definition_digest:
        return (f"tool definition of {step.server}/{step.tool} is {p.get('definition_digest')}, the plan "
                f"approved {step.definition_digest}")
    return None


def check_claims(plan: Plan, entries: list[dict[str, Any]], execution: dict[str, Any]) -> None:
    """Every claim the log shows of this plan is of an approved step, by its executor, before the plan expired."""
    for e in entries:
        p = e["payload"]
        if e["kind"] != "step_claim" or p.get("claimed") is not True:
            continue
        if (why := _mismatch(plan, p)) is not None:
            raise BundleError("executed steps", f"a claim of step {p.get('step_index')} in audit entry {e['seq']} "
                              f"does not match the approved step: {why}")
        if p.get("executor") != execution.get("executor"):
            raise BundleError("executed steps", f"step {p['step_index']} was claimed by {p.get('executor')!r} in "
                              f"audit entry {e['seq']}, the plan was begun by {execution.get('executor')!r}")


def _first_claim(entries: list[dict[str, Any]]) -> int | None:
    seqs = [e["seq"] for e in entries if e["kind"] == "step_claim" and e["payload"].get("claimed") is True]
    return min(seqs) if seqs else None


def approvals_in_time(approvals: Sequence[bytes], entries: list[dict[str, Any]], began: datetime | None,
                      first_step: Any) -> tuple[list[bytes], list[str]]:
    """The approvals logged before the plan's first claim and signed by then; and why each other one is left out."""
    first = _first_claim(entries)
    logged: dict[str, int] = {}
    for e in entries:
        p = e["payload"]
        if e["kind"] == "approval" and p.get("decision") == "approve" and isinstance(p.get("approver"), str):
            logged.setdefault(p["approver"], e["seq"])
    keep: list[bytes] = []
    late: list[str] = []
    for raw in approvals:
        try:
            predicate = ApprovalStatement.from_payload(dsse.Envelope.from_json(raw).payload).predicate
        except WritError:
            keep.append(raw)  # the approval check ignores it, and says why
            continue
        who = predicate.approver
        if began is not None and predicate.at > began + CLOCK_SKEW:
            late.append(f"{who}'s was signed at {iso(predicate.at)}, after step {first_step} was claimed at "
                        f"{iso(began)}")
        elif first is not None and who in logged and logged[who] > first:
            late.append(f"{who}'s was logged in audit entry {logged[who]}, after the first claim in entry {first}")
        else:
            keep.append(raw)
    return keep, late
