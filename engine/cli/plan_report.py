"""What ``writ plan show``, ``writ plan verify``, ``writ approve`` and ``writ plan submit`` say about a plan.

    click.echo(status_line(status.result))           # '1/2 approvals (alice); missing: 1 more approval'
    outcome = verify_plan(raw, what, record, w, trust_set, now=utc_now())
    print_outcome(outcome)                            # ... 'signature OK; state pending; approvals 0/2
                                                      #      (missing: code-owners, 1 more approval): NOT APPROVED'
    sys.exit(outcome.exit_code)                       # 0 VERIFIED (or SIGNATURE VERIFIED), 1 FAILED, 3 NOT APPROVED

``verify_plan`` checks the planner's signature, each stored approval (signature, key validity,
eligibility), the count by the verifier and by the policy, and that the stored state is backed
by them. Its verdict is ``verified`` only when all of that holds and the approvals meet the
requirement; a plan that verifies but is still pending, was rejected or expired is
``not_approved``; anything that does not verify is ``failed``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import click

from writ.engine.cli.support import safe, shown_time
from writ.engine.core.errors import NotFoundError, WritError
from writ.plans import dsse
from writ.plans.approval_result import ApprovalResult
from writ.plans.assessment import assess
from writ.plans.keys import short_key_id
from writ.plans.lifecycle import PlanState
from writ.plans.models import Plan, PlanLimits, short_plan_id
from writ.plans.verify import verify_plan_envelope

if TYPE_CHECKING:
    from writ.engine.wiring.services import Services
    from writ.plans.records import ApprovalRecord, ClaimRecord, PlanRecord
    from writ.plans.trust import TrustSet

Verdict = Literal["verified", "signature_verified", "not_approved", "failed"]
EXIT_CODES: dict[Verdict, int] = {"verified": 0, "signature_verified": 0, "failed": 1, "not_approved": 3}
"""``signature_verified``: an envelope the plan store does not hold; its approvals were not checked."""
BEGAN = (PlanState.APPROVED, PlanState.EXECUTING, PlanState.COMPLETED, PlanState.FAILED)
RAN = (PlanState.EXECUTING, PlanState.COMPLETED, PlanState.FAILED, PlanState.ABORTED)
"""States a plan reaches only by beginning (aborted: also from approved; its expiry is then moot)."""


# --- the approval count ------------------------------------------------------------------------


def status_line(result: ApprovalResult) -> str:
    """``1/2 approvals (alice); missing: code-owners`` and the like."""
    if result.violations:
        return "not approvable: " + "; ".join(result.violations)
    if result.expired:
        return f"expired at {shown_time(result.expires_at)}"
    if result.rejected:
        return "rejected by " + ", ".join(r.principal for r in result.rejections)
    text = f"{len(result.approvals)}/{result.requirement.quorum} approvals"
    if result.approvals:
        text += f" ({', '.join(result.approvers)})"
    if result.missing:
        text += "; missing: " + ", ".join(result.missing)
    if result.approved:
        text += "; approved"
    return text


def approvals_text(result: ApprovalResult) -> str:
    """``approvals 1/2 (alice; missing: 1 more approval)``, then rejections, expiry and violations if any."""
    inner = ", ".join(result.approvers)
    if result.missing:
        inner += ("; " if inner else "") + "missing: " + ", ".join(result.missing)
    text = f"approvals {len(result.approvals)}/{result.requirement.quorum}" + (f" ({inner})" if inner else "")
    if result.rejected:
        text += "; rejected by " + ", ".join(r.principal for r in result.rejections)
    if result.expired:
        text += f"; expired at {shown_time(result.expires_at)}"
    if result.violations:
        text += "; not approvable: " + "; ".join(result.violations)
    return text


def approvals_json(result: ApprovalResult) -> dict[str, Any]:
    """The count as JSON: who counted, what is missing, what was ignored and why."""
    return {
        "count": len(result.approvals), "quorum": result.requirement.quorum,
        "required_groups": list(result.requirement.required_groups), "approvers": list(result.approvers),
        "missing": list(result.missing), "rejected_by": [r.principal for r in result.rejections],
        "expired": result.expired, "expires_at": result.expires_at, "violations": list(result.violations),
        "approved": result.approved,
        "ignored": [{"index": i.index, "reason": i.reason.value, "detail": i.detail} for i in result.ignored],
    }


def counts_ok(result: ApprovalResult, policy_satisfied: bool, *, began: bool) -> bool:
    """The approvals meet the requirement (by the verifier and the policy).

    ``began``: the plan began executing, so an expiry since then does not matter; a plan that
    never began and has expired (at ``--at``) cannot run, and is not approved.
    """
    return (result.missing_approvals == 0 and not result.missing_groups and not result.rejected
            and not result.violations and ((result.expired and began) or policy_satisfied))


# --- stored approvals, one line each -----------------------------------------------------------


def approval_verdict(index: int, result: ApprovalResult | None) -> str:
    """``counted``, ``IGNORED <reason>: <detail>`` or ``not counted`` for stored approval ``index``."""
    if result is None:
        return "not counted"
    if index in {c.index for c in result.approvals + result.rejections}:
        return "counted"
    ignored = {i.index: i for i in result.ignored}
    return f"IGNORED {ignored[index].reason.value}: {ignored[index].detail}" if index in ignored else "not counted"


def print_approvals(approvals: list[ApprovalRecord], result: ApprovalResult | None) -> None:
    for i, a in enumerate(approvals):
        line = (f"  #{i} {a.decision} by {a.approver} (key {short_key_id(a.key_id)}), "
                f"received {shown_time(a.received_at)}: {approval_verdict(i, result)}")
        comment = a.comment()
        if comment:
            line += f'\n      "{safe(comment)}"'
        click.echo(line)


def approvals_list_json(approvals: list[ApprovalRecord], result: ApprovalResult | None) -> list[dict[str, Any]]:
    return [{"index": i, "approver": a.approver, "decision": a.decision, "key_id": a.key_id,
             "received_at": a.received_at, "comment": a.comment(), "verdict": approval_verdict(i, result)}
            for i, a in enumerate(approvals)]


# --- verify ------------------------------------------------------------------------------------


@dataclass
class VerifyOutcome:
    """What ``writ plan verify`` found about one plan: the signature, the state, the count, the problems."""

    what: str
    plan: Plan | None = None
    key_id: str | None = None
    record: PlanRecord | None = None
    result: ApprovalResult | None = None
    approvals: list[ApprovalRecord] = field(default_factory=list)
    approved: bool = False
    failure: str | None = None  # the plan itself did not verify: nothing else was checked
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        if self.failure is not None or self.problems:
            return "failed"
        if self.record is None or self.result is None:
            return "signature_verified"
        return "verified" if self.approved else "not_approved"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def _signer(raw: bytes, verified: Plan, trust_set: TrustSet) -> str | None:
    env = dsse.Envelope.from_json(raw)
    keys = {kid: tk.public_key for kid, tk in trust_set.keys_for("planner", verified.planner).items()}
    return next(iter(dsse.accepted_keys(env, keys)), None)


def verify_plan(raw: bytes, what: str, record: PlanRecord | None, w: Services | None, trust_set: TrustSet, *,
                now: datetime, limits: PlanLimits) -> VerifyOutcome:
    """Verify an envelope (``raw``) and, if the plan store holds it, its approvals and its state."""
    out = VerifyOutcome(what)
    try:
        out.plan = verified = verify_plan_envelope(raw, trust_set, now=now, limits=limits)
    except WritError as e:
        out.failure = f"FAILED plan signature of {what}: {e.message}"
        return out
    if record is not None and verified.id != record.id:
        out.failure = f"FAILED {what}: its envelope holds plan {short_plan_id(verified.id)} (row changed outside Writ)"
        return out
    out.key_id = _signer(raw, verified, trust_set)
    if record is None and w is not None:
        try:
            record = w.plans.get(verified.id)
        except NotFoundError:
            record = None
    if record is None or w is None:
        return out  # not in the plan store: the signature is all there is to check
    out.record, out.approvals = record, w.plans.approvals(record.id)
    a = assess(w.policy, verified, [s.envelope for s in out.approvals], trust_set, now=now, limits=limits)
    out.result, out.approved = a.result, counts_ok(a.result, a.policy.satisfied, began=record.state in RAN)
    out.problems += [f"approval #{i.index}: {i.reason.value}: {i.detail}" for i in a.result.ignored]
    out.problems += [f"the verifier and the policy disagree: {d}" for d in a.disagreements]
    # the state is backed if the approvals met the requirement; an approved plan that expired since is
    # not approved any more (exit 3), but its state was not wrong
    if record.state in BEGAN and not counts_ok(a.result, a.policy.satisfied, began=True):
        out.problems.append(f"state {record.state.value} is not backed by the approvals: {a.result.summary()}")
    return out


def print_outcome(out: VerifyOutcome) -> None:
    if out.failure is not None or out.plan is None:
        click.echo(out.failure)
        return
    key = short_key_id(out.key_id) if out.key_id else "-"
    click.echo(f"plan {out.plan.id}: signature OK (planner {out.plan.planner}, key {key})")
    if out.record is None or out.result is None:
        click.echo("not in this plan store: its approvals were not checked (`writ attest verify` checks an "
                   "exported plan's approvals offline)")
        click.echo("SIGNATURE VERIFIED (approvals unknown)")
        return
    print_approvals(out.approvals, out.result)
    verdict = {"verified": "VERIFIED", "not_approved": "NOT APPROVED",
               "failed": f"FAILED: {len(out.problems)} problem{'s' if len(out.problems) > 1 else ''}"}[out.verdict]
    click.echo(f"signature OK; state {out.record.state.value}; {approvals_text(out.result)}: {verdict}")
    for p in out.problems:
        click.echo(f"  - {p}")


def outcome_json(out: VerifyOutcome) -> dict[str, Any]:
    doc: dict[str, Any] = {"target": out.what, "verdict": out.verdict, "problems": list(out.problems)}
    if out.failure is not None or out.plan is None:
        doc.update(signature={"ok": False, "problem": out.failure}, problems=[out.failure])
        return doc
    doc.update(plan_id=out.plan.id, planner=out.plan.planner, signature={"ok": True, "key_id": out.key_id},
               in_store=out.record is not None, state=out.record.state.value if out.record else None,
               approvals=approvals_json(out.result) if out.result else None,
               decisions=approvals_list_json(out.approvals, out.result))
    return doc


# --- show --------------------------------------------------------------------------------------


@dataclass
class ShownPlan:
    """A stored plan as ``writ plan show`` reads it: the record, the plan, its claims and its count."""

    record: PlanRecord
    plan: Plan
    approvals: list[ApprovalRecord]
    claims: dict[int, ClaimRecord]
    result: ApprovalResult | None
    problem: WritError | None  # why the plan did not verify (then it is shown unverified, uncounted)


def print_plan(s: ShownPlan) -> None:
    record, shown = s.record, s.plan
    click.echo(f"plan      {record.id}")
    click.echo(f"title     {safe(shown.title)}")
    click.echo(f"state     {record.state.value}" + (f" (executor {record.executor})" if record.executor else ""))
    signature = f"FAILED: {s.problem.message}" if s.problem else "OK"
    click.echo(f"planner   {shown.planner} (signature {signature})")
    click.echo(f"created   {shown_time(shown.created_at)}   expires {shown_time(shown.expires_at)}")
    click.echo(f"ordered   {'yes' if shown.ordered else 'no'}")
    click.echo("rationale " + safe(shown.rationale, newlines=True).replace("\n", "\n          "))
    click.echo(f"steps     {len(shown.steps)}")
    for i, step in enumerate(shown.steps):
        click.echo(f"  [{i}] {safe(step.server)} / {safe(step.tool)}")
        click.echo(f"      definition {step.definition_digest}")
        args = json.dumps(step.args, indent=2, sort_keys=True, ensure_ascii=False)
        click.echo("      args " + safe(args, newlines=True).replace("\n", "\n      "))
        for c in step.constraints:
            fields = {k: v for k, v in c.model_dump(mode="json").items() if k not in ("kind", "arg")}
            click.echo(f"      constraint {c.kind} on {safe(c.arg)}: {safe(json.dumps(fields, ensure_ascii=False))}")
        claim = s.claims.get(i)
        if claim:
            ended = f", {claim.outcome} at {shown_time(claim.finished_at)}" if claim.outcome else ", running"
            click.echo(f"      claimed by {claim.executor} at {shown_time(claim.claimed_at)}{ended}")
    click.echo("approvals " + (status_line(s.result) if s.result else "not counted (see above)"))
    print_approvals(s.approvals, s.result)


def plan_json(s: ShownPlan) -> dict[str, Any]:
    """``writ plan show --json``: the plan as signed, its state, its claims and its count."""
    claims = {i: {"executor": c.executor, "claimed_at": c.claimed_at, "outcome": c.outcome,
                  "finished_at": c.finished_at, "result_digest": c.result_digest} for i, c in s.claims.items()}
    return {
        "id": s.record.id, "state": s.record.state.value, "executor": s.record.executor,
        "signature": {"ok": s.problem is None, "problem": s.problem.message if s.problem else None},
        "plan": s.plan.model_dump(mode="json"),
        "claims": [{"step": i, **claims[i]} for i in sorted(claims)],
        "approvals": approvals_json(s.result) if s.result else None,
        "decisions": approvals_list_json(s.approvals, s.result),
    }
