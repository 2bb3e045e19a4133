"""The approval form's server side, driven over HTTP as the page's script drives it (Python holds the key here).

Real database and stores; Temporal's dev server and a worker only where a decision is sent.
What a real browser does (WebCrypto, IndexedDB, the page's own digest check) is tested in
Chromium in tests/e2e/test_browser_approvals.py; this module covers each server-side check:
headers, cookies, Origin and CSRF on every POST, rate limits, logins of disabled or locked
principals, who may see which plan, and the JSON API with its one error shape.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.approvals import BackgroundWorker, World, approval_world

from writ.engine.core.errors import WritError
from writ.engine.core.timeutil import utc_now
from writ.engine.web.app import create_app
from writ.engine.web.invites import ENROL_PAYLOAD_TYPE, InviteStore, enrol_payload
from writ.engine.web.security import CSP, WebSettings
from writ.engine.web.sessions import LOGIN_PAYLOAD_TYPE
from writ.plans.dsse import pae
from writ.plans.keys import PrivateKey
from writ.plans.statements import sign_approval

URL = "http://127.0.0.1:8420"
ORIGIN = {"origin": URL}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Browser:
    """What the form's script does, with a Python key: enrol by invite, log in by challenge, sign decisions."""

    def __init__(self, world: World, app: Any, name: str, url: str = URL) -> None:
        self.world, self.name, self.url = world, name, url
        self.http = TestClient(app, base_url=url)
        self.key = PrivateKey.generate()

    def csrf(self) -> dict[str, str]:
        if "writ_csrf" not in self.http.cookies:
            self.http.get("/login")
        return {"origin": self.url, "x-csrf-token": self.http.cookies["writ_csrf"]}

    def enrol(self) -> Any:
        invites = InviteStore(self.world.services.store, self.world.services.trust, audit=self.world.services.audit)
        invite, token = invites.issue(self.name)
        pub = self.key.public_key.to_base64()
        proof = self.key.sign(pae(ENROL_PAYLOAD_TYPE, enrol_payload(invite.id, self.name, self.url, pub)))
        return self.http.post(f"/enrol/{token}", json={"public_key": pub, "proof": b64(proof)}, headers=self.csrf())

    def login(self, *, key: PrivateKey | None = None) -> Any:
        challenge = self.http.post("/login/challenge", json={"principal": self.name}, headers=self.csrf())
        if challenge.status_code != 200:
            return challenge
        body = challenge.json()
        signer = key or self.key
        signature = signer.sign(pae(LOGIN_PAYLOAD_TYPE, base64.b64decode(body["payload"])))
        return self.http.post("/login", json={"challenge_id": body["challenge_id"], "key_id": signer.key_id,
                                              "signature": b64(signature)}, headers=self.csrf())

    def ready(self) -> Browser:
        assert self.enrol().status_code == 200
        assert self.login().status_code == 200
        return self

    def decide(self, plan_id: str, decision: str = "approve", *, approver: str | None = None) -> Any:
        envelope = sign_approval(plan_id, self.key, approver=approver or self.name, decision=decision)  # type: ignore[arg-type]
        return self.http.post(f"/v1/plans/{plan_id}/approvals", headers=self.csrf(),
                              json={"envelope": envelope.to_json().decode(), "decision": decision})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with approval_world(tmp_path, "writ-test-web") as w:
        yield w


def app_of(world: World, **web: Any) -> Any:
    return create_app(world.settings, services=world.services, store=world.services.store, web=WebSettings(**web))


def error(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


# -- headers and cookies --------------------------------------------------------------------------


def test_every_page_and_answer_carries_the_content_security_policy(world: World) -> None:
    alice = Browser(world, app_of(world), "alice").ready()
    record = world.submit("Fix typo")
    for path in ("/", "/login", "/plans?state=all", f"/plans/{record.id}", "/enrol/unknown", "/v1/plans",
                 "/static/writ.js", "/nope"):
        r = alice.http.get(path)
        assert r.headers["content-security-policy"] == CSP, path
        assert CSP.startswith("default-src 'self'; frame-ancestors 'none'")
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff", path


def test_pages_hold_no_inline_script_style_or_handler(world: World) -> None:
    alice = Browser(world, app_of(world), "alice").ready()
    record = world.submit("Fix typo")
    for path in ("/", "/login", "/plans?state=all", f"/plans/{record.id}", "/enrol/unknown"):
        html = alice.http.get(path).text
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/writ.js" defer>'], path
        assert not re.search(r"\son[a-z]+\s*=|\sstyle\s*=|<style|javascript:", html, re.I), path


def test_session_cookie_is_httponly_strict_and_short_lived_and_secure_over_tls(world: World) -> None:
    alice = Browser(world, app_of(world, session_minutes=15), "alice")
    alice.enrol()
    cookie = alice.login().headers["set-cookie"]
    session = next(c for c in cookie.split(", writ_") if c.startswith("writ_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Max-Age=900" in session
    assert "Secure" not in session  # plain http on loopback
    bob = Browser(world, app_of(world), "bob", url="https://127.0.0.1:8420")  # as behind a TLS proxy
    bob.enrol()
    assert all("Secure" in c for c in bob.login().headers["set-cookie"].split(", writ_"))


# -- Origin and CSRF --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/enrol/t", "/login/challenge", "/login", "/logout",
                                  "/plans/sha256:00/decision", "/v1/plans/sha256:00/approvals"])
def test_every_post_needs_this_origin_and_the_csrf_token(world: World, path: str) -> None:
    alice = Browser(world, app_of(world), "alice").ready()
    token = alice.http.cookies["writ_csrf"]
    form = {"csrf_token": token}
    headers = {"x-csrf-token": token}

    def post(extra: dict[str, str], with_token: bool = True) -> Any:
        return alice.http.post(path, data=form if with_token else {}, headers={**(headers if with_token else {}),
                                                                             **extra})
    refusals = {
        "origin_missing": post({}),
        "origin_forbidden": post({"origin": "http://127.0.0.1:9999"}),
        "csrf_token_missing": post(ORIGIN, with_token=False),
    }
    for code, r in refusals.items():
        assert r.status_code == 403, (code, r.text)
        assert code in r.text
    wrong = alice.http.post(path, data={"csrf_token": "x" * 43}, headers={**ORIGIN, "x-csrf-token": "x" * 43})
    assert wrong.status_code == 403 and "csrf_token_invalid" in wrong.text


def test_a_get_changes_nothing(world: World) -> None:
    app = app_of(world)
    invites = InviteStore(world.services.store, world.services.trust, audit=world.services.audit)
    _, token = invites.issue("alice")
    before = world.services.audit.head()
    http = TestClient(app, base_url=URL)
    for _ in range(2):
        assert http.get(f"/enrol/{token}").status_code == 200
    assert invites.find(token).redeemed_at is None and world.services.audit.head() == before


# -- logging in --------------------------------------------------------------------------------------


def test_a_disabled_or_locked_principal_cannot_log_in_and_loses_its_session(world: World) -> None:
    app = app_of(world)
    alice, bob = Browser(world, app, "alice").ready(), Browser(world, app, "bob")
    assert bob.enrol().status_code == 200
    world.services.trust.status.lock("bob", session_id="s-1", decision_id=None, codes=("step_not_in_plan",))
    refused = bob.login()
    assert refused.status_code == 403 and error(refused) == "principal_locked"
    world.services.trust.disable_principal("alice", reason="left the team")
    page = alice.http.get("/")
    assert page.status_code == 403 and "principal_disabled" in page.text
    refused = alice.login()
    assert refused.status_code == 403 and error(refused) == "principal_disabled"
    events = [(e["principal"], e["code"]) for e in world.audit("web_session") if e["event"] == "login_refused"]
    assert events == [("bob", "principal_locked"), ("alice", "principal_disabled")]


def test_a_login_signed_by_another_key_or_with_a_used_challenge_is_refused(world: World) -> None:
    alice = Browser(world, app_of(world), "alice")
    alice.enrol()
    cli_key = world.keys["alice"]  # trusted for alice, but never enrolled by a browser
    refused = alice.login(key=cli_key)
    assert refused.status_code == 401 and error(refused) == "login_failed"
    forged = alice.login(key=PrivateKey.generate())
    assert forged.status_code == 401 and error(forged) == "login_failed"
    challenge = alice.http.post("/login/challenge", json={"principal": "alice"}, headers=alice.csrf()).json()
    signature = b64(alice.key.sign(pae(LOGIN_PAYLOAD_TYPE, base64.b64decode(challenge["payload"]))))
    body = {"challenge_id": challenge["challenge_id"], "key_id": alice.key.key_id, "signature": signature}
    assert alice.http.post("/login", json=body, headers=alice.csrf()).status_code == 200
    again = alice.http.post("/login", json=body, headers=alice.csrf())
    assert again.status_code == 400 and error(again) == "challenge_invalid"
    approval_sig = alice.key.sign(pae("application/vnd.in-toto+json", base64.b64decode(challenge["payload"])))
    assert approval_sig != base64.b64decode(signature)  # a login signature is never an approval's (its own type)


def test_logins_and_invite_redemptions_are_rate_limited(world: World) -> None:
    alice = Browser(world, app_of(world, logins_per_minute=3, invite_redemptions_per_minute=2), "alice")
    answers = [alice.http.post("/login/challenge", json={"principal": "alice"}, headers=alice.csrf())
               for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert error(answers[-1]) == "rate_limited" and int(answers[-1].headers["retry-after"]) >= 1
    pages = [alice.http.get(f"/enrol/guess-{i}") for i in range(3)]
    assert [p.status_code for p in pages] == [404, 404, 429] and "rate_limited" in pages[-1].text


def test_logout_ends_the_session(world: World) -> None:
    alice = Browser(world, app_of(world), "alice").ready()
    assert alice.http.get("/v1/plans").status_code == 200
    out = alice.http.post("/logout", data={"csrf_token": alice.http.cookies["writ_csrf"]}, headers=ORIGIN,
                          follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    alice.http.cookies.pop("writ_session", None)
    assert [e["event"] for e in world.audit("web_session")] == ["login", "logout"]


def test_a_session_ends_at_its_expiry(world: World) -> None:
    app = app_of(world, session_minutes=1)
    alice = Browser(world, app, "alice").ready()
    token = alice.http.cookies["writ_session"]
    sessions = app.state.web.sessions
    assert sessions.current(token) is not None
    assert sessions.current(token, now=utc_now() + timedelta(minutes=1, seconds=1)) is None


# -- who sees what -----------------------------------------------------------------------------------


def test_plan_pages_and_the_api_need_a_session(world: World) -> None:
    record = world.submit("Fix typo")
    http = TestClient(app_of(world), base_url=URL)
    page = http.get(f"/plans/{record.id}")
    assert page.status_code == 401 and "login_required" in page.text
    for path in ("/v1/plans", f"/v1/plans/{record.id}", f"/v1/plans/{record.id}/approvals",
                 f"/v1/plans/{record.id}/envelope"):
        r = http.get(path)
        assert r.status_code == 401 and error(r) == "login_required", path
    assert http.get("/", follow_redirects=False).headers["location"] == "/login"


def test_an_approver_outside_the_required_groups_does_not_see_the_plan(world: World) -> None:
    """dave approves, but is in no group; an fs plan needs code-owners: the policy does not show it to him."""
    record = world.submit("Fix typo")
    app = app_of(world)
    dave, alice = Browser(world, app, "dave").ready(), Browser(world, app, "alice").ready()
    page = dave.http.get(f"/plans/{record.id}")
    assert page.status_code == 403 and "plan_forbidden" in page.text and "Fix typo" not in page.text
    for path in (f"/v1/plans/{record.id}", f"/v1/plans/{record.id}/envelope", f"/v1/plans/{record.id}/approvals"):
        r = dave.http.get(path)
        assert r.status_code == 403 and error(r) == "plan_forbidden", path
    assert dave.http.get("/v1/plans").json() == {"plans": []}
    assert "Fix typo" not in dave.http.get("/").text
    refused = dave.decide(record.id)
    assert refused.status_code == 403 and error(refused) == "plan_forbidden"
    assert [p["title"] for p in alice.http.get("/v1/plans").json()["plans"]] == ["Fix typo"]
    assert "Fix typo" in alice.http.get("/").text


def test_a_session_sends_only_its_own_decisions(world: World) -> None:
    record = world.submit("Fix typo")
    alice = Browser(world, app_of(world), "alice").ready()
    alice.key = world.keys["bob"]  # a statement of bob's, signed with his key, sent from alice's session
    refused = alice.decide(record.id, approver="bob")
    assert refused.status_code == 403 and error(refused) == "approver_mismatch"
    unsigned = alice.http.post(f"/plans/{record.id}/decision", headers=ORIGIN,
                               data={"csrf_token": alice.http.cookies["writ_csrf"], "decision": "approve"})
    assert unsigned.status_code == 400 and "decision_not_signed" in unsigned.text
    assert world.services.plans.approvals(record.id) == []


def test_the_api_answers_every_error_in_one_shape(world: World) -> None:
    alice = Browser(world, app_of(world), "alice").ready()
    for method, path, status, code in [("GET", "/v1/plans?state=bogus", 400, "input_invalid"),
                                       ("GET", "/v1/plans/sha256:nope", 404, "plan_not_found"),
                                       ("GET", "/v1/nothing-here", 404, "not_found"),
                                       ("PUT", "/v1/plans", 405, "input_invalid")]:
        r = alice.http.request(method, path)
        assert r.status_code == status and error(r) == code, (path, r.text)
    bad = alice.http.post("/v1/plans/sha256:00/approvals", headers=alice.csrf(), json={"decision": "maybe"})
    assert bad.status_code == 400 and error(bad) == "input_invalid"


# -- decisions through the workflow --------------------------------------------------------------


@pytest.mark.temporal
def test_decisions_through_the_api_count_in_the_workflow(tmp_path: Path, temporal_env: str) -> None:
    with approval_world(tmp_path, temporal_env) as world, BackgroundWorker(world.settings):
        app = app_of(world)
        with TestClient(app, base_url=URL):
            alice, bob = Browser(world, app, "alice").ready(), Browser(world, app, "bob").ready()
            record = world.submit("Fix typo")
            from support.approvals import run
            from writ.workflows.approval.client import ApprovalClient

            async def start() -> None:
                await (await ApprovalClient.connect(world.settings)).start(record)

            run(start())
            first = alice.decide(record.id)
            assert first.status_code == 200, first.text
            assert first.json()["summary"] == "1/2 approvals (alice); missing: 1 more approval"
            again = alice.decide(record.id)
            assert again.status_code in (403, 409) and error(again).startswith(("approval_", "plan_"))
            done = bob.decide(record.id)
            assert done.json()["state"] == "approved" and done.json()["approvers"] == ["alice", "bob"]
            listed = alice.http.get(f"/v1/plans/{record.id}/approvals").json()
            assert [d["principal"] for d in listed["decisions"]] == ["alice", "bob"]
            detail = alice.http.get(f"/v1/plans/{record.id}").json()
            assert detail["state"] == "approved" and any(a["kind"] == "approval" for a in detail["audit"])



def test_an_invite_redeemed_by_several_browsers_at_once_enrols_one_key(world: World) -> None:
    """invite_link_raced: eight enrolments of one link at the same moment; the database lets one spend it."""
    import threading

    invites = InviteStore(world.services.store, world.services.trust, audit=world.services.audit)
    invite, token = invites.issue("alice")
    keys = [PrivateKey.generate() for _ in range(8)]
    barrier = threading.Barrier(len(keys))
    outcomes: list[str] = []

    def redeem(key: PrivateKey) -> None:
        pub = key.public_key.to_base64()
        proof = b64(key.sign(pae(ENROL_PAYLOAD_TYPE, enrol_payload(invite.id, "alice", URL, pub))))
        barrier.wait()
        try:
            invites.enrol(token, pub, proof, origin=URL, user_agent="test")
            outcomes.append("enrolled")
        except WritError as e:
            outcomes.append(e.code)

    threads = [threading.Thread(target=redeem, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["enrolled"] + ["invite_used"] * 7
    assert len(world.services.trust.keys("alice")) == 2  # the test's CLI key and one browser key


# -- diffs -------------------------------------------------------------------------------------------

DEF = "sha256:" + "ab" * 32
OLD = "line one\nline two\n"


def _step(tool: str, **args: Any) -> Any:
    from writ.plans.models import PlanStep

    return PlanStep(server="fs", tool=tool, definition_digest=DEF, args=args)


def _captured(status: str, reason: str = "") -> Any:
    from writ.plans.contents import CapturedContent

    if status == "captured":
        return CapturedContent.of_text(0, "fs", "write_file", "/srv/a.txt", OLD, max_bytes=10_000)
    return CapturedContent.without(0, "fs", "write_file", "/srv/a.txt", status, reason)  # type: ignore[arg-type]


@pytest.mark.parametrize(("case", "step", "captured", "available", "note", "lines"), [
    ("write_file_over_captured", _step("write_file", path="/srv/a.txt", content="line one\nline 2\n"),
     "captured", True, "unified diff, against the content when the plan was proposed", ["-line two", "+line 2"]),
    ("write_file_new_file", _step("write_file", path="/srv/a.txt", content="fresh\n"), "absent", True,
     "unified diff, a new file", ["--- /dev/null", "+fresh"]),
    ("edit_file_applied", _step("edit_file", path="/srv/a.txt", edits=[{"oldText": "two", "newText": "2"}]),
     "captured", True, "unified diff, against the content when the plan was proposed", ["-line two", "+line 2"]),
    ("edit_file_old_text_gone", _step("edit_file", path="/srv/a.txt", edits=[{"oldText": "three", "newText": "3"}]),
     "captured", False, "no diff: edit 0's oldText is not in the content captured when the plan was proposed", []),
    ("read_denied", _step("write_file", path="/srv/a.txt", content="x"), "unavailable", False,
     "no diff: the content could not be captured (read denied)", []),
    ("git_commit", _step("git_commit", message="m"), "not_a_file_write", False,
     "no diff: this step writes no single file's content (a git commit)", []),
    ("nothing_captured", _step("write_file", path="/srv/a.txt", content="x"), None, False,
     "no diff: nothing was captured when this plan was proposed", []),
    ("same_content", _step("write_file", path="/srv/a.txt", content=OLD), "captured", True,
     "no change: the new content is the content captured when the plan was proposed", []),
])
def test_each_step_says_its_diff_or_why_there_is_none(case: str, step: Any, captured: str | None, available: bool,
                                                     note: str, lines: list[str]) -> None:
    from writ.engine.web.diffs import step_diff

    reason = {"unavailable": "read denied", "not_a_file_write": "a git commit", "absent": "no such file"}
    view = step_diff(step, _captured(captured, reason.get(captured, "")) if captured else None)
    assert view is not None and view.available is available
    assert view.note.startswith(note), view.note
    assert all(line in [x.text for x in view.lines] for line in lines), view.lines


def test_a_step_that_writes_no_file_has_no_diff_section_and_a_content_digest_is_named() -> None:
    from writ.engine.web.diffs import step_diff
    from writ.plans.models import ContentSha256, PlanStep

    assert step_diff(_step("read_file", path="/srv/a.txt"), None) is None
    pinned_digest = PlanStep(server="fs", tool="write_file", definition_digest=DEF, args={"path": "/srv/a.txt"},
                             constraints=(ContentSha256(arg="content", sha256="0" * 64),))
    view = step_diff(pinned_digest, _captured("captured"))
    assert view is not None and not view.available and "only a digest of the new content" in view.note
