"""The approval form in a real browser: Chromium (Debian's) driven by Playwright, on a served Writ.

Each test has its own data directory (writ init, the people of ``support.approvals``), Writ's app
and approval worker served by uvicorn as ``writ serve`` runs them, the session's Temporal dev
server on a task queue of its own, and invites printed by the real ``writ approvers invite``.
Every scenario of issue 11 is one test here; the statement's canonical bytes are compared with
Python's in tests/e2e/test_browser_statement.py. The plan page's screenshot is kept under
build/screenshots/ (a CI artifact).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.approvals import World, approval_world
from support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    TIMEOUT_MS,
    Served,
    decide,
    enrol,
    invite,
    login,
    open_plan,
    require_chromium,
)
from support.gateway import free_port

from writ.engine.cli.main import main
from writ.engine.core.timeutil import utc_now
from writ.engine.web.invites import InviteStore
from writ.plans.contents import CapturedContent, ContentStore
from writ.plans.keys import PublicKey

pytestmark = pytest.mark.temporal


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def served(tmp_path: Path, temporal_env: str) -> Iterator[Served]:
    port = free_port()
    with approval_world(tmp_path, temporal_env, public_url=f"http://127.0.0.1:{port}") as world, \
            Served(world, port) as s:
        yield s


class Person:
    """One approver's browser: its own context (cookies, IndexedDB), one page, and the dialogs it saw."""

    def __init__(self, browser: Any, served: Served, name: str, *, log_in: bool = True) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.dialogs: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.name = name
        enrol(self.page, invite(served.world, name))
        if log_in:
            login(self.page, served.url, name)


def state(world: World, plan_id: str) -> str:
    return world.services.plans.get(plan_id).state.value


def kinds(world: World, kind: str) -> list[dict[str, Any]]:
    return world.audit(kind)


def test_invite_enrol_login_see_the_waiting_plan_and_approve(browser: Any, served: Served) -> None:
    record = served.submit("Update the runbook")
    alice = Person(browser, served, "alice")
    page = alice.page
    assert page.inner_text("h1") == "Plans waiting for you"
    page.click("text=Update the runbook")
    page.wait_for_selector('#signing[data-check="ok"]')
    assert page.inner_text("#signed-digest") == record.id  # computed by the browser from the signed payload
    page.fill("#comment", "checked the steps")
    page.click("#approve")
    page.wait_for_selector("#count-summary")
    assert page.inner_text("#count-summary") == "1/2 approvals (alice); missing: 1 more approval"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "plan-page.png"), full_page=True)

    world = served.world
    [added] = [e for e in kinds(world, "trust_event") if e["event"] == "key_added" and e["principal"] == "alice"
               and e["key_id"] != world.keys["alice"].key_id]
    assert {e["event"] for e in kinds(world, "approver_invite")} == {"issued", "redeemed"}
    assert [e["event"] for e in kinds(world, "web_session")] == ["login"]
    [approval] = kinds(world, "approval")
    assert approval["approver"] == "alice" and approval["key_id"] == added["key_id"] and approval["workflow_id"]
    assert world.services.plans.approvals(record.id)[0].comment() == "checked the steps"
    page.goto(served.url + "/")
    assert page.inner_text("#nothing-waiting").startswith("Nothing waits for you")
    assert alice.dialogs == []


def test_a_second_approver_in_another_browser_completes_the_quorum(browser: Any, served: Served) -> None:
    record = served.submit("Rotate the logs")
    alice, bob = Person(browser, served, "alice"), Person(browser, served, "bob")
    assert decide(alice.page, served.url, record.id) == "1/2 approvals (alice); missing: 1 more approval"
    assert decide(bob.page, served.url, record.id) == "2/2 approvals (alice, bob); approved"
    assert state(served.world, record.id) == "approved"
    alice.page.goto(f"{served.url}/plans/{record.id}")
    assert alice.page.inner_text("#plan-state") == "approved"
    assert [r.inner_text() for r in alice.page.query_selector_all("#decisions tbody td:first-child")] == ["alice", "bob"]


def test_a_rejection_ends_the_plan(browser: Any, served: Served) -> None:
    record = served.submit("Delete the cache")
    bob = Person(browser, served, "bob")
    assert decide(bob.page, served.url, record.id, "reject", comment="too broad") == "rejected by bob"
    assert state(served.world, record.id) == "rejected"
    alice = Person(browser, served, "alice")
    alice.page.goto(f"{served.url}/plans/{record.id}")
    assert alice.page.inner_text("#plan-state") == "rejected"
    assert alice.page.inner_text("#cannot-decide").startswith("plan_not_pending")


def test_the_plans_author_is_refused(browser: Any, served: Served) -> None:
    """plan-bot wrote the plan: it gets no invite, an invite written into the database enrols nothing, and a
    logged-in approver's browser cannot send a decision in the author's name."""
    world = served.world
    record = served.submit("Ship it")
    result = CliRunner().invoke(main, ["approvers", "invite", "plan-bot"], env={"WRIT_HOME": str(world.settings.home)})
    assert result.exit_code == 1 and "error[invite_role_forbidden]" in result.output

    store = InviteStore(world.services.store, world.services.trust, audit=world.services.audit)
    _, token = store.issue("alice")
    with world.services.store.connect(write=True) as conn:  # the row made to name the planner instead
        from sqlalchemy import text

        conn.execute(text("UPDATE approver_invites SET principal = 'plan-bot' WHERE redeemed_at IS NULL"))
        conn.commit()
    keys_before = len(world.services.trust.keys("plan-bot"))
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{served.url}/enrol/{token}")
    page.click("#enrol")
    page.wait_for_selector("#enrol-status.refusal")
    assert "403 invite_role_forbidden" in page.inner_text("#enrol-status")
    assert len(world.services.trust.keys("plan-bot")) == keys_before

    alice = Person(browser, served, "alice")
    open_plan(alice.page, served.url, record.id)
    alice.page.evaluate("""() => { const s = document.getElementById('signing'); s.dataset.approver = 'plan-bot'; }""")
    alice.page.click("#approve")
    alice.page.wait_for_selector("#refusal-code")
    assert alice.page.inner_text("#refusal-code") == "approver_mismatch"
    assert world.services.plans.approvals(record.id) == []


def test_an_expired_plan_cannot_be_approved(browser: Any, served: Served) -> None:
    record = served.submit("Quick fix", ttl=timedelta(seconds=4))
    alice = Person(browser, served, "alice")
    open_plan(alice.page, served.url, record.id)  # before it expires: the form is ready
    while state(served.world, record.id) != "expired":  # the workflow's expiry timer moves it
        alice.page.wait_for_timeout(200)
    with alice.page.expect_response(lambda r: r.request.method == "POST") as answer:
        alice.page.click("#approve")
    alice.page.wait_for_selector("#refusal-code")
    assert answer.value.status == 409 and alice.page.inner_text("#refusal-code") == "plan_expired"
    assert served.world.services.plans.approvals(record.id) == []
    alice.page.goto(f"{served.url}/plans/{record.id}")
    assert alice.page.inner_text("#cannot-decide").startswith("plan_expired")


def test_an_invite_link_used_twice_or_after_expiry_is_refused(browser: Any, served: Served) -> None:
    world = served.world
    link = invite(world, "alice")
    first = browser.new_context().new_page()
    enrol(first, link)
    second = browser.new_context().new_page()
    response = second.goto(link)
    assert response.status == 410 and second.inner_text("#refusal-code") == "invite_used"

    store = InviteStore(world.services.store, world.services.trust, audit=world.services.audit)
    _, token = store.issue("bob", hours=1, now=utc_now() - timedelta(hours=2))
    response = second.goto(f"{served.url}/enrol/{token}")
    assert response.status == 410 and second.inner_text("#refusal-code") == "invite_expired"
    response = second.goto(f"{served.url}/enrol/not-a-token")
    assert response.status == 404 and second.inner_text("#refusal-code") == "invite_not_found"
    assert len([k for k in world.services.trust.keys("bob")]) == 1  # only the test's CLI key


def test_html_and_script_in_a_plan_render_as_text(browser: Any, served: Served) -> None:
    title = "<script>window.pwned = 1; alert('title')</script><b>bold?</b>"
    content = "</code></pre><img src=x onerror=window.pwned=2;alert('args')><svg onload=alert(3)>"
    record = served.submit(title)  # World.submit writes the title as the file's content too
    alice = Person(browser, served, "alice")
    page = alice.page
    open_plan(page, served.url, record.id)
    assert page.inner_text("#plan-title") == title
    assert title in page.inner_text(".args")
    assert title in page.inner_text("#signed-steps")  # rendered by the page's script from the signed bytes
    assert page.evaluate("() => window.pwned") is None
    assert page.evaluate("() => [...document.scripts].map(s => s.src)") == [f"{served.url}/static/writ.js"]
    assert page.query_selector_all("main b, main img, main svg") == []
    other = served.submit(content)  # and markup that closes the page's own <pre><code>
    open_plan(page, served.url, other.id)
    assert content in page.inner_text(".args") and page.query_selector_all("main img, main svg") == []
    assert page.evaluate("() => window.pwned") is None
    assert alice.dialogs == []


class _Attacker(http.server.BaseHTTPRequestHandler):
    """A page of another origin (another port of 127.0.0.1: the same site) that posts the decision form."""

    target = ""
    csrf = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = (f'<form id="f" method="post" action="{self.target}">'
                f'<input name="csrf_token" value="{self.csrf}"><input name="decision" value="approve">'
                '<input name="envelope" value="x"></form><script>document.getElementById("f").submit()</script>')
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_a_post_from_another_origin_or_without_the_csrf_token_is_refused(browser: Any, served: Served) -> None:
    record = served.submit("Harmless")
    alice = Person(browser, served, "alice")
    page = alice.page
    csrf = next(c["value"] for c in alice.context.cookies() if c["name"] == "writ_csrf")
    _Attacker.target, _Attacker.csrf = f"{served.url}/plans/{record.id}/decision", csrf
    evil = http.server.HTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{evil.server_port}/")
        page.wait_for_url(_Attacker.target)
        assert page.inner_text("#refusal-code") == "origin_forbidden"
    finally:
        evil.shutdown()
    open_plan(page, served.url, record.id)
    sent = page.evaluate("""async (url) => {
        const post = async (fields) => { const r = await fetch(url, {method: 'POST', body: new URLSearchParams(fields)});
                                         return [r.status, await r.text()]; };
        return [await post({decision: 'approve', envelope: 'x'}),
                await post({csrf_token: 'guessed-'.repeat(6), decision: 'approve', envelope: 'x'})]; }""",
                         f"{served.url}/plans/{record.id}/decision")
    assert sent[0][0] == 403 and "csrf_token_missing" in sent[0][1]
    assert sent[1][0] == 403 and "csrf_token_invalid" in sent[1][1]
    assert served.world.services.plans.approvals(record.id) == []


def test_a_server_that_swaps_the_plan_is_caught_by_the_browsers_digest_check(browser: Any, served: Served) -> None:
    shown, swapped = served.submit("Fix a typo"), served.submit("Drop the database")
    alice = Person(browser, served, "alice")
    page = alice.page
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    def serve_other(route: Any) -> None:  # what a compromised server would send for the plan of this page
        route.fulfill(status=200, content_type="application/json", body=swapped.envelope)

    page.route(lambda url: url.endswith(f"/v1/plans/{shown.id}/envelope"), serve_other)
    open_plan(page, served.url, shown.id, check="failed")
    status = page.inner_text("#sign-status")
    assert "Refusing to sign" in status and swapped.id in status and shown.id in status
    assert page.is_disabled("#approve") and page.is_disabled("#reject")
    page.evaluate("() => document.querySelectorAll('#decision-form button').forEach(b => { b.disabled = false; })")
    page.click("#approve")  # forced: the script still refuses
    page.wait_for_function("() => document.getElementById('sign-status').textContent.includes('Refusing to sign')")
    assert posts == [] and page.url == f"{served.url}/plans/{shown.id}"
    assert served.world.services.plans.approvals(shown.id) == []


def test_the_private_key_cannot_be_exported_from_indexeddb(browser: Any, served: Served) -> None:
    alice = Person(browser, served, "alice", log_in=False)
    found = alice.page.evaluate("""async () => {
        const k = await writ.getKey('alice');
        const tries = {};
        for (const format of ['pkcs8', 'jwk', 'raw']) {
            try { await crypto.subtle.exportKey(format, k.privateKey); tries[format] = 'exported'; }
            catch (e) { tries[format] = e.name; }
        }
        return {extractable: k.privateKey.extractable, usages: k.privateKey.usages, tries, keyId: k.keyId,
                publicKey: k.publicKey};
    }""")
    assert found["extractable"] is False and found["usages"] == ["sign"]
    assert found["tries"] == {"pkcs8": "InvalidAccessError", "jwk": "InvalidAccessError", "raw": "InvalidAccessError"}
    trusted = {k.key_id: k for k in served.world.services.trust.keys("alice")}
    assert trusted[found["keyId"]].public_key == PublicKey.from_base64(found["publicKey"]).to_base64()


def test_the_diff_of_a_proposed_file_change_is_shown(browser: Any, served: Served) -> None:
    world = served.world
    record = served.submit("Write notes.txt")  # World.submit: write_file /srv/notes.txt with the title as content
    ContentStore(world.services.store, audit=world.services.audit).put(record.id, [
        CapturedContent.of_text(0, "fs", "write_file", "/srv/notes.txt", "old notes\nkept line\n",
                                max_bytes=world.settings.limits.plans.max_args_bytes)])
    alice = Person(browser, served, "alice")
    open_plan(alice.page, served.url, record.id)
    diff = alice.page.inner_text("#diff-0")
    assert "--- a/srv/notes.txt" in diff and "+++ b/srv/notes.txt" in diff
    assert "-old notes" in diff and "-kept line" in diff and "+Write notes.txt" in diff
    assert [e.inner_text() for e in alice.page.query_selector_all("#diff-0 .diff-add")] == ["+Write notes.txt"]
    assert alice.page.inner_text("#diff-note-0") == "unified diff, against the content when the plan was proposed"


def test_a_plan_is_approved_with_the_keyboard_alone_and_every_control_is_labelled(browser: Any,
                                                                                  served: Served) -> None:
    record = served.submit("Keyboard only")
    alice = Person(browser, served, "alice")
    page = alice.page
    open_plan(page, served.url, record.id)
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.textContent.trim())
        .map(e => e.outerHTML)""")
    assert unlabelled == []
    levels = page.evaluate("() => [...document.querySelectorAll('main h1, main h2, main h3, main h4')]"
                           ".map(h => Number(h.tagName[1]))")
    assert levels[0] == 1 and all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False))
    assert page.get_attribute("#sign-status", "role") == "status"
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to the content"
    page.focus("#comment")
    page.keyboard.type("fine by me")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "approve"
    page.keyboard.press("Enter")
    page.wait_for_selector("#count-summary")
    assert page.inner_text("#count-summary") == "1/2 approvals (alice); missing: 1 more approval"
    assert served.world.services.plans.approvals(record.id)[0].comment() == "fine by me"
