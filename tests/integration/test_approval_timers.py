"""The approval workflow's clock: expiry, reminders and escalation, on Temporal's time-skipping test server.

A day passes in about a second: ``env.sleep(...)`` moves the test server's clock, firing the
workflow's timers; activities (the stores, the audit log, a real webhook receiver on
loopback) run for real at each skipped time. The time-skipping server does not skip while a
client waits on an Update (sdk-java#2283), so these tests send none: a decision made before
the workflow starts goes straight into the store, as an earlier run of the workflow would
have left it. The last test runs on the real dev server, where Updates round-trip.

The shipped policy (policies/writ/approval_rules.json): an fs plan needs two approvals with a
code owner (alice or bob), reminds after 4 h and escalates to ``security`` (carol) after 12 h.
Times are checked in workflow time (history events, ``status().notified[].at``), never the
wall clock the audit log records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.approvals import approval_world, run, running_worker, skipping
from support.webhooks import Receiver, closed_url, webhook_receiver
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from writ.attestations.instance_key import load_instance_key
from writ.engine.core.settings import NotifySettings
from writ.plans.lifecycle import PlanState
from writ.workflows.approval.client import ApprovalClient
from writ.workflows.approval.models import ApprovalStatus, WorkflowOutcome

pytestmark = pytest.mark.temporal

SLACK = timedelta(minutes=1)  # real time that activities take at a skipped moment (milliseconds, in practice)
HOUR = timedelta(hours=1)


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with webhook_receiver() as receiver:
        yield receiver


def world_with_webhook(tmp_path: Path, url: str, **notify: Any) -> Any:
    return approval_world(tmp_path, f"writ-timers-{uuid.uuid4().hex[:8]}",
                          notify=NotifySettings(webhook_url=url, **notify))


@dataclass
class Timeline:
    """What the workflow did, in workflow time from its start."""

    started: datetime
    timers_set: list[timedelta]     # TIMER_STARTED start_to_fire_timeout, in order
    timers_fired: list[timedelta]   # TIMER_FIRED, offset from the start
    notified: list[tuple[str, tuple[str, ...], bool, timedelta]]  # (event, recipients, ok, offset)

    @classmethod
    def of(cls, history: WorkflowHistory, status: ApprovalStatus) -> Timeline:
        events = history.events
        started = events[0].event_time.ToDatetime(tzinfo=UTC)
        assert events[0].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED

        def offset(e: Any) -> timedelta:
            return e.event_time.ToDatetime(tzinfo=UTC) - started

        return cls(
            started=started,
            timers_set=[e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
                        for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED],
            timers_fired=[offset(e) for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED],
            notified=[(n.event, n.recipients, n.ok, n.at - started) for n in status.notified],
        )


def near(got: timedelta, expected: timedelta) -> bool:
    """``got`` is ``expected`` of skipped time, plus at most the real time the activities in between took."""
    return expected - SLACK <= got <= expected + SLACK


async def _run_to_expiry(env: WorkflowEnvironment, client: ApprovalClient, plan_id: str) -> tuple[
        WorkflowOutcome, Timeline]:
    await env.sleep(timedelta(hours=25))
    outcome = await client.outcome(plan_id)
    history = await client.client.get_workflow_handle(client.workflow_id(plan_id)).fetch_history()
    return outcome, Timeline.of(history, await client.status(plan_id))


def test_an_unapproved_plan_expires_at_its_expiry_time(tmp_path: Path, hook: Receiver) -> None:
    with world_with_webhook(tmp_path, hook.url) as world:
        hook.trust(load_instance_key(world.settings.home).public_key)
        record = world.submit(ttl=timedelta(hours=24))
        plans = world.services.plans

        async def scenario() -> tuple[str, str, WorkflowOutcome, datetime]:
            async with skipping(world) as (env, client):
                await client.start(record)
                await env.sleep(record.expires_at - await env.get_current_time() - SLACK)
                before = plans.get(record.id).state.value, (await client.status(record.id)).state
                await env.sleep(2 * SLACK)
                outcome = await client.outcome(record.id)
                return *before, outcome, await env.get_current_time()

        store_before, workflow_before, outcome, now = run(scenario())
        assert (store_before, workflow_before) == ("pending", "pending")  # a minute before its expiry time
        assert outcome.state == "expired"
        assert now <= record.expires_at + 2 * SLACK  # a day went by in skipped time, no more
        assert plans.get(record.id).state is PlanState.EXPIRED
        expired = [e for e in world.audit("workflow") if e["event"] == "expired"]
        assert len(expired) == 1
        assert expired[0]["expires_at"] == record.expires_at.isoformat()
        assert expired[0]["workflow_id"].endswith(record.id) and expired[0]["run_id"]
        told = [(n["event"], n["recipients"]) for n in hook.notices()]
        assert told[-1] == ("expired", ["alice", "bob", "carol"])  # approvers and the escalation group


@pytest.mark.parametrize(("decided_before", "undecided"), [
    pytest.param((), ["alice", "bob"], id="nobody_decided"),
    pytest.param(("alice",), ["bob"], id="alice_approved_before_the_workflow_started"),
])
def test_reminder_then_escalation_reach_the_right_people_at_the_policy_times(
        tmp_path: Path, hook: Receiver, decided_before: tuple[str, ...], undecided: list[str]) -> None:
    with world_with_webhook(tmp_path, hook.url) as world:
        hook.trust(load_instance_key(world.settings.home).public_key)
        record = world.submit(ttl=timedelta(hours=24))
        for who in decided_before:
            world.services.plans.add_approval(record.id, world.approval(record.id, who))

        async def scenario() -> tuple[WorkflowOutcome, Timeline]:
            async with skipping(world) as (env, client):
                await client.start(record)
                return await _run_to_expiry(env, client, record.id)

        outcome, timeline = run(scenario())
    assert outcome.state == "expired"
    # dave approves but is in no group, carol is only in security: neither waits on an fs plan
    told = [(n["event"], n["recipients"]) for n in hook.notices()]
    assert told == [("waiting", undecided), ("reminder", undecided), ("escalation", ["carol"]),
                    ("expired", ["alice", "bob", "carol"])]
    assert [(event, ok) for event, _, ok, _ in timeline.notified] == [
        ("waiting", True), ("reminder", True), ("escalation", True), ("expired", True)]
    at = {event: offset for event, _, _, offset in timeline.notified}
    assert near(at["waiting"], timedelta(0))
    assert near(at["reminder"], 4 * HOUR)
    assert near(at["escalation"], 12 * HOUR)
    assert near(at["expired"], record.expires_at - timeline.started)
    # the timers themselves: 4 h to the reminder, 8 more to the escalation, the rest to expiry
    assert [near(t, e) for t, e in zip(timeline.timers_set, [4 * HOUR, 8 * HOUR, 12 * HOUR], strict=True)] == [
        True] * 3
    assert [near(t, e) for t, e in zip(timeline.timers_fired, [4 * HOUR, 12 * HOUR, 24 * HOUR], strict=True)] == [
        True] * 3
    escalated = [e for e in world.audit("workflow") if e["event"] == "escalated"]
    assert [e["to"] for e in escalated] == [["security"]]
    reminded = [e for e in world.audit("workflow") if e["event"] == "reminded"]
    assert [e["to"] for e in reminded] == [undecided]  # audited whatever the channels


def test_a_webhook_that_is_down_holds_neither_the_timeline_nor_the_expiry(tmp_path: Path) -> None:
    with world_with_webhook(tmp_path, closed_url(), max_attempts=2, first_retry_s=0.1) as world:
        record = world.submit(ttl=timedelta(hours=24))

        async def scenario() -> tuple[WorkflowOutcome, Timeline]:
            async with skipping(world) as (env, client):
                await client.start(record)
                return await _run_to_expiry(env, client, record.id)

        outcome, timeline = run(scenario())
        assert outcome.state == "expired"
        assert world.services.plans.get(record.id).state is PlanState.EXPIRED
        assert [(event, ok) for event, _, ok, _ in timeline.notified] == [
            ("waiting", False), ("reminder", False), ("escalation", False), ("expired", False)]
        assert [near(t, e) for t, e in zip(timeline.timers_fired, [4 * HOUR, 12 * HOUR, 24 * HOUR], strict=True)] == [
            True] * 3
        events = world.audit("workflow")
        failed = [e for e in events if e["event"] == "notification_failed"]
        assert [(f["notice"], f["channel"]) for f in failed] == [
            ("waiting", "webhook"), ("reminder", "webhook"), ("escalation", "webhook"), ("expired", "webhook")]
        assert all("cannot be reached" in f["detail"] and "(attempt 2)" in f["detail"] for f in failed)
        assert [e["event"] for e in events if e["event"] in ("escalated", "expired", "ended")] == [
            "escalated", "expired", "ended"]


def test_no_channel_configured_is_audited_once_and_the_timeline_still_runs(tmp_path: Path) -> None:
    with approval_world(tmp_path, f"writ-timers-{uuid.uuid4().hex[:8]}") as world:
        record = world.submit(ttl=timedelta(hours=24))

        async def scenario() -> tuple[WorkflowOutcome, Timeline]:
            async with skipping(world) as (env, client):
                await client.start(record)
                return await _run_to_expiry(env, client, record.id)

        outcome, timeline = run(scenario())
        assert outcome.state == "expired"
        assert timeline.notified == []
        assert [near(t, e) for t, e in zip(timeline.timers_fired, [4 * HOUR, 12 * HOUR, 24 * HOUR], strict=True)] == [
            True] * 3
        skipped = [e for e in world.audit("workflow") if e["event"] == "notification_skipped"]
        assert [(s["notice"], "WRIT_NOTIFY__" in s["reason"]) for s in skipped] == [("waiting", True)]


def test_approvals_complete_on_the_dev_server_while_the_webhook_is_down(tmp_path: Path, temporal_env: str) -> None:
    """Two Updates approve the plan while the notices still wait for their retry; then the failure is audited."""
    notify = NotifySettings(webhook_url=closed_url(), max_attempts=2, first_retry_s=3)
    with approval_world(tmp_path, temporal_env, notify=notify) as world:
        record = world.submit()
        plans = world.services.plans

        async def scenario() -> tuple[list[tuple[int, int, str]], Any, WorkflowOutcome, WorkflowHistory]:
            async with running_worker(world) as client:
                await client.start(record)
                counts = []
                for who in ("alice", "bob"):
                    count = await client.decide(record.id, world.approval(record.id, who), "approve")
                    counts.append((count.approvals, count.quorum, count.state))
                status = await client.status(record.id)
                plans.begin(record.id, "exec-bot")
                plans.finish(record.id, "aborted", reason="the test ends it")
                await client.plan_finished(record.id, "aborted", by="exec-bot")
                outcome = await client.outcome(record.id)
                history = await client.client.get_workflow_handle(client.workflow_id(record.id)).fetch_history()
                return counts, status, outcome, history

        counts, status_when_approved, outcome, history = run(scenario())
        assert counts == [(1, 2, "pending"), (2, 2, "approved")]
        assert status_when_approved.state == "approved"
        assert outcome.state == "aborted"
        # the counts came back while the first notice was still between its two tries
        kinds = [e.event_type for e in history.events]
        updates_done = [i for i, k in enumerate(kinds) if k == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED]
        notices_failed = [i for i, k in enumerate(kinds) if k == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED]
        assert len(updates_done) == 2 and notices_failed
        assert max(updates_done) < min(notices_failed)
        failed = [e for e in world.audit("workflow") if e["event"] == "notification_failed"]
        assert {(f["notice"], f["channel"]) for f in failed} == {("waiting", "webhook"), ("approved", "webhook")}
        assert [a["approver"] for a in world.audit("approval")] == ["alice", "bob"]
