"""What the CLI, the gateway and the web use to reach the approval workflows: start, decide, signal, ask.

    client = await ApprovalClient.connect(settings, audit=services.audit)   # WorkflowUnavailable if unreachable
    await client.start(record)                     # idempotent: the plan's one workflow
    count = await client.decide(plan_id, envelope, "approve")                # ApprovalCount, or ApprovalRefused
    await client.plan_finished(plan_id, "completed", by="exec-bot")
    status = await client.status(plan_id)          # ApprovalStatus

Temporal's server authenticates clients, not the person behind an Update: the approver's
identity is the signed statement inside it, checked by the workflow's activity. A refusal by
the Update validator never reaches the store, so this client audits it (``approval_refused``
with ``stage: validator`` and the workflow ids); refusals after the validator are audited by
the store.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any, Literal

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    TLSConfig,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from writ.engine.core import reasons
from writ.engine.core.errors import ApprovalRefused, ConfigError, WorkflowUnavailable
from writ.engine.core.ports import AuditSink
from writ.engine.core.settings import Settings, TemporalSettings
from writ.plans.canonical import sha256_digest
from writ.plans.records import PlanRecord
from writ.workflows.approval import WORKFLOW_NAME
from writ.workflows.approval.models import (
    ApprovalCount,
    ApprovalStatus,
    Decision,
    PlanFinished,
    StartApproval,
    WorkflowOutcome,
)

__all__ = ["ApprovalClient", "connect_client", "unavailable", "workflow_id"]

DecisionKind = Literal["approve", "reject"]

ACCEPT_TIMEOUT = timedelta(seconds=30)
"""How long a decision waits for a worker to take it (validator passed, handler begun) before the approver is told."""
WORKER_SEEN_FOR_S = 10.0
"""A worker seen polling is not asked about again for this long (a long-lived client: the gateway, the web)."""
COUNT_TIMEOUT = timedelta(minutes=3)
"""How long a taken decision waits for its count (a store away: three tries of the activity) before the approver is told."""


def workflow_id(task_queue: str, plan_id: str) -> str:
    """The workflow id of a plan's approval: its deployment's task queue and the plan digest.

    With a start that fails on a running one and refuses a completed one, a plan never gets a
    second approval run.
    """
    return f"{task_queue}/{plan_id}"


def unavailable(t: TemporalSettings, detail: str) -> WorkflowUnavailable:
    """``workflow_unavailable``, saying what to start."""
    fix = ("start it with `writ serve` (it runs Temporal's dev server), or set WRIT_TEMPORAL_ADDRESS to your cluster"
           if t.embedded else "check that the cluster is up and WRIT_TEMPORAL_* (address, namespace, TLS) are right")
    return WorkflowUnavailable(
        f"cannot reach Temporal at {t.target} (namespace {t.namespace}): {detail}; nothing was counted: {fix}")


def _tls(t: TemporalSettings) -> TLSConfig | bool:
    if not t.tls:
        return False

    def read(path: Any, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            return bytes(path.read_bytes())
        except OSError as e:
            raise ConfigError(f"cannot read the Temporal {what} {path}: {e.strerror}") from None

    return TLSConfig(server_root_ca_cert=read(t.tls_ca, "CA certificate"),
                     client_cert=read(t.tls_cert, "client certificate"),
                     client_private_key=read(t.tls_key, "client key"))


async def connect_client(settings: Settings) -> Client:
    """A Temporal client with Writ's data converter; ``WorkflowUnavailable`` within the connect timeout."""
    t = settings.temporal
    try:
        return await asyncio.wait_for(
            Client.connect(t.target, namespace=t.namespace, tls=_tls(t), data_converter=pydantic_data_converter),
            timeout=t.connect_timeout_s,
        )
    except TimeoutError:
        raise unavailable(t, f"no answer within {t.connect_timeout_s:g} s") from None
    except (RuntimeError, OSError, RPCError) as e:
        raise unavailable(t, str(e).splitlines()[0] if str(e) else type(e).__name__) from None


class ApprovalClient:
    """The approval workflows of one Writ deployment (``settings.temporal``: address, namespace, task queue)."""

    def __init__(self, client: Client, settings: Settings, *, audit: AuditSink | None = None,
                 accept_timeout: timedelta = ACCEPT_TIMEOUT, count_timeout: timedelta = COUNT_TIMEOUT) -> None:
        self.client = client
        self.settings = settings
        self._audit = audit
        self._queue = settings.temporal.task_queue
        self._accept_timeout = accept_timeout
        self._count_timeout = count_timeout
        self._worker_seen = -WORKER_SEEN_FOR_S  # time.monotonic() a worker was last seen polling

    @classmethod
    async def connect(cls, settings: Settings, *, audit: AuditSink | None = None) -> ApprovalClient:
        return cls(await connect_client(settings), settings, audit=audit)

    def workflow_id(self, plan_id: str) -> str:
        return workflow_id(self._queue, plan_id)

    async def ensure_reachable(self) -> None:
        """``WorkflowUnavailable`` unless Temporal answers a health check now (before a plan is stored)."""
        t = self.settings.temporal
        try:
            healthy = await self.client.service_client.check_health(
                timeout=timedelta(seconds=t.connect_timeout_s))
        except (RPCError, RuntimeError) as e:
            raise unavailable(t, str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        if not healthy:
            raise unavailable(t, "its frontend says it is not serving")

    def _handle(self, plan_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(self.workflow_id(plan_id))

    async def start(self, record: PlanRecord) -> bool:
        """Start the plan's approval workflow; False if it has one already (a plan never gets a second run).

        A run that failed (its activities could not reach the stores) may be started again;
        one that completed, or runs, may not (``ALLOW_DUPLICATE_FAILED_ONLY``).
        """
        start = StartApproval(plan_id=record.id, planner=record.planner, title=record.title,
                              expires_at=record.expires_at)
        try:
            await self.client.start_workflow(
                WORKFLOW_NAME, start, id=self.workflow_id(record.id), task_queue=self._queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                # the workflow outlives the plan by its execution; a hard stop a week after expiry
                execution_timeout=record.expires_at - record.created_at + timedelta(days=7),
            )
        except WorkflowAlreadyStartedError:
            return False
        except RPCError as e:
            raise unavailable(self.settings.temporal, e.message) from None
        return True

    async def decide(self, plan_id: str, envelope: bytes, decision: DecisionKind) -> ApprovalCount:
        """Send a signed decision as the ``approve`` or ``reject`` Update; the count it returns.

        ``ApprovalRefused`` (with the workflow's code) when it does not count;
        ``WorkflowUnavailable`` when Temporal cannot take it (nothing counted), or no worker polls
        the task queue (nothing sent), or no worker took it or counted it in time (the message says
        it may still count: Temporal keeps the Update for the next worker).
        """
        handle = self._handle(plan_id)
        await self._ensure_worker(handle, plan_id)
        try:
            result = await self._update(handle, decision, Decision(envelope=envelope.decode()))
        except WorkflowUpdateFailedError as e:
            raise await self._refusal(handle, plan_id, envelope, e) from None
        except RPCError as e:
            ended = await self._ended_state(handle) if e.status == RPCStatusCode.NOT_FOUND else None
            if ended is None:
                raise self._rpc_error(plan_id, e) from None
            if ended == "pending":  # the run failed, was terminated or timed out while the plan waited
                raise WorkflowUnavailable(
                    f"the approval workflow of plan {plan_id[:19]}.. ended while the plan waits for decisions: "
                    "nothing was counted; propose it again to start a new one: writ plan show "
                    f"{plan_id[7:19]} --envelope > plan.signed.json && writ plan submit plan.signed.json",
                    code=reasons.WORKFLOW_MISSING) from None
            # its workflow already ended with the plan (expired, rejected, ...): refused like any late decision
            code = reasons.PLAN_EXPIRED if ended == "expired" else reasons.PLAN_NOT_PENDING
            message = f"plan {plan_id[:19]}.. is {ended}: it takes no more decisions"
            raise await self._audited(handle, plan_id, envelope, code, message) from None
        return result

    async def _update(self, handle: WorkflowHandle[Any, Any], name: DecisionKind, decision: Decision) -> ApprovalCount:
        """The Update's count, each wait bounded: an Update nobody takes would otherwise wait forever."""
        t, fix = self.settings.temporal, "start `writ serve` or `writ worker` for this data directory"
        try:
            update = await asyncio.wait_for(
                handle.start_update(name, decision, wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                                    result_type=ApprovalCount), self._accept_timeout.total_seconds())
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            # Temporal keeps an admitted Update for the next worker: it is not counted now, but may be.
            raise WorkflowUnavailable(
                f"no approval worker took the decision within {self._accept_timeout.total_seconds():g} s "
                f"(task queue {self._queue} at {t.target}): {fix}; it is not counted now, but may still be "
                "counted when a worker starts: see `writ plan show` before deciding again") from None
        try:
            count: ApprovalCount = await asyncio.wait_for(update.result(), self._count_timeout.total_seconds())
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            raise WorkflowUnavailable(
                "the approval workflow took the decision but gave no count within "
                f"{self._count_timeout.total_seconds():g} s (its worker or database may be away); it will be "
                "counted if it verifies: see `writ plan show`", code=reasons.WORKFLOW_FAILED) from None
        return count

    async def _ensure_worker(self, handle: WorkflowHandle[Any, Any], plan_id: str) -> None:
        """``WorkflowUnavailable`` when no worker polls the task queue: an Update sent now would wait for one.

        A plan with no workflow at all is ``workflow_missing`` first; a worker that is starting
        polls within a moment: it is given up to the connect timeout.
        """
        t, now = self.settings.temporal, time.monotonic()
        if now - self._worker_seen < WORKER_SEEN_FOR_S:
            return
        deadline = now + t.connect_timeout_s
        polling = await self._polling()
        if polling is not False:
            return  # a worker polls, or this client may not ask (a restricted cluster role): the waits are bounded
        try:
            await handle.describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                raise self._rpc_error(plan_id, e) from None
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            if await self._polling() is not False:
                return
        raise WorkflowUnavailable(
            f"no approval worker polls task queue {self._queue} at {t.target}: start `writ serve` or "
            "`writ worker` for this data directory; nothing was sent or counted")

    async def _polling(self) -> bool | None:
        """Whether a worker polls the task queue; None if Temporal does not let this client ask."""
        request = DescribeTaskQueueRequest(namespace=self.client.namespace, task_queue=TaskQueue(name=self._queue),
                                           task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
        try:
            described = await self.client.workflow_service.describe_task_queue(
                request, timeout=timedelta(seconds=self.settings.temporal.connect_timeout_s))
        except RPCError:
            return None
        if described.pollers:
            self._worker_seen = time.monotonic()
        return bool(described.pollers)

    async def _ended_state(self, handle: WorkflowHandle[Any, Any]) -> str | None:
        """The plan's state as its workflow ended, if it ended; None if there is no such workflow."""
        try:
            desc = await handle.describe()
            if desc.status == WorkflowExecutionStatus.RUNNING:
                return None
            status: ApprovalStatus = await handle.query("status", result_type=ApprovalStatus)
        except RPCError:
            return None
        return status.state

    async def _refusal(self, handle: WorkflowHandle[Any, Any], plan_id: str, envelope: bytes,
                       e: WorkflowUpdateFailedError) -> ApprovalRefused | WorkflowUnavailable:
        cause = e.cause
        details = cause.details if isinstance(cause, ApplicationError) else ()
        info = details[0] if details and isinstance(details[0], dict) else {}
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or e)
        if not isinstance(cause, ApplicationError) or cause.type != "refused":
            return WorkflowUnavailable(f"the approval workflow could not count it: {message}",
                                       code=reasons.WORKFLOW_FAILED)
        code = str(info.get("code") or reasons.APPROVAL_REFUSED)
        if info.get("stage") == "store":  # the store audited it
            return ApprovalRefused(message, code=code)
        return await self._audited(handle, plan_id, envelope, code, message)

    async def _audited(self, handle: WorkflowHandle[Any, Any], plan_id: str, envelope: bytes, code: str,
                       message: str) -> ApprovalRefused:
        """A refusal before the store saw the decision, audited here (``approval_refused``, stage ``workflow``)."""
        if self._audit is not None:
            run_id = ""
            try:
                run_id = (await handle.describe()).run_id
            except RPCError:
                pass
            self._audit.append("approval_refused", {
                "plan_id": plan_id, "code": code, "reason": message, "stage": "workflow",
                "envelope_sha256": sha256_digest(envelope), "workflow_id": handle.id, "run_id": run_id})
        return ApprovalRefused(message, code=code)

    def _rpc_error(self, plan_id: str, e: RPCError) -> WorkflowUnavailable:
        if e.status == RPCStatusCode.NOT_FOUND:
            return WorkflowUnavailable(
                f"plan {plan_id} has no approval workflow on {self.settings.temporal.target} "
                f"(task queue {self._queue}): it takes no decisions; propose it again to start one",
                code=reasons.WORKFLOW_MISSING)
        return unavailable(self.settings.temporal, e.message)

    async def plan_finished(self, plan_id: str, outcome: str, *, by: str = "") -> None:
        """Tell the workflow execution ended (a hint: it reads the store before it records anything)."""
        try:
            await self._handle(plan_id).signal("plan_finished", PlanFinished(outcome=outcome, by=by))
        except RPCError as e:
            raise self._rpc_error(plan_id, e) from None

    async def status(self, plan_id: str) -> ApprovalStatus:
        """The ``status`` query: state, requirement, decisions, missing, expiry, who was notified."""
        try:
            return await self._handle(plan_id).query("status", result_type=ApprovalStatus)  # type: ignore[no-any-return]
        except RPCError as e:
            raise self._rpc_error(plan_id, e) from None

    async def outcome(self, plan_id: str) -> WorkflowOutcome:
        """Wait for the plan's workflow to end; what it returned."""
        handle = self.client.get_workflow_handle(self.workflow_id(plan_id), result_type=WorkflowOutcome)
        try:
            outcome: WorkflowOutcome = await handle.result()
            return outcome
        except RPCError as e:
            raise self._rpc_error(plan_id, e) from None

    async def running(self, plan_id: str) -> bool:
        """Whether the plan's workflow runs now."""
        try:
            desc = await self._handle(plan_id).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return False
            raise unavailable(self.settings.temporal, e.message) from None
        return desc.status == WorkflowExecutionStatus.RUNNING
