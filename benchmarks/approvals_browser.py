"""Benchmark: an approval through the web form in Chromium, from the click on Approve to the count on the page.

    python benchmarks/approvals_browser.py [--n 20] [--warmup 3]      # or as part of benchmarks/approvals.py

What ``writ serve`` runs (the app and the approval worker in one event loop, on the embedded dev
server and Writ's SQLite database) serves a fresh data directory; Debian's Chromium, driven by
Playwright, enrols alice by a real invite link (a non-extractable WebCrypto key) and logs in.
Per plan, untimed: the plan is stored, its workflow started and settled, its page opened, and
the page's script has checked the signed plan (``data-check="ok"``). Timed (``form_submit_to_count``):
the click on Approve -> the script signs the statement (RFC 8785, Ed25519 in WebCrypto) -> the
form is posted -> the server checks it and sends the workflow Update -> the page with the
workflow's count is rendered and the count element is there. ``page_ready`` times opening a
plan's page until its script has fetched the envelope, checked its digest and enabled the form.
Prints one JSON document on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PEOPLE = {"plan-bot": "planner", "alice": "approver", "bob": "approver"}
DEF = "sha256:" + "ab" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"samples": len(samples), "p50_ms": round(statistics.median(samples), 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "mean_ms": round(statistics.fmean(samples), 1), "max_ms": round(max(samples), 1)}


class Server:
    """The app and the approval worker in a thread (their own event loop), as ``writ serve`` runs them."""

    def __init__(self, services: Any, port: int) -> None:
        self.services, self.port = services, port
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: Any = None
        self.server: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self.error = e
            self.ready.set()

    async def _main(self) -> None:
        import uvicorn

        from writ.engine.web.app import create_app
        from writ.engine.web.context import attach_approvals
        from writ.workflows.approval.client import ApprovalClient
        from writ.workflows.approval.worker import approval_worker

        s = self.services
        app = create_app(s.settings, services=s, store=s.store)
        self.client = await ApprovalClient.connect(s.settings, audit=s.audit)
        attach_approvals(app, self.client)
        self.loop = asyncio.get_running_loop()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        async with approval_worker(self.client.client, s):
            serving = asyncio.create_task(self.server.serve())
            while not self.server.started and not serving.done():
                await asyncio.sleep(0.02)
            self.ready.set()
            await serving

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None:
            raise self.error

    def call(self, coro: Any) -> Any:
        assert self.loop is not None  # noqa: S101 - set before ready
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(30)


def _settled(services: Any, plan_id: str) -> None:
    """Until the plan's workflow has opened it and waits (its notification_skipped entry is written)."""
    for _ in range(600):
        if any(e.kind == "workflow" and e.payload.get("plan_id") == plan_id and e.payload.get("event") ==
               "notification_skipped" for e in services.audit.tail(50)):
            return
        time.sleep(0.05)
    raise SystemExit(f"the workflow of {plan_id} did not settle within 30 s")


def enrol_and_log_in(page: Any, services: Any) -> None:
    """The browser of alice: a real invite link, a WebCrypto key made and enrolled, a signed login."""
    from writ.engine.web.invites import InviteStore, invite_link

    url = services.settings.public_url
    _, token = InviteStore(services.store, services.trust, audit=services.audit).issue("alice")
    page.goto(invite_link(url, token))
    page.click("#enrol")
    page.wait_for_selector("#to-login")
    page.goto(f"{url}/login")
    page.wait_for_selector("#login:enabled")
    page.click("#login")
    page.wait_for_url(f"{url}/")


def approve_one(page: Any, server: Server, planner: Any, i: int) -> tuple[float, float]:
    """A new plan's page opened and checked, then Approve clicked: (page ready ms, click -> count ms)."""
    from writ.plans.models import Plan, PlanStep
    from writ.plans.statements import sign_plan

    services = server.services
    plan = Plan.new(title=f"bench {i}", rationale="benchmark", planner="plan-bot", ttl=timedelta(hours=24),
                    steps=[PlanStep(server="fs", tool="write_file", definition_digest=DEF,
                                    args={"path": f"/srv/notes-{i}.txt", "content": "x"})])
    record = services.plans.submit(sign_plan(plan, planner).to_json())
    server.call(server.client.start(record))
    _settled(services, record.id)
    began = time.perf_counter()
    page.goto(f"{services.settings.public_url}/plans/{record.id}")
    page.wait_for_selector('#signing[data-check="ok"]')
    opened = time.perf_counter()
    page.click("#approve")
    page.wait_for_selector("#count-summary")
    done = time.perf_counter()
    shown = page.inner_text("#count-summary")
    if shown != "1/2 approvals (alice); missing: 1 more approval":
        raise SystemExit(f"plan {record.id}: the page showed {shown!r}")
    return (opened - began) * 1e3, (done - opened) * 1e3


def measure(tmp: Path, n: int, warmup: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from writ.engine.core.settings import Settings
    from writ.engine.wiring.datadir import init_data_dir
    from writ.engine.wiring.services import open_services
    from writ.plans.keys import PrivateKey
    from writ.workflows.approval.devserver import DevServer

    (tmp / "temporal").mkdir()
    port = free_port()
    with DevServer(tmp / "temporal", port=free_port()) as dev:
        settings = Settings(home=tmp / "writ-home", temporal_address=dev.address, public_url=f"http://127.0.0.1:{port}",
                            temporal_task_queue=f"writ-bench-{uuid.uuid4().hex[:8]}")
        init_data_dir(settings)
        with open_services(settings, create=False) as services:
            planner = PrivateKey.generate()
            for name, role in PEOPLE.items():
                services.trust.add_principal(name, role)
            services.trust.add_key("plan-bot", planner.public_key)
            server = Server(services, port)
            server.start()
            try:
                with sync_playwright() as p:
                    chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    page = chromium.new_page()
                    enrol_and_log_in(page, services)
                    print(f"chromium enrolled and logged in; {warmup} + {n} approvals ...", file=sys.stderr)
                    timed = [approve_one(page, server, planner, i) for i in range(warmup + n)][warmup:]
                    chromium.close()
            finally:
                server.stop()
    return {"form_submit_to_count": summary([t[1] for t in timed]), "page_ready": summary([t[0] for t in timed])}


def browser_results(n: int, warmup: int) -> dict[str, Any]:
    """The browser path's figures, or why it was skipped (no Chromium, no Playwright)."""
    if not Path(CHROMIUM).exists():
        return {"skipped": f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)"}
    try:
        import playwright  # noqa: F401
    except ImportError:
        return {"skipped": "playwright is not installed (pip install playwright)"}
    with tempfile.TemporaryDirectory(prefix="writ-bench-browser-") as d:
        results = measure(Path(d), n, warmup)
    return {"approvals": n, "warmup": warmup, "chromium": CHROMIUM, **results,
            "setup": "writ serve's app and worker in one process (uvicorn, embedded dev server, SQLite); Debian "
                     "Chromium headless via Playwright on loopback; one browser, one approver (alice), the first "
                     "decision of each plan; the page already open and checked"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="approvals timed")
    parser.add_argument("--warmup", type=int, default=3, help="approvals run first, untimed")
    args = parser.parse_args()
    load_start = round(os.getloadavg()[0], 2)
    results = browser_results(args.n, args.warmup)
    print(json.dumps({"benchmark": "approvals_browser", "cpus": os.cpu_count(),
                      "loadavg_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)}, **results},
                     indent=2), flush=True)


if __name__ == "__main__":
    main()
