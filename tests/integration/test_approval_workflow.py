"""The approval workflow on Temporal's real dev server: Updates count decisions, validators keep junk out of history.

Every test has its own data directory and task queue on the session's dev server, a worker
on its own stores, and real signed plans and approvals (tests/support/approvals.py). The
shipped policy asks two approvals including a code owner (alice or bob) for an fs plan.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support.approvals import World, approval_world, run, running_worker
from temporalio.api.enums.v1 import EventType

from writ.engine.core import reasons
from writ.engine.core.errors import ApprovalRefused, WorkflowUnavailable
from writ.engine.core.settings import Settings
from writ.plans.lifecycle import PlanState
from writ.workflows.approval.client import ApprovalClient

pytestmark = pytest.mark.temporal


@pytest.fixture
def world(tmp_path: Path, temporal_env: str) -> Any:
    with approval_world(tmp_path, temporal_env) as w:
        yield w


async def _updates_in_history(client: ApprovalClient, plan_id: str) -> int:
    history = await client.client.get_workflow_handle(client.workflow_id(plan_id)).fetch_history()
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)


def test_two_code_owner_approvals_approve_the_plan(world: World) -> None:
    record = world.submit()

    async def scenario() -> tuple[str, str, Any]:
        async with running_worker(world) as client:
            assert await client.start(record) is True
            first = await client.decide(record.id, world.approval(record.id, "alice", comment="ok"), "approve")
            second = await client.decide(record.id, world.approval(record.id, "bob"), "approve")
            return first.summary, second.summary, await client.status(record.id)

    first, second, status = run(scenario())
    assert first == "1/2 approvals (alice); missing: 1 more approval"
    assert second == "2/2 approvals (alice, bob); approved"
    assert world.services.plans.get(record.id).state is PlanState.APPROVED
    assert status.state == "approved"
    assert [d.approver for d in status.decisions] == ["alice", "bob"]
    counted = world.audit("approval")
    assert [c["approver"] for c in counted] == ["alice", "bob"]
    assert all(c["workflow_id"].endswith(record.id) and c["run_id"] for c in counted)
    events = [e["event"] for e in world.audit("workflow")]
    assert events[0] == "started"


def test_second_start_for_the_same_plan_is_refused(world: World) -> None:
    record = world.submit()

    async def scenario() -> tuple[bool, bool]:
        client = await ApprovalClient.connect(world.settings)
        return await client.start(record), await client.start(record)

    assert run(scenario()) == (True, False)


@pytest.mark.parametrize(("who", "signer", "other_plan", "code"), [
    ("plan-bot", "plan-bot", False, "approval_self_approval"),
    ("alice", "alice", True, "approval_wrong_plan"),
])
def test_validator_refusals_never_enter_history(world: World, who: str, signer: str, other_plan: bool,
                                                code: str) -> None:
    record = world.submit()
    target = world.submit("Another plan") if other_plan else record

    async def scenario() -> int:
        async with running_worker(world) as client:
            await client.start(record)
            with pytest.raises(ApprovalRefused) as refused:
                await client.decide(record.id, world.approval(target.id, who, signer=signer), "approve")
            assert refused.value.code == code
            return await _updates_in_history(client, record.id)

    assert run(scenario()) == 0
    assert world.services.plans.approvals(record.id) == []
    audited = world.audit("approval_refused")
    assert [a["code"] for a in audited] == [code]
    assert audited[0]["stage"] == "workflow" and audited[0]["run_id"]


def test_a_duplicate_decision_is_refused_before_history(world: World) -> None:
    record = world.submit()

    async def scenario() -> int:
        async with running_worker(world) as client:
            await client.start(record)
            await client.decide(record.id, world.approval(record.id, "alice"), "approve")
            with pytest.raises(ApprovalRefused) as refused:
                await client.decide(record.id, world.approval(record.id, "alice", "reject"), "reject")
            assert refused.value.code == "approval_duplicate_approver"
            return await _updates_in_history(client, record.id)

    assert run(scenario()) == 1  # alice's first approval only
    assert [a.approver for a in world.services.plans.approvals(record.id)] == ["alice"]


def test_an_approval_after_expiry_is_refused_before_history(world: World) -> None:
    record = world.submit(ttl=timedelta(seconds=3))

    async def scenario() -> tuple[int, str]:
        async with running_worker(world) as client:
            await client.start(record)
            for _ in range(300):  # the expiry timer fires at the plan's expiry time
                if (await client.status(record.id)).state == "expired":
                    break
                await asyncio.sleep(0.1)
            with pytest.raises(ApprovalRefused) as refused:
                await client.decide(record.id, world.approval(record.id, "alice"), "approve")
            return await _updates_in_history(client, record.id), refused.value.code

    updates, code = run(scenario())
    assert (updates, code) == (0, reasons.PLAN_EXPIRED)
    assert world.services.plans.get(record.id).state is PlanState.EXPIRED
    assert "expired" in [e["event"] for e in world.audit("workflow")]


def test_a_signature_by_someone_else_is_refused_by_the_store_and_audited(world: World) -> None:
    record = world.submit()

    async def scenario() -> str:
        async with running_worker(world) as client:
            await client.start(record)
            with pytest.raises(ApprovalRefused) as refused:  # names alice, signed by dave's key
                await client.decide(record.id, world.approval(record.id, "alice", signer="dave"), "approve")
            return refused.value.code

    assert run(scenario()) == "approval_foreign_key"
    refusals = world.audit("approval_refused")
    assert refusals[0]["code"] == "approval_foreign_key" and refusals[0]["workflow_id"].endswith(record.id)
    assert world.services.plans.approvals(record.id) == []


def test_a_counted_rejection_ends_the_plan(world: World) -> None:
    record = world.submit()

    async def scenario() -> tuple[str, str]:
        async with running_worker(world) as client:
            await client.start(record)
            count = await client.decide(record.id, world.approval(record.id, "bob", "reject",
                                                                  comment="touches prod"), "reject")
            outcome = await client.outcome(record.id)
            with pytest.raises(ApprovalRefused) as late:  # its workflow ended with the plan
                await client.decide(record.id, world.approval(record.id, "alice"), "approve")
            assert late.value.code == reasons.PLAN_NOT_PENDING and "is rejected" in late.value.message
            return count.summary, outcome.state

    summary, end = run(scenario())
    assert summary == "rejected by bob"
    assert end == "rejected"
    assert world.services.plans.get(record.id).state is PlanState.REJECTED
    assert [e["event"] for e in world.audit("workflow")][-1] == "ended"
    assert [r["code"] for r in world.audit("approval_refused")] == [reasons.PLAN_NOT_PENDING]
    assert world.services.plans.approvals(record.id)[0].approver == "bob" and len(
        world.services.plans.approvals(record.id)) == 1


def test_execution_end_is_recorded_from_the_store_then_export(world: World) -> None:
    record = world.submit()
    plans = world.services.plans

    async def scenario() -> Any:
        async with running_worker(world) as client:
            await client.start(record)
            await client.decide(record.id, world.approval(record.id, "alice"), "approve")
            await client.decide(record.id, world.approval(record.id, "bob"), "approve")
            await client.plan_finished(record.id, "completed")  # a hint while it is not over: nothing ends
            plans.begin(record.id, "exec-bot")
            plans.finish(record.id, "aborted", reason="operator stopped it")
            await client.plan_finished(record.id, "aborted", by="exec-bot")
            return await client.outcome(record.id)

    outcome = run(scenario())
    assert (outcome.state, outcome.export) == ("aborted", "exported")
    entries = world.audit("workflow")
    assert [e["event"] for e in entries][-3:] == ["execution_ended", "exported", "ended"]
    # the bundle is on disk, its digest in the log, and it verifies offline as the aborted plan it is
    from writ.attestations.checkpoints import instance_key_export
    from writ.engine.policy.offline import verify_offline
    from writ.plans.canonical import sha256_digest

    exported = next(e for e in entries if e["event"] == "exported")
    raw = (world.settings.home / "bundles" / exported["bundle"]).read_bytes()
    assert exported["bundle_sha256"] == sha256_digest(raw)
    root = {**world.services.trust.export_trust_root(), "instance_key": instance_key_export(world.settings)}
    report = verify_offline(raw, json.dumps(root).encode())
    assert (report.plan_id, report.state, report.approvers) == (record.id, "aborted", ("alice", "bob"))


def test_no_temporal_means_workflow_unavailable(tmp_path: Path) -> None:
    from support.gateway import free_port

    settings = Settings(home=tmp_path, temporal_address=f"127.0.0.1:{free_port()}", temporal_connect_timeout_s=2)
    with pytest.raises(WorkflowUnavailable) as e:
        run(ApprovalClient.connect(settings))
    assert e.value.code == reasons.WORKFLOW_UNAVAILABLE
    assert "cannot reach Temporal" in e.value.message and "WRIT_TEMPORAL" in e.value.message


def test_a_forged_decision_in_flight_does_not_hold_up_the_real_approver(world: World) -> None:
    record = world.submit()

    async def scenario() -> tuple[BaseException | Any, BaseException | Any]:
        async with running_worker(world) as client:
            await client.start(record)
            forged = world.approval(record.id, "alice", signer="dave")  # names alice, signed by dave
            real = world.approval(record.id, "alice")
            return tuple(await asyncio.gather(client.decide(record.id, forged, "approve"),
                                              client.decide(record.id, real, "approve"), return_exceptions=True))

    forged, real = run(scenario())
    assert isinstance(forged, ApprovalRefused), forged
    assert not isinstance(real, BaseException), real
    assert real.approvers == ("alice",)
    assert [a.approver for a in world.services.plans.approvals(record.id)] == ["alice"]
