"""Saved histories of real approval runs replay on today's workflow code: a non-deterministic change fails here.

Temporal rebuilds a running workflow by replaying its history through the workflow code. If
the code now issues different commands (an activity moved, a timer added, a notice sent in
another order), every plan awaiting sign-off at deploy time fails with a non-determinism
error. ``tests/integration/histories/approval/*.json`` hold histories of real runs
(``WorkflowHistory.to_json()``); each must replay with ``temporalio.worker.Replayer``:

| file | run |
|---|---|
| ``approved_quorum_2`` | webhook down; a validator refusal (never in history), a decision refused by the store (an Update that failed), then alice and bob approve; still waiting for execution |
| ``rejected`` | no channel configured; bob rejects |
| ``expired`` | time-skipping server, a live webhook; waiting, reminder at 4 h, escalation at 12 h, expiry at 24 h |
| ``finished`` | a live webhook; alice and bob approve, the executor begins and fails, ``plan_finished``, export pending |

Regenerate them (a dev server and the time-skipping server start by themselves; about 10 s):

    .venv/bin/python tests/integration/test_approval_replay.py --record

Only on a deliberate, versioned change of the workflow: guard the new path with
``workflow.patched("<change-id>")`` so the histories already saved (runs in flight when the
change ships) still replay, keep those files (rename them ``<scenario>-before-<change-id>.json``)
and record new ones beside them; every ``*.json`` here is replayed. Never re-record to make
this test pass after an unguarded change: that hides exactly the break it is here to catch.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from writ.workflows.approval.workflows import PlanApproval

HISTORIES = Path(__file__).parent / "histories" / "approval"
SCENARIOS = ("approved_quorum_2", "rejected", "expired", "finished")


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
def test_a_saved_history_replays_on_the_current_workflow(path: Path) -> None:
    replayer = Replayer(workflows=[PlanApproval], data_converter=pydantic_data_converter)
    asyncio.run(replayer.replay_workflow(load(path)))  # raises on non-determinism


def test_every_scenario_has_a_saved_history() -> None:
    assert {p.stem for p in HISTORIES.glob("*.json")} >= set(SCENARIOS)


@pytest.mark.parametrize(("scenario", "updates", "timers_fired", "last"), [
    pytest.param("approved_quorum_2", 3, 0, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, id="approved_quorum_2"),
    pytest.param("rejected", 1, 0, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, id="rejected"),
    pytest.param("expired", 0, 3, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, id="expired"),
    pytest.param("finished", 2, 0, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, id="finished"),
])
def test_a_saved_history_holds_the_run_it_is_named_for(scenario: str, updates: int, timers_fired: int,
                                                       last: int) -> None:
    """So a re-recording that went wrong (a scenario that did not run to its point) is noticed."""
    events = load(HISTORIES / f"{scenario}.json").events
    kinds = [e.event_type for e in events]
    assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) == updates
    assert kinds.count(EventType.EVENT_TYPE_TIMER_FIRED) == timers_fired
    assert kinds[-1] == last


# -- recording (run this file as a script) ----------------------------------------------------------


async def _history(client: Any, plan_id: str) -> str:
    handle = client.client.get_workflow_handle(client.workflow_id(plan_id))
    return str((await handle.fetch_history()).to_json())


async def _wait_for(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(300):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"gave up waiting for {what}")


async def record_approved(world: Any) -> str:
    from support.approvals import running_worker

    from writ.engine.core.errors import ApprovalRefused

    record = world.submit("Approved by two code owners")
    async with running_worker(world) as client:
        await client.start(record)
        for who, signer in (("plan-bot", "plan-bot"), ("alice", "dave")):  # validator, then store refusal
            try:
                await client.decide(record.id, world.approval(record.id, who, signer=signer), "approve")
            except ApprovalRefused:
                pass
        for who in ("alice", "bob"):
            await client.decide(record.id, world.approval(record.id, who), "approve")

        async def idle_after_failed_notices() -> bool:  # both failures audited, no workflow task pending
            failed = [e for e in world.audit("workflow") if e["event"] == "notification_failed"]
            handle = client.client.get_workflow_handle(client.workflow_id(record.id))
            last = (await handle.fetch_history()).events[-1].event_type
            return len(failed) == 2 and last == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED

        await _wait_for(idle_after_failed_notices, "the waiting and approved notices to fail")
        return await _history(client, record.id)


async def record_rejected(world: Any) -> str:
    from support.approvals import running_worker

    record = world.submit("Rejected by bob")
    async with running_worker(world) as client:
        await client.start(record)
        await client.decide(record.id, world.approval(record.id, "bob", "reject", comment="not now"), "reject")
        await client.outcome(record.id)
        return await _history(client, record.id)


async def record_expired(world: Any) -> str:
    from temporalio.testing import WorkflowEnvironment

    from writ.workflows.approval.client import ApprovalClient
    from writ.workflows.approval.worker import approval_worker

    record = world.submit("Nobody decides", ttl=timedelta(hours=24))
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter)
    async with env:
        client = ApprovalClient(env.client, world.settings, audit=world.services.audit)
        async with approval_worker(env.client, world.services):
            await client.start(record)
            await env.sleep(timedelta(hours=25))
            await client.outcome(record.id)
            return await _history(client, record.id)


async def record_finished(world: Any) -> str:
    from support.approvals import running_worker

    record = world.submit("Approved, begun, failed")
    async with running_worker(world) as client:
        await client.start(record)
        for who in ("alice", "bob"):
            await client.decide(record.id, world.approval(record.id, who), "approve")
        world.services.plans.begin(record.id, "exec-bot")
        world.services.plans.finish(record.id, "failed", reason="step 0 failed upstream")
        await client.plan_finished(record.id, "failed", by="exec-bot")
        await client.outcome(record.id)
        return await _history(client, record.id)


async def record_all(out: Path) -> None:
    """Run each scenario against real servers and write its history to ``out/<scenario>.json``."""
    from support.approvals import approval_world
    from support.gateway import free_port
    from support.webhooks import closed_url, webhook_receiver

    from writ.engine.core.settings import NotifySettings
    from writ.workflows.approval.devserver import DevServer

    down = NotifySettings(webhook_url=closed_url(), max_attempts=2, first_retry_s=0.1)
    with tempfile.TemporaryDirectory() as tmp, webhook_receiver() as hook:
        live = NotifySettings(webhook_url=hook.url)
        with DevServer(Path(tmp), port=free_port()) as server:
            runs: list[tuple[str, Callable[[Any], Awaitable[str]], NotifySettings | None, str | None]] = [
                ("approved_quorum_2", record_approved, down, server.address),
                ("rejected", record_rejected, None, server.address),
                ("expired", record_expired, live, None),
                ("finished", record_finished, live, server.address),
            ]
            for name, recorder, notify, address in runs:
                extra: dict[str, Any] = {"temporal_address": address} if address else {}
                if notify is not None:
                    extra["notify"] = notify
                with approval_world(Path(tmp) / name, f"writ-record-{uuid.uuid4().hex[:8]}", **extra) as world:
                    (out / f"{name}.json").write_text(await recorder(world) + "\n")
                print(f"recorded {out / name}.json", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Record the approval workflow's histories for the replay test.")
    parser.add_argument("--record", action="store_true", help="run the scenarios and (over)write the histories")
    parser.add_argument("--out", type=Path, default=HISTORIES, help="where to write them (default: %(default)s)")
    args = parser.parse_args()
    if not args.record:
        parser.error("nothing to do: pass --record")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the `support` helpers
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(record_all(args.out))
