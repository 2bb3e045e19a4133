"""A worker for one Writ deployment: the approval workflow and its activities on the deployment's task queue.

    worker = approval_worker(client, services)           # in `writ serve`, beside the HTTP app
    async with worker:                                     # polls until the block ends
        ...
    await run_worker(settings, stop=event)                 # `writ worker`: connect, run until stopped

Activities are synchronous (the stores are) and run in a thread pool; the workflow runs in
Temporal's sandbox. Any number of workers (several ``writ serve`` or ``writ worker``
processes on one database) may poll one task queue: Temporal hands each task to one of them.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from writ.attestations.instance_key import load_instance_key
from writ.engine.core.errors import ConfigError
from writ.engine.core.settings import Settings, shared_settings
from writ.engine.wiring.services import Services, open_services
from writ.workflows.approval.activities import ApprovalActivities
from writ.workflows.approval.client import connect_client
from writ.workflows.approval.workflows import PlanApproval

__all__ = ["approval_worker", "run_worker"]

ACTIVITY_THREADS = 8
"""Activities taken from the task queue at once: the stores, the audit log, notifications."""
DECISION_THREADS = 4
"""Threads of their own for the decisions' local activity: notices stuck on a hung channel never hold a decision."""


def approval_worker(client: Client, services: Services) -> Worker:
    """A worker on ``services``' task queue, its activities bound to ``services``' stores."""
    try:
        key = load_instance_key(services.settings.home)
    except ConfigError:
        key = None  # webhooks then fail with instance_key_missing, audited; approvals are unaffected
    activities = ApprovalActivities(services, instance_key=key)
    return Worker(
        client,
        task_queue=services.settings.temporal.task_queue,
        workflows=[PlanApproval],
        activities=activities.all(),
        activity_executor=ThreadPoolExecutor(ACTIVITY_THREADS + DECISION_THREADS, thread_name_prefix="writ-activity"),
        max_concurrent_activities=ACTIVITY_THREADS,
        max_concurrent_local_activities=DECISION_THREADS,
    )


async def run_worker(settings: Settings, *, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Connect, and run a worker on ``settings``' data directory until ``stop`` is set.

    The data directory's recorded settings (its policy directory and database) apply, as for every command.
    """
    settings = shared_settings(settings)
    client = await connect_client(settings)
    with open_services(settings, create=False) as services:
        async with approval_worker(client, services):
            if ready is not None:
                ready.set()
            await stop.wait()
