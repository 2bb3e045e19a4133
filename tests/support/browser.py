"""Real parts for the approval form's tests: Writ's app served by uvicorn with the approval worker, and Chromium.

    with approval_world(tmp_path, temporal_env, public_url=url) as world, Served(world, port) as served:
        link = invite(world, "alice")                        # `writ approvers invite alice`, as an admin runs it
        page = browser.new_context().new_page()
        enrol(page, link); login(page, served.url, "alice")
        approve(page, served.url, plan_id)                   # the count the page shows

``Served`` runs what ``writ serve`` runs (the app and the approval worker in one event loop) in a
thread of the test process, on the world's database and the session's Temporal dev server.
Chromium is Debian's (``/usr/bin/chromium``) driven by Playwright: it cannot download browsers here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.approvals import World

from writ.engine.cli.main import main
from writ.engine.web.app import create_app
from writ.engine.web.context import attach_approvals
from writ.engine.web.security import WebSettings
from writ.plans.records import PlanRecord
from writ.workflows.approval.client import ApprovalClient
from writ.workflows.approval.worker import approval_worker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
TIMEOUT_MS = 30_000


def require_chromium() -> None:
    """Skip (fail in CI) when Chromium or Playwright is missing: `.ci/run` installs both."""
    problems = []
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        problems.append(f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        problems.append("playwright is not installed (pip install playwright)")
    if problems:
        if os.environ.get("CI"):
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))


class Served:
    """The app and the approval worker of ``world`` on 127.0.0.1:``port``, in a thread, for the block."""

    def __init__(self, world: World, port: int, web: WebSettings | None = None) -> None:
        self.world = world
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.web = web
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.client: ApprovalClient | None = None
        self._thread = threading.Thread(target=self._run, name="writ-test-serve", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - reported by __enter__
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        import uvicorn

        w = self.world
        app = create_app(w.settings, services=w.services, store=w.services.store, web=self.web)
        client = self.client = await ApprovalClient.connect(w.settings, audit=w.services.audit)
        self._loop = asyncio.get_running_loop()
        attach_approvals(app, client)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        async with approval_worker(client.client, w.services):
            serving = asyncio.create_task(self._server.serve())
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.02)
            self._ready.set()
            await serving

    def call(self, coro: Any) -> Any:
        """Run a coroutine (of ``self.client``) in the serving event loop; its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def submit(self, title: str = "Write notes.txt", **kwargs: Any) -> PlanRecord:
        """A plan stored and its approval workflow started, as `writ plan submit` does."""
        return self.start(self.world.submit(title, **kwargs))

    def start(self, record: PlanRecord) -> PlanRecord:
        """Start the approval workflow of a stored plan."""
        assert self.client is not None
        self.call(self.client.start(record))
        return record

    def __enter__(self) -> Served:
        self._thread.start()
        if not self._ready.wait(60):
            raise TimeoutError("the app did not start within 60 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)


def invite(world: World, name: str, *extra: str) -> str:
    """The link `writ approvers invite NAME` prints for the world's data directory."""
    env = {"WRIT_HOME": str(world.settings.home), "WRIT_PUBLIC_URL": world.settings.public_url}
    result = CliRunner().invoke(main, ["approvers", "invite", name, *extra], env=env)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def enrol(page: Any, link: str) -> None:
    """Open the invite link and let the page make and enrol its key."""
    page.goto(link)
    page.click("#enrol")
    page.wait_for_selector("#to-login", timeout=TIMEOUT_MS)


def login(page: Any, url: str, principal: str) -> None:
    """Log in on /login with the key this browser holds for ``principal``."""
    page.goto(f"{url}/login")
    page.wait_for_selector("#login:enabled", timeout=TIMEOUT_MS)
    page.select_option("#login-principal", principal)
    page.click("#login")
    page.wait_for_url(f"{url}/", timeout=TIMEOUT_MS)


def open_plan(page: Any, url: str, plan_id: str, check: str = "ok") -> None:
    """The plan's page, once its script has checked the signed plan (``check``: ok, failed, no-key)."""
    page.goto(f"{url}/plans/{plan_id}")
    page.wait_for_selector(f'#signing[data-check="{check}"]', timeout=TIMEOUT_MS)


def decide(page: Any, url: str, plan_id: str, decision: str = "approve", comment: str = "") -> str:
    """Open the plan, sign and send the decision; the count the page shows after it."""
    open_plan(page, url, plan_id)
    if comment:
        page.fill("#comment", comment)
    page.click(f"#{decision}")
    page.wait_for_selector("#count-summary, #refusal-code", timeout=TIMEOUT_MS)
    if page.query_selector("#refusal-code"):
        raise AssertionError(page.inner_text("main"))
    return str(page.inner_text("#count-summary"))
