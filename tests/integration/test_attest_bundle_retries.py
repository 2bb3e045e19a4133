"""A bundle of a plan whose failed step was retried (issue 12, red team R2): every attempt exported and checked.

The live store claims a failed step again, as attempt k+1, only when the policy's
``writ.approval.retry_failed_step`` allows it (plans/execution.py); the bundle carries each attempt
with its own claim entry, and the verifier accepts attempt k+1 only after attempt k failed and the
included policy, re-evaluated, allows that retry. The forged retries are made the way an operator
holding the database and the instance key would: rows edited and entries appended before export.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration import test_attest_bundle as base
from tests.integration.test_attack_plans import policies_with_config
from tests.integration.test_attest_bundle import Honest, refused, step_input
from tests.integration.test_plan_store import NOW, make_world
from writ.attestations.audit import AuditLog
from writ.attestations.bundle_format import EXECUTION_PART, split_bundle, statement_predicate
from writ.engine.core.db import Database
from writ.engine.core.timeutil import db_time
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.offline import verify_offline
from writ.plans.keys import PrivateKey
from writ.plans.lifecycle import PlanState
from writ.plans.models import Plan

engine = base.engine  # the shipped policy: no retry


@pytest.fixture(scope="module")
def retry_engine(policy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EmbeddedEngine:
    """The shipped policy with retries allowed, up to two claims of a step."""
    return EmbeddedEngine(policies_with_config(policy_dir, tmp_path_factory.mktemp("retry"), retry_failed_steps=True,
                                               max_step_attempts=2))


def run_step(h: Honest, plan: Plan, index: int, outcome: str, at: Any = NOW) -> None:
    """Step ``index`` as the gateway runs it: asked of policy, claimed, its result recorded."""
    assert h.pdp.decide(step_input(plan.id, index)).allow
    h.world.claim(plan, index, now=at)
    h.world.plans.record_result(plan.id, index, None, outcome, now=at)


def run_retried(h: Honest) -> Plan:
    """Step 0 fails, the policy allows a retry, it succeeds on attempt 2; step 1 succeeds; the plan completes."""
    plan = h.world.executing()
    run_step(h, plan, 0, "failed")
    assert h.world.plans.get(plan.id).state is PlanState.EXECUTING
    run_step(h, plan, 0, "succeeded", NOW + timedelta(seconds=1))
    run_step(h, plan, 1, "succeeded", NOW + timedelta(seconds=2))
    assert h.world.plans.finish(plan.id, "completed", now=NOW) is PlanState.COMPLETED
    return plan


def forged_retry(h: Honest, first: str) -> Plan:
    """Step 0 ends ``first``; the operator then records a second attempt the store never allowed, and step 1 runs."""
    world, plan, again = h.world, h.world.executing(), NOW + timedelta(seconds=1)
    run_step(h, plan, 0, first)
    world.sql("UPDATE plans SET state = 'executing' WHERE id = :p", p=plan.id)
    world.sql("UPDATE step_claims SET attempt = 2, claimed_at = :t, finished_at = :t, outcome = 'succeeded' "
              "WHERE plan_id = :p AND step_index = 0", t=db_time(again), p=plan.id)
    claim = next(p for k, p in world.audit() if k == "step_claim" and p.get("plan_id") == plan.id)
    result = next(p for k, p in world.audit() if k == "step_result" and p.get("plan_id") == plan.id)
    log = AuditLog(world.store)
    log.append("step_claim", {**claim, "attempt": 2, "at": db_time(again)})
    log.append("step_result", {**result, "outcome": "succeeded", "at": db_time(again)})
    run_step(h, plan, 1, "succeeded", again)
    assert world.plans.finish(plan.id, "completed", now=NOW) is PlanState.COMPLETED
    return plan


def test_bundle_of_a_plan_with_a_retried_step_verifies(store: Database, retry_engine: EmbeddedEngine) -> None:
    h = Honest(make_world(store, retry_engine), PrivateKey.generate(), retry_engine, run=run_retried)
    execution = statement_predicate(split_bundle(h.raw)[0], EXECUTION_PART, h.plan.id)
    assert [(s["step_index"], s["attempt"], s["outcome"]) for s in execution["steps"]] == [
        (0, 1, "failed"), (0, 2, "succeeded"), (1, 1, "succeeded")]
    report = verify_offline(h.raw, h.trust_root)
    assert (report.steps_run, report.retries, report.state, report.decisions_replayed) == (2, 1, "completed", 3)
    assert "2 step(s) run (1 retried attempt(s)), state completed" in report.summary()


def test_step_retried_although_policy_forbids_it(store: Database, engine: EmbeddedEngine) -> None:
    h = Honest(make_world(store, engine), PrivateKey.generate(), engine, run=lambda h: forged_retry(h, "failed"))
    refused(h, h.raw, "executed steps", r"step 0 was retried \(attempt 2\) although the included policy .* allows "
            r"no retry after attempt 1 \(writ.approval.retry_failed_step\)")


def test_step_retried_after_it_succeeded(store: Database, retry_engine: EmbeddedEngine) -> None:
    # the policy would allow a retry of a failed step; this one succeeded, and ran again
    h = Honest(make_world(store, retry_engine), PrivateKey.generate(), retry_engine,
               run=lambda h: forged_retry(h, "succeeded"))
    refused(h, h.raw, "executed steps", r"step 0 was claimed again \(attempt 2\) after attempt 1 succeeded: only a "
            "failed step is retried")


def test_retried_attempt_without_its_own_claim_entry(store: Database, retry_engine: EmbeddedEngine) -> None:
    # the execution part states two attempts; the log has the claim of one: each attempt needs its entry
    h = Honest(make_world(store, retry_engine), PrivateKey.generate(), retry_engine, run=run_retried)

    def edit(p: dict[str, Any]) -> None:
        p["steps"][0]["claimed_at"] = p["steps"][1]["claimed_at"]
    refused(h, h.resigned(base.statement_edit(EXECUTION_PART, edit)), "audit completeness",
            "step 0's claim has no entry in the audit log")


def test_attempt_missing_between_two_others(store: Database, retry_engine: EmbeddedEngine) -> None:
    h = Honest(make_world(store, retry_engine), PrivateKey.generate(), retry_engine, run=run_retried)
    raw = h.resigned(base.statement_edit(EXECUTION_PART, lambda p: p["steps"][1].__setitem__("attempt", 3)))
    refused(h, raw, "executed steps", r"step 0's attempts are \[1, 3\]: an attempt is missing")
