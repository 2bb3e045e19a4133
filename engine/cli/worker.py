"""``writ worker``: the approval workflow's worker alone, for production beside a Temporal cluster.

    $ WRIT_TEMPORAL_ADDRESS=temporal.internal:7233 writ worker --data-dir /srv/writ
    writ: worker on task queue writ-approval at temporal.internal:7233 (namespace default)

It polls the deployment's task queue until SIGINT or SIGTERM, then finishes the activities it
holds and stops. Any number of workers (and ``writ serve`` processes) may share one queue.
"""

from __future__ import annotations

import asyncio
import signal

import click

from writ.engine.cli.common import writ_command


@click.command("worker")
@writ_command
def worker() -> None:
    """Run the approval workflow's worker (no HTTP, no dev server) until SIGINT or SIGTERM.

    Temporal is WRIT_TEMPORAL_ADDRESS (default: the dev server `writ serve` runs on
    127.0.0.1:WRIT_TEMPORAL_PORT), namespace WRIT_TEMPORAL_NAMESPACE, task queue
    WRIT_TEMPORAL_TASK_QUEUE; TLS with WRIT_TEMPORAL_TLS=1 and WRIT_TEMPORAL_TLS_CA/_CERT/_KEY.
    If Temporal cannot be reached: error[workflow_unavailable] and exit 1.

    \b
    Example:
      WRIT_TEMPORAL_ADDRESS=temporal.internal:7233 writ worker --data-dir /srv/writ
    """
    from writ.engine.core.settings import Settings
    from writ.workflows.approval.worker import run_worker

    settings: Settings = click.get_current_context().obj
    t = settings.temporal

    async def go() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(run_worker(settings, stop=stop, ready=ready))
        done, _ = await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises why it could not start
            return
        click.echo(f"writ: worker on task queue {t.task_queue} at {t.target} (namespace {t.namespace})", err=True)
        await task
        click.echo("writ: worker stopped", err=True)

    asyncio.run(go())
