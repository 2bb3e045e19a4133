"""The gateway's way to the approval workflows: a plan is stored only when its workflow can start.

    link = ApprovalLink(stores)                  # one per gateway process (HTTP sessions share it)
    record = await link.submit(envelope_bytes)   # workflow_unavailable before anything is stored
    link.finished(plan_id, "completed", by="exec-bot")   # tell the workflow, in the background

The Temporal client connects on first use, in the gateway's event loop, and is kept (it
reconnects by itself). Telling a workflow that execution ended is best effort: the workflow
reads the plan's state from the store when told, and on its own every hour.
"""

from __future__ import annotations

import asyncio
import logging

from writ.engine.core.errors import WritError
from writ.engine.wiring.services import Services
from writ.plans.records import PlanRecord
from writ.workflows.approval.client import ApprovalClient

__all__ = ["ApprovalLink"]

log = logging.getLogger(__name__)


class ApprovalLink:
    """Start a stored plan's approval workflow; tell it when execution ends."""

    def __init__(self, stores: Services) -> None:
        self.stores = stores
        self._client: ApprovalClient | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def client(self) -> ApprovalClient:
        """The connected client; ``WorkflowUnavailable`` (not remembered: the next call tries again)."""
        if self._client is None:
            self._client = await ApprovalClient.connect(self.stores.settings, audit=self.stores.audit)
        return self._client

    async def submit(self, envelope: bytes) -> PlanRecord:
        """Store a signed plan and start its workflow. Temporal is reached first: no workflow, no plan.

        If starting fails after the plan was stored, proposing the same plan again starts it.
        """
        client = await self.client()
        await client.ensure_reachable()  # a client connected before may have lost its server since
        record = self.stores.plans.submit(envelope)
        await client.start(record)
        return record

    def finished(self, plan_id: str, outcome: str, *, by: str) -> None:
        """Signal ``plan_finished`` in the background; a failure is logged (the workflow polls the store)."""
        task = asyncio.get_running_loop().create_task(self._signal(plan_id, outcome, by))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _signal(self, plan_id: str, outcome: str, by: str) -> None:
        try:
            await (await self.client()).plan_finished(plan_id, outcome, by=by)
        except WritError as e:
            log.warning("the approval workflow of plan %s was not told it ended (%s): %s; it reads the "
                        "plan's state within the hour", plan_id, e.code, e.message)
