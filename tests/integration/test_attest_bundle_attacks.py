"""Red team of the attestation bundle verifier (issue 12): an operator's or a careless export's bundles, refused.

The attacker holds the instance key and the database, not the approvers' or the planner's
private keys. Each test is named for the attack and starts from the honest bundle of
tests/integration/test_attest_bundle.py (a completed two-step plan, its decisions, its policy):
the operator edits the database (``World.sql``), appends audit entries of its choosing before
the log is checkpointed, or edits and re-signs the bundle's parts. Every signature and proof the
verifier checks is then genuine; only the checks these tests name catch the lie. Hostile shapes
must end in a ``BundleError`` naming the check, never a traceback (a hypothesis test at the end).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.integration import test_attest_bundle as base
from tests.integration.test_attest_bundle import Honest, refused, statement_edit
from tests.integration.test_plan_store import CALLS, NOW
from writ.attestations.audit import AuditLog
from writ.attestations.bundle_format import EXECUTION_PART
from writ.plans.canonical import digest

engine = base.engine  # the fixtures of the honest bundle
honest = base.honest

# -- helpers: what the operator does to the database and the log before the bundle is exported -----


def claim_entries(honest: Honest) -> list[dict[str, Any]]:
    """The plan's ``step_claim`` payloads as the store logged them."""
    return [p for k, p in honest.world.audit() if k == "step_claim" and p.get("plan_id") == honest.plan.id]


def forge_claims(honest: Honest, **changes: Any) -> None:
    """The operator rewrites the plan's claim rows and logs a claim entry to match, for each step."""
    sets = ", ".join(f"{k} = :{k}" for k in changes)
    honest.world.sql(f"UPDATE step_claims SET {sets} WHERE plan_id = :plan_id",  # noqa: S608 - column names of ours
                     plan_id=honest.plan.id, **changes)
    log = AuditLog(honest.world.store)
    for entry in claim_entries(honest)[:2]:
        log.append("step_claim", {**entry, **changes})


# -- who ran it, what ran, and when ----------------------------------------------------------------


def test_step_run_by_the_planner(honest: Honest) -> None:
    forge_claims(honest, executor="plan-bot")
    honest.world.sql("UPDATE plans SET executor = 'plan-bot' WHERE id = :i", i=honest.plan.id)
    refused(honest, honest.build(), "executed steps", "step 0 was run by 'plan-bot', who wrote the plan")


def test_step_run_by_an_approver(honest: Honest) -> None:
    forge_claims(honest, executor="alice")
    honest.world.sql("UPDATE plans SET executor = 'alice' WHERE id = :i", i=honest.plan.id)
    refused(honest, honest.build(), "executed steps", "step 0 was run by 'alice', who holds no executor key")


def test_step_run_by_another_executor_than_the_one_that_began_the_plan(honest: Honest) -> None:
    honest.world.sql("UPDATE step_claims SET executor = 'exec-bot-2' WHERE plan_id = :p AND step_index = 1",
                     p=honest.plan.id)
    for entry in claim_entries(honest)[1:2]:
        AuditLog(honest.world.store).append("step_claim", {**entry, "executor": "exec-bot-2"})
    refused(honest, honest.build(), "executed steps", "step 1 was run by 'exec-bot-2', the plan was begun by 'exec-bot'")


def test_step_executor_rewritten_in_the_execution_part_only(honest: Honest) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["steps"][0]["executor"] = "exec-bot-2"
        p["executor"] = "exec-bot-2"
    refused(honest, honest.resigned(statement_edit(EXECUTION_PART, edit)), "executed steps",
            "step 0 was run by 'exec-bot-2', who holds no executor key")


def test_step_claim_logged_for_another_tool_than_approved(honest: Honest) -> None:
    # beside the honest claim, the log shows step 0 claimed for another tool: the store never writes that
    entry = claim_entries(honest)[0]
    AuditLog(honest.world.store).append("step_claim", {**entry, "tool": "delete_repo"})
    refused(honest, honest.build(), "executed steps",
            "a claim of step 0 in audit entry \\d+ does not match the approved step: tool is 'delete_repo'")


def test_step_claim_logged_with_another_definition_digest(honest: Honest) -> None:
    entry = claim_entries(honest)[1]
    AuditLog(honest.world.store).append("step_claim", {**entry, "definition_digest": "sha256:" + "ee" * 32})
    refused(honest, honest.build(), "executed steps", "a claim of step 1 in audit entry \\d+ does not match the "
            "approved step: tool definition of git/git_commit is sha256:e")


def test_step_claimed_before_the_approvals_were_signed(honest: Honest) -> None:
    # the approvers signed at 10:00; the operator's store shows both steps claimed half an hour earlier
    early = "2026-11-22T09:30:00.000000Z"
    honest.world.sql("UPDATE step_claims SET claimed_at = :t WHERE plan_id = :p", t=early, p=honest.plan.id)
    log = AuditLog(honest.world.store)
    for entry in claim_entries(honest)[:2]:
        log.append("step_claim", {**entry, "at": early})
    refused(honest, honest.build(), "approvals", "not counted: alice's was signed at 2026-11-22T10:00:00Z, after "
            "step 0 was claimed at 2026-11-22T09:30:00Z")


def test_step_claimed_after_the_plan_expired(honest: Honest) -> None:
    late = "2026-11-22T14:00:00.000000Z"  # the plan was made at 09:55 for 4 h
    honest.world.sql("UPDATE step_claims SET claimed_at = :t WHERE plan_id = :p AND step_index = 1", t=late,
                     p=honest.plan.id)
    AuditLog(honest.world.store).append("step_claim", {**claim_entries(honest)[1], "at": late})
    refused(honest, honest.build(), "executed steps", "step 1 was claimed at 2026-11-22T14:00:00Z, after the plan "
            "expired at 2026-11-22T13:55:00Z")


def test_step_claimed_at_rewritten_in_the_execution_part_only(honest: Honest) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["steps"][1]["claimed_at"] = "2026-11-22T11:00:00Z"
    refused(honest, honest.resigned(statement_edit(EXECUTION_PART, edit)), "audit completeness",
            "step 1's claim has no entry in the audit log")


def test_step_claim_logged_before_the_approvals(honest: Honest) -> None:
    # the operator ran the steps of a plan still pending (its claims are in the log before any approval);
    # the approvals, signed honestly afterwards, then fill the store and the plan completes on paper
    world = honest.world
    plan = world.pending(now=NOW - timedelta(minutes=6))
    log = AuditLog(world.store)
    for i, call in enumerate(CALLS):
        log.append("step_claim", {"plan_id": plan.id, "step_index": i, "executor": "exec-bot", "server": call["server"],
                                  "tool": call["tool"], "definition_digest": call["definition_digest"],
                                  "args_digest": digest(call["args"]), "claimed": True, "at": "2026-11-22T10:00:00.000000Z"})
    world.plans.add_approval(plan.id, world.decision(plan.id, "alice"), now=NOW)
    world.plans.add_approval(plan.id, world.decision(plan.id, "bob"), now=NOW)
    world.plans.begin(plan.id, "exec-bot", now=NOW)
    for i in range(2):
        world.claim(plan, i)
        world.plans.record_result(plan.id, i, "sha256:" + "cd" * 32, "succeeded", now=NOW)
    world.plans.finish(plan.id, "completed", now=NOW)
    honest.plan = plan
    refused(honest, honest.build(plan.id), "approvals",
            r"not counted: alice's was logged in audit entry \d+, after the first claim in entry \d+")
