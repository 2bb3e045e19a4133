"""The approval workflow under attack: named cases, each found failing on the code it was written against.

An attacker here holds one approver key, or is the planner agent, or reaches the Temporal
frontend; an operator's Temporal, worker or database goes away at the worst moment. Each test
says what a user relies on (SECURITY.md rows 23-27, ADR 0015, the CLI's help) and checks it with
real parts: Temporal's dev server (the session's, a task queue per test), real workers, ``writ``
as a subprocess, SQLite or PostgreSQL, the shipped policy (two approvals with a code owner,
alice or bob, for an fs plan).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from support.approvals import BackgroundWorker, World, approval_world, run, running_worker, skipping
from support.faults import AuditLogAway, AuditLogRefusingOnce, RefusingInbox, SilentWebhook, tables_away
from support.gateway import free_port
from support.processes import writ
from temporalio.client import WorkflowExecutionStatus

from writ.engine.core import reasons
from writ.engine.core.errors import WorkflowUnavailable
from writ.engine.core.settings import NotifySettings
from writ.engine.core.timeutil import utc_now
from writ.engine.wiring.services import wire_services
from writ.plans.contacts import ContactStore
from writ.plans.lifecycle import PlanState
from writ.plans.models import Plan, PlanStep
from writ.plans.statements import sign_plan
from writ.workflows.approval.client import ApprovalClient
from writ.workflows.approval.worker import approval_worker

pytestmark = pytest.mark.temporal

DEF = "sha256:" + "ab" * 32
HANG_GUARD_S = 90.0
"""A bound on a wait that must end by itself: a hang fails the test instead of the run (no speed is asserted)."""


@pytest.fixture
def world(tmp_path: Path, temporal_env: str) -> Any:
    with approval_world(tmp_path, temporal_env) as w:
        yield w


def _key_file(world: World, who: str, directory: Path) -> Path:
    path = directory / f"{who}.pem"
    world.keys[who].save(path)
    return path


async def _start(world: World, plan: Any) -> None:
    await (await ApprovalClient.connect(world.settings)).start(plan)


# -- no worker takes the Update ------------------------------------------------------------------


def test_approve_while_no_worker_polls_fails_fast_instead_of_hanging(world: World, tmp_path: Path) -> None:
    """Temporal is up, no `writ serve`/`writ worker` runs: `writ approve` must say what to start, not wait forever."""
    record = world.submit()
    run(_start(world, record))
    alice = _key_file(world, "alice", tmp_path)

    done = writ("approve", record.id, "--key", alice, "--data-dir", world.settings.home, code=1,
                timeout=HANG_GUARD_S)

    assert "error[workflow_unavailable]" in done.stderr, done.stderr
    assert "no approval worker" in done.stderr and "writ worker" in done.stderr, done.stderr

    async def later() -> Any:  # a worker that starts afterwards finds nothing to count
        async with running_worker(world) as client:
            await asyncio.sleep(1)
            return await client.status(record.id)

    status = run(later())
    assert status.decisions == () and world.services.plans.approvals(record.id) == []


def test_approve_after_the_worker_died_is_bounded_and_says_it_may_still_count(world: World) -> None:
    """A worker that polled a moment ago died: the Update is admitted, nobody takes it; the approver must learn that."""
    record = world.submit()

    async def scenario() -> tuple[WorkflowUnavailable, Any]:
        async with running_worker(world) as client:
            await client.start(record)
            await asyncio.sleep(0.5)  # the worker has opened the plan; Temporal remembers it as a poller
        client = ApprovalClient(client.client, world.settings, audit=world.services.audit,
                                accept_timeout=timedelta(seconds=3))
        with pytest.raises(WorkflowUnavailable) as waited:
            await asyncio.wait_for(client.decide(record.id, world.approval(record.id, "alice"), "approve"),
                                   HANG_GUARD_S)
        async with running_worker(world) as again:  # a worker comes back: the admitted decision is counted
            for _ in range(100):
                if (await again.status(record.id)).decisions:
                    break
                await asyncio.sleep(0.1)
            return waited.value, await again.status(record.id)

    refused, status = run(scenario())
    assert refused.code == reasons.WORKFLOW_UNAVAILABLE
    assert "may still be counted" in refused.message and "writ worker" in refused.message, refused.message
    assert [d.approver for d in status.decisions] == ["alice"]
    assert world.services.plans.get(record.id).state is PlanState.PENDING


# -- the planner agent dates its plan ahead --------------------------------------------------------


def test_plan_dated_a_month_ahead_with_a_one_hour_ttl_is_refused(world: World, tmp_path: Path) -> None:
    """The policy lets a plan live 24 h from its created_at; one dated a month ahead would wait and run for a month.

    Its workflow, hard-stopped 7 days plus (expires_at - created_at) after it starts, would also time
    out while the plan still waits, leaving it with no expiry timer and no way to be decided.
    """
    ahead = utc_now() + timedelta(days=30)
    plan = Plan.new(title="Dated ahead", rationale="ttl bypass", planner="plan-bot", ttl=timedelta(hours=1), now=ahead,
                    steps=[PlanStep(server="fs", tool="write_file", definition_digest=DEF,
                                    args={"path": "/srv/notes.txt", "content": "x"})])
    envelope = tmp_path / "ahead.signed.json"
    envelope.write_bytes(sign_plan(plan, world.keys["plan-bot"]).to_json())

    done = writ("plan", "submit", envelope, "--data-dir", world.settings.home, code=1)

    assert "error[plan_invalid]" in done.stderr and "ahead of this host's clock" in done.stderr, done.stderr
    assert world.services.plans.list_plans() == []


# -- someone who reaches the Temporal frontend ------------------------------------------------------


def test_workflow_terminated_while_pending_is_started_again_by_proposing_the_same_plan(
        world: World, tmp_path: Path) -> None:
    """Terminating a plan's workflow counts nothing; the approver is told to propose it again, and that works.

    Before: "error[plan_not_pending]: plan .. is pending: it takes no more decisions", audited as a refusal.
    """
    record = world.submit()
    alice, bob = _key_file(world, "alice", tmp_path), _key_file(world, "bob", tmp_path)
    home = world.settings.home

    async def terminate() -> None:
        async with running_worker(world) as client:
            await client.start(record)
            for _ in range(int(HANG_GUARD_S * 10)):  # the first run opened the plan
                if world.audit("workflow"):
                    break
                await asyncio.sleep(0.1)
            await client.client.get_workflow_handle(client.workflow_id(record.id)).terminate("by an intruder")

    run(terminate())
    with BackgroundWorker(world.settings):
        refused = writ("approve", record.id, "--key", alice, "--data-dir", home, code=1)
        assert "error[workflow_missing]" in refused.stderr and "propose it again" in refused.stderr, refused.stderr
        assert world.audit("approval_refused") == []  # nothing reached a validator or the store
        envelope = tmp_path / "plan.signed.json"
        envelope.write_text(writ("plan", "show", record.id, "--envelope", "--data-dir", home).stdout)
        writ("plan", "submit", envelope, "--data-dir", home)
        writ("approve", record.id, "--key", alice, "--data-dir", home)
        done = writ("approve", record.id, "--key", bob, "--data-dir", home)

    assert done.stdout.strip().splitlines()[-1] == "2/2 approvals (alice, bob); approved"
    assert world.services.plans.get(record.id).state is PlanState.APPROVED
    assert [e["event"] for e in world.audit("workflow")].count("started") == 2


# -- the database goes away at the worst time --------------------------------------------------------


async def _retried_or_closed(client: ApprovalClient, plan_id: str, activity: str, attempt: int = 2) -> None:
    """Until ``activity`` of the plan's workflow is on try ``attempt``, or the workflow closed."""
    handle = client.client.get_workflow_handle(client.workflow_id(plan_id))
    for _ in range(int(HANG_GUARD_S * 10)):  # one activity's tries, with backoff
        desc = await handle.describe()
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return
        if any(a.activity_type.name == activity and a.attempt >= attempt
               for a in desc.raw_description.pending_activities):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{activity} was neither retried nor did the workflow close")


@pytest.mark.postgres
def test_database_away_when_the_workflow_opens_the_plan_does_not_end_its_workflow(
        tmp_path: Path, temporal_env: str, pg_schema_url: str) -> None:
    """A database restart as the plan's workflow starts: the workflow must wait for it, not fail for good."""
    with approval_world(tmp_path, temporal_env, database_url=pg_schema_url) as world:
        record = world.submit()

        async def scenario() -> tuple[str, str]:
            async with running_worker(world) as client:
                with tables_away(pg_schema_url):
                    await client.start(record)
                    await _retried_or_closed(client, record.id, "open_plan")
                first = await client.decide(record.id, world.approval(record.id, "alice"), "approve")
                second = await client.decide(record.id, world.approval(record.id, "bob"), "approve")
                return first.summary, second.summary

        assert run(scenario()) == ("1/2 approvals (alice); missing: 1 more approval",
                                   "2/2 approvals (alice, bob); approved")
        assert world.services.plans.get(record.id).state is PlanState.APPROVED


def test_audit_log_away_for_half_a_minute_as_the_workflow_starts_does_not_end_it(world: World) -> None:
    """The workflow's own audit entries (started, reminded, expired, ended) wait for the log; they never end the run.

    Before: five tries in ~15 s, then the workflow failed: no expiry timer, no decision ever counted.
    """
    record = world.submit()
    audit = AuditLogAway(world.services.store)
    services = wire_services(world.settings, world.services.store, audit=audit)

    async def scenario() -> tuple[str, str]:
        client = await ApprovalClient.connect(world.settings, audit=world.services.audit)
        async with approval_worker(client.client, services):
            audit.away = True
            await client.start(record)
            await _retried_or_closed(client, record.id, "record_event", attempt=6)  # past five tries
            audit.away = False
            first = await client.decide(record.id, world.approval(record.id, "alice"), "approve")
            second = await client.decide(record.id, world.approval(record.id, "bob"), "approve")
            return first.summary, second.summary

    assert run(scenario()) == ("1/2 approvals (alice); missing: 1 more approval",
                               "2/2 approvals (alice, bob); approved")
    assert [e["event"] for e in world.audit("workflow")][0] == "started"


def test_approval_whose_audit_entry_failed_once_counts_only_with_its_entry(world: World) -> None:
    """SECURITY.md row 23: each counted approval is audited with the workflow and run ids.

    The first append of alice's `approval` entry fails after her decision was stored; the workflow's
    retried activity submits the same envelope, which writes the missing entry, and only then counts.
    """
    record = world.submit()
    audit = AuditLogRefusingOnce(world.services.store, kind="approval")
    services = wire_services(world.settings, world.services.store, audit=audit)

    async def scenario() -> Any:
        client = await ApprovalClient.connect(world.settings, audit=world.services.audit)
        async with approval_worker(client.client, services):
            await client.start(record)
            return await client.decide(record.id, world.approval(record.id, "alice"), "approve")

    count = run(scenario())
    assert audit.refused == 1 and count.approvers == ("alice",)  # the blink happened, and alice counts
    counted = world.audit("approval")
    assert [e["approver"] for e in counted] == ["alice"]
    assert counted[0]["workflow_id"].endswith(record.id) and counted[0]["run_id"]


# -- a plan_finished signal that never arrived ---------------------------------------------------------


def test_plan_aborted_while_temporal_was_away_gets_no_reminder_and_its_workflow_ends(tmp_path: Path) -> None:
    """`writ plan abort` with Temporal unreachable: the abort stands, the workflow is not told.

    The CLI says the workflow reads the plan's state within the hour; a pending plan's workflow read
    it only at expiry, and meanwhile reminded and escalated to approvers about an aborted plan.
    """
    with approval_world(tmp_path, f"writ-attack-{uuid.uuid4().hex[:8]}") as world:
        record = world.submit(ttl=timedelta(hours=24))

        async def scenario() -> Any:
            async with skipping(world) as (env, client):
                await client.start(record)
                await env.sleep(timedelta(minutes=30))  # started, the waiting notice is out
                unreachable = {"WRIT_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
                               "WRIT_TEMPORAL_CONNECT_TIMEOUT_S": "1"}
                aborted = writ("plan", "abort", record.id, "--reason", "the session was locked",
                               "--data-dir", world.settings.home, env=unreachable)
                await env.sleep(timedelta(hours=13))  # past the reminder (4 h) and the escalation (12 h)
                return aborted.stderr, await client.status(record.id)

        warning, status = run(scenario())
    assert "was not told (workflow_unavailable)" in warning
    events = [e["event"] for e in world.audit("workflow")]
    assert "reminded" not in events and "escalated" not in events, events
    assert status.state == "aborted" and events[-1] == "ended", events


# -- a notification channel that hangs -----------------------------------------------------------------


def test_notices_stuck_on_a_silent_webhook_do_not_hold_up_a_decision(tmp_path: Path, temporal_env: str) -> None:
    """A failing channel never blocks or fails the approval (issue 10): nine plans' notices hang on a receiver.

    Before: the decision's activity waited for one of the eight activity threads the notices held,
    timed out three times (30 s each) and the approver got workflow_failed.
    """
    hook = SilentWebhook()
    with approval_world(tmp_path, temporal_env,
                        notify=NotifySettings(webhook_url=hook.url, timeout_s=120, max_attempts=1)) as world:
        first, *others = [world.submit(f"plan {i}") for i in range(9)]

        async def scenario() -> Any:
            async with running_worker(world) as client:
                try:
                    for plan in (first, *others):  # each waiting notice holds an activity thread
                        await client.start(plan)
                    for _ in range(int(HANG_GUARD_S * 10)):
                        if len(hook.held) >= 8:
                            break
                        await asyncio.sleep(0.1)
                    assert len(hook.held) >= 8, f"only {len(hook.held)} notices reached the receiver"
                    return await client.decide(first.id, world.approval(first.id, "alice"), "approve")
                finally:
                    hook.release()

        count = run(scenario())
    assert count.summary == "1/2 approvals (alice); missing: 1 more approval"


# -- the audit log keeps no email address -----------------------------------------------------------


def test_email_notices_leave_no_address_in_the_audit_log(tmp_path: Path, temporal_env: str) -> None:
    """docs/approvals.md: a contact change is audited as a SHA-256 "(the log never holds the address)".

    Before: each email notice's entry said "sent to alice@example.com" or "refused bob@example.com
    (550 ...) (already sent to alice@example.com)", in a log that cannot be edited.
    """
    inbox = RefusingInbox(refuse="bob@example.com")
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with approval_world(tmp_path, temporal_env, notify=NotifySettings(
                smtp_host="127.0.0.1", smtp_port=port, email_from="writ@writ.example", max_attempts=1)) as world:
            contacts = ContactStore(world.services.store, audit=world.services.audit)
            contacts.set_email("alice", "alice@example.com")
            contacts.set_email("bob", "bob@example.com")
            record = world.submit()

            async def scenario() -> Any:
                async with running_worker(world) as client:
                    await client.start(record)
                    for _ in range(int(HANG_GUARD_S * 10)):  # the waiting notice went out, and bob's was refused
                        if any(e["event"].startswith("notification_") for e in world.audit("workflow")):
                            break
                        await asyncio.sleep(0.1)
                    return await client.status(record.id)

            status = run(scenario())
            entries = [(e.kind, e.payload) for e in world.services.audit.tail(1000)]
    finally:
        controller.stop()
    assert inbox.delivered == ["alice@example.com"]
    notices = [p for kind, p in entries if kind == "workflow" and p["event"].startswith("notification_")]
    assert [(p["event"], p["channel"]) for p in notices] == [("notification_failed", "email")]
    assert "alice" in notices[0]["detail"] and "bob" in notices[0]["detail"], notices[0]["detail"]
    leaked = [(kind, p) for kind, p in entries if "@example.com" in json.dumps(p)]
    assert leaked == []
    assert all("@example.com" not in n.detail for n in status.notified)
