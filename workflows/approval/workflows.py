"""The approval workflow of one plan: Updates count decisions, timers expire, remind and escalate.

Deterministic code only: every read and write of the stores, the policy, the audit log and
the notification channels is an activity (``writ.workflows.approval.activities``), called
by name so this module imports none of them.

    pending --approve x quorum--> approved --plan_finished--> (completed|failed|aborted) -> export
       |--reject--> rejected           \\--expiry, never begun--> expired
       \\--expiry--> expired

Updates ``approve`` and ``reject`` carry the approver's signed statement. Their validator
refuses, before anything enters history: an envelope that is no approval statement, another
plan's digest, the planner's own name, an approver who already decided (or whose decision is
being counted), a decision after expiry or once the plan left ``pending``. The handler then
has the ``record_decision`` activity verify the signature and the approver's eligibility
against the trust store and store it (``PlanStore.add_approval``), and returns the count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from writ.engine.core import reasons
    from writ.engine.core.errors import WritError
    from writ.plans.statements import unverified_statement
    from writ.workflows.approval import WORKFLOW_NAME
    from writ.workflows.approval.models import (
        ApprovalCount,
        ApprovalStatus,
        Decision,
        Notice,
        NoticeEvent,
        NoticeSent,
        OpenedPlan,
        PlanAt,
        PlanFinished,
        PlanSnapshot,
        Recipient,
        RecordDecision,
        StartApproval,
        WorkflowEvent,
        WorkflowOutcome,
    )

__all__ = ["PlanApproval"]

STORE_TIMEOUT = timedelta(seconds=30)
EVENT_TIMEOUT = timedelta(seconds=10)  # one audit append: a worker that died holding it is noticed soon
# A decision's activity retries a database that is briefly away, then gives up: the approver waits.
STORE_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=["refused"])
# The run's own activities (open, expire, poll, export) wait as long as it takes: nothing counts meanwhile.
DURABLE_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1), non_retryable_error_types=["refused"])
POLL_WHILE_EXECUTING = timedelta(hours=1)  # the plan_finished signal may be lost; the store says
STATE_BEFORE_NOTICE = "state-before-notice"
"""``workflow.patched`` id: a reminder or escalation first reads the plan's state (an abort whose signal was lost)."""
ENDED = {"rejected", "expired", "completed", "failed", "aborted"}
EXECUTION_ENDED = {"completed", "failed", "aborted"}


def _refused(code: str, message: str) -> ApplicationError:
    """An Update refusal the client shows as ``error[code]: message``."""
    return ApplicationError(message, {"code": code}, type="refused", non_retryable=True)


@workflow.defn(name=WORKFLOW_NAME)
class PlanApproval:
    """One plan's sign-off: waits for decisions (Updates), expires it on time, notifies, waits for its end."""

    @workflow.init
    def __init__(self, start: StartApproval) -> None:
        self._start = start
        self._opened: OpenedPlan | None = None
        self._state = "pending"
        self._count: ApprovalCount | None = None
        self._decided: set[str] = set()
        self._notified: list[NoticeSent] = []
        self._finish_hint = False
        self._export = "not started"
        self._lock = asyncio.Lock()
        self._sending: list[asyncio.Task[None]] = []
        self._warned_no_channel = False
        self._ready = False

    # -- the run --------------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: StartApproval) -> WorkflowOutcome:
        opened = await self._activity("open_plan", start.plan_id, OpenedPlan)
        self._opened, self._count = opened, opened.count
        self._state, self._decided = opened.state, set(opened.decided)
        await self._event("started", {"state": opened.state, "requirement": opened.requirement,
                                      "schedule": opened.schedule.model_dump(mode="json"),
                                      "approvers": [r.principal for r in opened.approvers]})
        if self._state == "pending":
            self._notify("waiting", self._undecided(opened.approvers))
        self._ready = True  # decisions are counted from here on: after `started` and the waiting notice
        if self._state == "pending":
            await self._wait_for_decision(opened)
        elif self._state == "expired":  # it expired before its workflow opened it
            await self._event("expired", {"expires_at": start.expires_at.isoformat()})
        if self._state in ("approved", "executing"):
            if self._state == "approved":
                self._notify("approved", self._everyone(opened))
            await self._wait_for_end()
        elif self._state in ("rejected", "expired"):
            self._notify(self._state, self._everyone(opened))  # type: ignore[arg-type]
        if self._state in EXECUTION_ENDED:
            self._export = await self._activity("export_bundle", start.plan_id, str)
        await workflow.wait_condition(workflow.all_handlers_finished)
        await asyncio.gather(*self._sending)
        await self._event("ended", {"state": self._state, "export": self._export})
        return WorkflowOutcome(plan_id=start.plan_id, state=self._state, export=self._export)

    async def _wait_for_decision(self, opened: OpenedPlan) -> None:
        """Until a decision settles the plan: remind, escalate, and at its expiry time, expire it."""
        began, schedule = workflow.now(), opened.schedule
        marks: list[tuple[datetime, str]] = []
        if schedule.remind_after_hours:
            marks.append((began + timedelta(hours=schedule.remind_after_hours), "reminder"))
        if schedule.escalate_after_hours:
            marks.append((began + timedelta(hours=schedule.escalate_after_hours), "escalation"))
        expires = self._start.expires_at
        marks = [*sorted(m for m in marks if m[0] < expires), (expires, "expire")]
        for at, what in marks:
            if await self._decided_before(at):
                return
            if what != "expire" and await self._left_pending():
                return
            if what == "reminder":
                undecided = self._undecided(opened.approvers)
                await self._event("reminded", {"to": [r.principal for r in undecided]})
                self._notify("reminder", undecided)
            elif what == "escalation":
                await self._event("escalated", {"to": list(schedule.escalate_to)})
                self._notify("escalation", opened.escalation)
            else:
                await self._lock.acquire()  # no decision is being counted while the plan expires
                try:
                    snapshot = await self._activity("expire_plan", self._at(), PlanSnapshot)
                finally:
                    self._lock.release()
                self._state = snapshot.state
                if snapshot.state == "expired":
                    await self._event("expired", {"expires_at": expires.isoformat()})
                return

    async def _left_pending(self) -> bool:
        """Whether the store says the plan left ``pending`` unseen (its ``plan_finished`` was lost): no notice then."""
        if not workflow.patched(STATE_BEFORE_NOTICE):
            return False  # a run begun before this check: its history has no such activity
        async with self._lock:  # no decision is being counted while the store is read
            self._state = (await self._activity("plan_state", self._at(), PlanSnapshot)).state
        return self._state != "pending"

    async def _decided_before(self, at: datetime) -> bool:
        """Whether the plan left ``pending`` before ``at`` (a decision, or an abort the store confirms)."""
        while await self._until(at, lambda: self._state != "pending" or self._finish_hint):
            if not self._finish_hint:
                return True
            self._finish_hint = False
            self._state = (await self._activity("plan_state", self._at(), PlanSnapshot)).state
            if self._state != "pending":
                return True
        return False

    async def _wait_for_end(self) -> None:
        """Until the store says execution ended (woken by ``plan_finished``; polled in case a signal was lost)."""
        while True:
            now = workflow.now()
            deadline = self._start.expires_at if now < self._start.expires_at else now + POLL_WHILE_EXECUTING
            await self._until(deadline, lambda: self._finish_hint)
            self._finish_hint = False
            snapshot = await self._activity("plan_state", self._at(), PlanSnapshot)
            self._state = snapshot.state
            if snapshot.ended:
                if snapshot.state in EXECUTION_ENDED:
                    await self._event("execution_ended", {"state": snapshot.state})
                return

    async def _until(self, at: datetime, done: Callable[[], bool]) -> bool:
        """Wait until ``done()`` (True) or the time ``at`` (False), whichever comes first."""
        if done():
            return True
        timeout = (at - workflow.now()).total_seconds()
        if timeout <= 0:
            return False
        try:
            await workflow.wait_condition(done, timeout=timeout)
        except TimeoutError:
            return False
        return True

    # -- Updates, signal, query ------------------------------------------------------------------

    @workflow.update(name="approve")
    async def approve(self, decision: Decision) -> ApprovalCount:
        return await self._decide(decision)

    @approve.validator
    def _validate_approve(self, decision: Decision) -> None:
        self._validate(decision, "approve")

    @workflow.update(name="reject")
    async def reject(self, decision: Decision) -> ApprovalCount:
        return await self._decide(decision)

    @reject.validator
    def _validate_reject(self, decision: Decision) -> None:
        self._validate(decision, "reject")

    @workflow.signal(name="plan_finished")
    def plan_finished(self, finished: PlanFinished) -> None:
        """Execution ended (a hint: the store's state is read before anything is recorded)."""
        self._finish_hint = True

    @workflow.query(name="status")
    def status(self) -> ApprovalStatus:
        count = self._count
        decisions = count.decisions if count is not None else ()
        return ApprovalStatus(
            plan_id=self._start.plan_id, state=self._state,
            requirement=self._opened.requirement if self._opened else {}, count=count, decisions=decisions,
            expires_at=self._start.expires_at, notified=tuple(self._notified), export=self._export,
        )

    def _validate(self, decision: Decision, expected: Literal["approve", "reject"]) -> None:
        """Refuse, before history, what could never count. Pure: no IO, no await."""
        pid = self._start.plan_id
        try:
            statement = unverified_statement(decision.envelope.encode())
        except WritError as e:
            raise _refused(reasons.APPROVAL_MALFORMED, f"not a signed approval statement: {e.message}") from None
        who, said = statement.predicate.approver, statement.predicate.decision
        if statement.plan_id != pid:
            raise self._ignored(reasons.WRONG_PLAN, f"the statement is about plan {statement.plan_id}, not this one")
        if said != expected:
            raise _refused(reasons.APPROVAL_MALFORMED, f"the statement says {said!r}, sent as {expected!r}")
        if who == self._start.planner:
            raise self._ignored(reasons.SELF_APPROVAL, f"{who!r} wrote the plan and cannot decide on it")
        # (one being counted now is not refused here: an unverified name must not hold up the real one;
        # the store refuses the second of two concurrent decisions of one approver)
        if who in self._decided:
            raise self._ignored(reasons.DUPLICATE_APPROVER, f"{who!r} already decided on this plan; the first "
                                "decision counts")
        if workflow.now() >= self._start.expires_at:
            raise _refused(reasons.PLAN_EXPIRED, f"plan expired at {self._start.expires_at.isoformat()}")
        if self._state != "pending":
            raise _refused(reasons.PLAN_NOT_PENDING, f"plan is {self._state}: decisions are taken only while pending")

    def _ignored(self, reason: str, detail: str) -> ApplicationError:
        """Refused as the store words it: ``approval of plan sha256:ab.. refused (reason): detail``."""
        short = self._start.plan_id[:19]
        return _refused("approval_" + reason, f"approval of plan {short}.. refused ({reason}): {detail}")

    async def _decide(self, decision: Decision) -> ApprovalCount:
        await workflow.wait_condition(lambda: self._ready)
        async with self._lock:  # one decision counted at a time
            if self._state != "pending":
                raise _refused(reasons.PLAN_NOT_PENDING, f"plan is {self._state}: it takes no more decisions")
            count: ApprovalCount = await self._activity(
                "record_decision", RecordDecision(plan_id=self._start.plan_id, envelope=decision.envelope),
                ApprovalCount, STORE_RETRY, local=True)
        self._count, self._state = count, count.state
        self._decided = {*count.approvers, *count.rejected_by}
        return count

    # -- activities, notifications, audit -----------------------------------------------------------

    async def _activity(self, name: str, arg: Any, result: type[Any], retry: RetryPolicy = DURABLE_RETRY,
                        *, local: bool = False) -> Any:
        """Run a store activity; its refusal becomes this workflow's error of the same code.

        ``local``: in the worker that runs this workflow task, without a round trip through the
        server's task queue (a decision's approver is waiting; the activity is short and idempotent).
        """
        try:
            if local:
                return await workflow.execute_local_activity(
                    name, arg, result_type=result, start_to_close_timeout=STORE_TIMEOUT, retry_policy=retry)
            return await workflow.execute_activity(
                name, arg, result_type=result, start_to_close_timeout=STORE_TIMEOUT, retry_policy=retry)
        except ActivityError as e:
            cause = e.cause
            if isinstance(cause, ApplicationError) and cause.type == "refused":
                raise ApplicationError(cause.message, *cause.details, type="refused", non_retryable=True) from None
            raise ApplicationError(
                f"{name} failed: {cause.message if isinstance(cause, ApplicationError) else e}",
                {"code": reasons.WORKFLOW_FAILED}, type="failed", non_retryable=True,
            ) from None

    async def _event(self, event: str, details: dict[str, Any]) -> None:
        record = WorkflowEvent(plan_id=self._start.plan_id, event=event, event_id=str(workflow.uuid4()),
                               details=details)
        # Retried until the log takes it, as the run's store activities are: a log away for a minute
        # (a database restart, a full disk) must not end the plan's workflow (no expiry, no decisions).
        await workflow.execute_activity("record_event", record, start_to_close_timeout=EVENT_TIMEOUT,
                                        retry_policy=DURABLE_RETRY)

    def _notify(self, event: NoticeEvent, recipients: tuple[Recipient, ...]) -> None:
        """Send ``event`` on every channel in the background: a failing channel never holds the sign-off."""
        opened = self._opened
        if opened is None or not recipients:
            return
        if not opened.channels:
            if not self._warned_no_channel:
                self._warned_no_channel = True
                self._sending.append(asyncio.create_task(self._event("notification_skipped", {
                    "notice": event, "reason": "no notification channel is configured (WRIT_NOTIFY__*)"})))
            return
        count = self._count
        notice = Notice(
            event=event, plan_id=self._start.plan_id, title=self._start.title, planner=self._start.planner,
            link=opened.link, summary=count.summary if count else "", requirement=opened.requirement,
            expires_at=self._start.expires_at, recipients=recipients, event_id=str(workflow.uuid4()),
        )
        for channel in opened.channels:
            self._sending.append(asyncio.create_task(self._send(channel, notice, opened)))

    async def _send(self, channel: str, notice: Notice, opened: OpenedPlan) -> None:
        retry = opened.retry
        try:
            detail = await workflow.execute_activity(
                f"notify_{channel}", notice, result_type=str,
                start_to_close_timeout=timedelta(seconds=retry.timeout_s * 2),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=retry.first_retry_s),
                                         backoff_coefficient=2.0, maximum_attempts=retry.max_attempts),
            )
            ok = True
        except ActivityError as e:
            ok, detail = False, e.cause.message if isinstance(e.cause, ApplicationError) else str(e.cause or e)
        names = tuple(r.principal for r in notice.recipients)
        self._notified.append(NoticeSent(event=notice.event, channel=channel, recipients=names, ok=ok,
                                         detail=detail, at=workflow.now()))
        await self._event("notification_sent" if ok else "notification_failed", {
            "notice": notice.event, "channel": channel, "recipients": list(names), "detail": detail,
            "notice_id": notice.event_id})

    def _at(self) -> PlanAt:
        return PlanAt(plan_id=self._start.plan_id, at=workflow.now())

    def _undecided(self, people: tuple[Recipient, ...]) -> tuple[Recipient, ...]:
        return tuple(r for r in people if r.principal not in self._decided)

    def _everyone(self, opened: OpenedPlan) -> tuple[Recipient, ...]:
        seen = {r.principal: r for r in (*opened.approvers, *opened.escalation)}
        return tuple(seen.values())
