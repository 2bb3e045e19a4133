"""``writ demo --browser``: the demo's approvers approve in Chromium, through the web form, with keys it made.

    async with browser_approvals(settings, stores, client) as approve:    # what run_demo(browser=...) enters
        shown = await approve(plan_id, "alice")     # '1/2 approvals (alice); missing: 1 more approval'

The web form is served on a free port of 127.0.0.1 in the demo's own event loop (as ``writ
serve`` serves it), on the demo's stores and approval client. Debian's Chromium (``/usr/bin/
chromium``, or ``WRIT_DEMO_CHROMIUM``) is driven by Playwright (the test extra): for each approver
one browser context opens a real invite link, makes its key with WebCrypto, logs in by signing
a challenge, then signs and sends each decision from the plan's page, whose script first checks
the plan digest itself. Missing Chromium or Playwright is ``demo_prerequisites``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from writ.engine.core import reasons
from writ.engine.core.errors import WritError
from writ.engine.core.settings import Settings
from writ.engine.wiring.services import Services
from writ.workflows.approval.client import ApprovalClient

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000


def chromium_path() -> str:
    """Chromium's executable; ``demo_prerequisites`` naming how to install what is missing."""
    path = os.environ.get("WRIT_DEMO_CHROMIUM", "/usr/bin/chromium")
    problems = []
    if not Path(path).exists():
        problems.append(f"{path} is missing: apt-get install chromium chromium-driver (or set WRIT_DEMO_CHROMIUM)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        problems.append("playwright is not installed: pip install playwright (the test extra)")
    if problems:
        raise WritError("writ demo --browser cannot run: " + "; ".join(problems), code=reasons.DEMO_PREREQUISITES)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(settings: Settings, stores: Services, client: ApprovalClient) -> tuple[Any, asyncio.Task[None], str]:
    """The web form on a free loopback port, in this event loop: (the server, its task, its URL)."""
    import uvicorn

    from writ.engine.web.app import create_app
    from writ.engine.web.context import attach_approvals

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    served = stores.settings.model_copy(update={"public_url": url})
    app = create_app(served, services=stores, store=stores.store)
    attach_approvals(app, client)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        task.result()  # what stopped it
    return server, task, url


async def _log_in(browser: Any, stores: Services, url: str, who: str) -> Any:
    """A browser context of ``who``: invite opened, key made and enrolled, logged in; its page."""
    from writ.engine.web.invites import InviteStore, invite_link

    _, token = InviteStore(stores.store, stores.trust, audit=stores.audit).issue(who, hours=1)
    page = await (await browser.new_context()).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(invite_link(url, token))
    await page.click("#enrol")
    await page.wait_for_selector("#to-login")
    await page.goto(f"{url}/login")
    await page.wait_for_selector("#login:enabled")
    await page.select_option("#login-principal", who)
    await page.click("#login")
    await page.wait_for_url(f"{url}/")
    return page


@asynccontextmanager
async def browser_approvals(settings: Settings, stores: Services,
                            client: ApprovalClient) -> AsyncIterator[Callable[[str, str], Awaitable[str]]]:
    """Serve the form and drive Chromium for the block; yields approve(plan_id, who) -> the count shown."""
    from playwright.async_api import async_playwright

    executable = chromium_path()
    server, task, url = await _serve(settings, stores, client)
    pages: dict[str, Any] = {}
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)

            async def approve(plan_id: str, who: str) -> str:
                if who not in pages:
                    pages[who] = await _log_in(browser, stores, url, who)
                page = pages[who]
                await page.goto(f"{url}/plans/{plan_id}")
                await page.wait_for_selector('#signing[data-check="ok"]')
                await page.fill("#comment", "read every step in the browser")
                await page.click("#approve")
                await page.wait_for_selector("#count-summary, #refusal-code")
                if await page.query_selector("#refusal-code"):
                    raise WritError(f"the web form refused {who}'s approval: {await page.inner_text('main')}",
                                    code=reasons.DEMO_FAILED)
                return str(await page.inner_text("#count-summary"))

            try:
                yield approve
            finally:
                await browser.close()
    finally:
        server.should_exit = True
        await task
