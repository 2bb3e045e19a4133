"""The CLI's way to the approval workflows: one event loop per command, the data directory's audit log.

    count = call_workflow(w, lambda approvals: approvals.decide(plan_id, envelope, "approve"))

Temporal unreachable is ``error[workflow_unavailable]`` with a sentence saying what to start;
nothing was counted or stored in the meantime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from writ.engine.wiring.services import Services
    from writ.plans.records import PlanRecord
    from writ.workflows.approval.client import ApprovalClient

T = TypeVar("T")


def call_workflow(w: Services, ask: Callable[[ApprovalClient], Awaitable[T]]) -> T:
    """Connect to Temporal (``w.settings.temporal``) and run ``ask`` with the approval client."""
    from writ.workflows.approval.client import ApprovalClient

    async def go() -> T:
        client = await ApprovalClient.connect(w.settings, audit=w.audit)
        return await ask(client)

    return asyncio.run(go())


def submit_and_start(w: Services, raw: bytes) -> PlanRecord:
    """Store a signed plan and start its approval workflow.

    Temporal is reached first, so a plan is stored only when its workflow can start
    (submitting the same envelope again starts a missing one).
    """
    from writ.workflows.approval.client import ApprovalClient

    async def go() -> PlanRecord:
        client = await ApprovalClient.connect(w.settings, audit=w.audit)
        record = w.plans.submit(raw)
        await client.start(record)
        return record

    return asyncio.run(go())
