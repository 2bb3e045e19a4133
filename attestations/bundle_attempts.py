"""A bundle's steps, attempt by attempt: retries the policy allowed, and constrained arguments checked offline.

    attempts = check_attempts(plan, execution["steps"])       # step -> [attempt 1, 2, ...], none missing or twice
    check_retries(plan, attempts, policy)                     # attempt k+1 only after k failed, as policy allows
    check_constrained_calls(plan, audit["entries"], execution["steps"], limits)

A step the live store let fail and run again (``writ.approval.retry_failed_step``) is in the
execution record once per attempt, each with its own ``step_claim`` entry. A constrained step's
claim carries only the digest of its arguments; the decision that allowed its call logged them,
so the verifier ties the claim to that decision (same plan, step, principal, tool and argument
digest, logged before the claim) and runs the plan's own matching (``writ.plans.matching``) on them.
"""

from __future__ import annotations

import json
from typing import Any

from writ.attestations.bundle_steps import claim_time
from writ.engine.core.errors import BundleError, InputError
from writ.engine.core.timeutil import db_time, iso
from writ.plans.assessment import PolicyEvaluator, retry_allowed
from writ.plans.canonical import digest
from writ.plans.keys import short_key_id
from writ.plans.matching import matches
from writ.plans.models import Plan, PlanLimits

__all__ = ["check_attempts", "check_constrained_calls", "check_retries"]

Step = dict[str, Any]


def check_attempts(plan: Plan, steps: list[Step]) -> dict[int, list[Step]]:
    """Each step's attempts in order, numbered 1, 2, ... with none twice and none missing."""
    by_step: dict[int, dict[int, Step]] = {}
    for s in steps:
        i, k = s.get("step_index"), s.get("attempt")
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(plan.steps):
            raise BundleError("executed steps", f"step {i} ran but the approved plan has {len(plan.steps)} steps")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise BundleError("executed steps", f"step {i} has attempt {k!r}: attempts are numbered from 1")
        if k in by_step.setdefault(i, {}):
            raise BundleError("executed steps", f"step {i} ran more than once as attempt {k}")
        by_step[i][k] = s
    for i, attempts in by_step.items():
        if sorted(attempts) != list(range(1, len(attempts) + 1)):
            raise BundleError("executed steps", f"step {i}'s attempts are {sorted(attempts)}: an attempt is missing")
    return {i: [a[k] for k in sorted(a)] for i, a in sorted(by_step.items())}


def check_retries(plan: Plan, attempts: dict[int, list[Step]], policy: PolicyEvaluator, revision: str) -> None:
    """Attempt k+1 of a step only after attempt k failed, claimed later, and as the included policy allows."""
    for i, runs in attempts.items():
        for before, again in zip(runs, runs[1:], strict=False):
            k = before["attempt"]
            if before.get("outcome") != "failed":
                raise BundleError("executed steps", f"step {i} was claimed again (attempt {k + 1}) after attempt {k} "
                                  f"{before.get('outcome') or 'had no result'}: only a failed step is retried")
            at = claim_time(again)
            if at < claim_time(before):
                raise BundleError("executed steps", f"step {i}'s attempt {k + 1} was claimed at {iso(at)}, before "
                                  f"attempt {k}")
            if not retry_allowed(policy, plan, i, k, at):
                raise BundleError("executed steps", f"step {i} was retried (attempt {k + 1}) although the included "
                                  f"policy {short_key_id(revision)} allows no retry after attempt {k} "
                                  "(writ.approval.retry_failed_step)")


def _input(payload: dict[str, Any]) -> dict[str, Any] | None:
    inp = payload.get("input")
    if isinstance(inp, dict) and set(inp) == {"json_text"}:
        try:  # logged as text: numbers RFC 8785 cannot encode (then its digest cannot match a claim's)
            inp = json.loads(inp["json_text"])
        except (TypeError, ValueError, RecursionError):
            return None
    return inp if isinstance(inp, dict) else None


def _allows(plan: Plan, payload: dict[str, Any], s: Step) -> dict[str, Any] | None:
    """The logged input of a decision that allowed exactly this attempt's call, or None."""
    inp = _input(payload)
    decision = payload.get("decision")
    if inp is None or not isinstance(decision, dict) or decision.get("allow") is not True:
        return None
    ctx, tool, step = inp.get("plan"), inp.get("tool"), plan.steps[s["step_index"]]
    if not isinstance(ctx, dict) or not isinstance(tool, dict) or not isinstance(inp.get("args"), dict):
        return None
    if (ctx.get("id"), ctx.get("step_index"), ctx.get("step_matches"), inp.get("principal")) != (
            plan.id, s["step_index"], True, s.get("executor")):
        return None
    if (tool.get("server"), tool.get("name"), tool.get("definition_digest")) != (
            step.server, step.tool, step.definition_digest):
        return None
    try:
        return inp if digest(inp["args"]) == s.get("args_digest") else None
    except (InputError, TypeError, ValueError):
        return None


def _claim_seq(entries: list[dict[str, Any]], s: Step) -> int | None:
    want = {"step_index": s["step_index"], "args_digest": s.get("args_digest"), "executor": s.get("executor"),
            "at": db_time(claim_time(s)), "claimed": True}
    for e in entries:
        p = e["payload"]
        if (e["kind"] == "step_claim" and all(p.get(k) == v for k, v in want.items())
                and (p.get("attempt") or 1) == s["attempt"]):
            return int(e["seq"])
    return None


def check_constrained_calls(plan: Plan, entries: list[dict[str, Any]], steps: list[Step], limits: PlanLimits) -> None:
    """Each attempt of a constrained step: tied to the decision that allowed it, its arguments within the constraints."""
    decisions = [e for e in entries if e["kind"] == "decision"]
    used: set[int] = set()
    for s in steps:
        i, k = s["step_index"], s["attempt"]
        step = plan.steps[i]
        if not step.constraints:
            continue  # pinned arguments: the claim's digest is compared with the approved arguments
        claimed = _claim_seq(entries, s)
        found = None
        for e in reversed(decisions):
            if claimed is not None and e["seq"] < claimed and e["seq"] not in used:
                if (found := _allows(plan, e["payload"], s)) is not None:
                    used.add(e["seq"])
                    break
        if found is None:
            raise BundleError("step arguments", f"step {i} (attempt {k}) is bound by constraints and no logged "
                              f"decision allowed its call with arguments {s.get('args_digest')} before it was "
                              "claimed: its arguments cannot be checked")
        result = matches(step, server=step.server, tool=step.tool, definition_digest=step.definition_digest,
                         args=found["args"], limits=limits)
        if not result:
            raise BundleError("step arguments", f"step {i} (attempt {k}) ran with arguments outside the approved "
                              f"constraints: {result.reason}")
