"""Issue 9, finding 5: nobody without an auditor's or admin's token writes decisions into the audit log.

Attacks on a real `writ serve` subprocess (the decision API alone, SQLite data directory) over
HTTP with httpx: a web page on another site posting `text/plain` (what a browser sends across
sites without asking first), a caller without a token or with an agent's token, a disabled or
locked caller, a flood from one token, a dry run, 1 MB posts meant to grow the database, and
bodies over the input limit that never end.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.factories import call_input
from support.gateway import audit_entries, free_port, issue_token, register, wait_for_port

from writ.engine.core.settings import Settings
from writ.engine.wiring.services import open_services

# `writ serve` runs the approval worker: it reaches the session's Temporal dev server, and starts none.
pytestmark = pytest.mark.usefixtures("temporal_module")

RATE = 12  # limits.api_decisions_per_minute of the server under attack
PRINCIPALS = {"audit-bot": "auditor", "root-admin": "admin", "plan-bot": "planner", "flood-bot": "auditor",
              "dry-bot": "auditor", "big-bot": "auditor", "gone-auditor": "auditor", "locked-auditor": "admin"}


@dataclass
class Api:
    url: str
    data_dir: Path

    def post(self, body: bytes | str, *, token: str | None = None, content_type: str | None = "application/json",
             origin: str | None = None, query: str = "") -> httpx.Response:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        if origin is not None:
            headers["Origin"] = origin
        return httpx.post(f"{self.url}/v1/decisions{query}", content=body, headers=headers, timeout=30)

    def entries(self) -> list[Any]:
        return audit_entries(self.data_dir)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("decision-api")
    data_dir = root / "writ-home"
    register(data_dir, PRINCIPALS)
    port = free_port()
    env = {**os.environ, "WRIT_LIMITS__API_DECISIONS_PER_MINUTE": str(RATE)}
    log = root / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from writ.engine.cli.main import main; main()", "serve", "--port", str(port),
             "--data-dir", str(data_dir)], cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, proc, 60, f"writ serve did not start; see {log}")
        yield Api(f"http://127.0.0.1:{port}", data_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def body_of(**kwargs: Any) -> str:
    return json.dumps(call_input(**kwargs))


def test_decision_api_cross_origin_text_plain(api: Api) -> None:
    """A page on evil.example posts a forged executor decision as text/plain: nothing reaches the log."""
    forged = body_of(principal="exec-bot", role="executor", tool="git_commit")
    before = len(api.entries())
    for token in (None, issue_token(api.data_dir, "audit-bot")):  # even if the page somehow had a token
        answer = api.post(forged, token=token, content_type="text/plain", origin="https://evil.example")
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "origin_forbidden"
    # A local page, an auditor's token, but text/plain: refused before it is read (415), and that refusal
    # is logged as a refusal, never as a decision.
    token = issue_token(api.data_dir, "audit-bot")
    answer = api.post(forged, token=token, content_type="text/plain", origin="http://127.0.0.1:3000")
    assert answer.status_code == 415 and answer.json()["error"]["code"] == "content_type_unsupported"
    answer = api.post(forged, token=token, content_type=None)
    assert answer.status_code == 415
    new = api.entries()[before:]
    assert not [e for e in new if e.kind in ("decision", "api_decision")], [e.kind for e in new]
    assert [e.payload["code"] for e in new if e.kind == "http_refused"] == ["content_type_unsupported"] * 2


def test_decision_api_needs_a_token(api: Api) -> None:
    body = body_of(tool="git_status")
    before = len(api.entries())
    answer = api.post(body)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "token_missing"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert api.post(body, token="writ_not-a-token").json()["error"]["code"] == "token_invalid"
    assert api.entries()[before:] == []  # nobody unauthenticated writes into the log, not even a refusal

    # An agent's token is not enough: the API is for people who read decisions.
    answer = api.post(body, token=issue_token(api.data_dir, "plan-bot"))
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "api_role_forbidden"
    refused = api.entries()[-1]
    assert refused.kind == "http_refused" and refused.payload["principal"] == "plan-bot"

    for name, role in (("audit-bot", "auditor"), ("root-admin", "admin")):
        answer = api.post(body, token=issue_token(api.data_dir, name))
        assert answer.status_code == 200 and answer.json()["allow"] is True, answer.text
        entry = api.entries()[-1]
        assert entry.kind == "api_decision", entry.kind  # never a gateway "decision"
        assert entry.payload["caller"]["principal"] == name and entry.payload["caller"]["role"] == role
        assert entry.payload["caller"]["token_id"].startswith("tok-")
        assert entry.payload["decision"]["decision_id"] == answer.json()["decision_id"]
    assert not [e for e in api.entries()[before:] if e.kind == "decision"]


def test_decision_api_refuses_a_disabled_or_locked_callers_token(api: Api) -> None:
    """An auditor disabled (`writ principals disable`) or an admin locked: their live tokens stop at once."""
    body = body_of(tool="git_status")
    tokens = {name: issue_token(api.data_dir, name) for name in ("gone-auditor", "locked-auditor")}
    for token in tokens.values():
        assert api.post(body, token=token).status_code == 200
    with open_services(Settings(home=api.data_dir)) as w:
        w.trust.disable_principal("gone-auditor", reason="its laptop was stolen")
        w.trust.status.lock("locked-auditor", session_id="s-test", decision_id=None, codes=("step_not_in_plan",))
    before = len(api.entries())
    for token, code in zip(tokens.values(), ("principal_disabled", "principal_locked"), strict=True):
        answer = api.post(body, token=token)
        assert answer.status_code == 403 and answer.json()["error"]["code"] == code, answer.text
        assert api.post(body, token=token, query="?dry_run=1").status_code == 403  # not even a dry run
    new = api.entries()[before:]
    assert not [e for e in new if e.kind == "api_decision"], [e.kind for e in new]
    assert [(e.payload["principal"], e.payload["code"]) for e in new if e.kind == "http_refused"] == [
        ("gone-auditor", "principal_disabled")] * 2 + [("locked-auditor", "principal_locked")] * 2


def test_decision_api_rate_limited(api: Api) -> None:
    flood, other = issue_token(api.data_dir, "flood-bot"), issue_token(api.data_dir, "flood-bot")
    body = body_of(tool="git_status")
    before = len(api.entries())
    codes = [api.post(body, token=flood).status_code for _ in range(RATE + 5)]
    assert codes[:RATE] == [200] * RATE and set(codes[RATE:]) == {429}, codes
    answer = api.post(body, token=flood)
    assert answer.json()["error"]["code"] == "rate_limited" and int(answer.headers["retry-after"]) >= 1
    assert api.post(body, token=other).status_code == 200  # per token
    new = api.entries()[before:]
    assert sum(e.kind == "api_decision" for e in new) == RATE + 1
    assert [e.payload["code"] for e in new if e.kind == "http_refused"] == ["rate_limited"]  # once a minute


def test_decision_api_dry_run_not_logged(api: Api) -> None:
    token = issue_token(api.data_dir, "dry-bot")
    before = len(api.entries())
    answer = api.post(body_of(role="planner", principal="p", tool="git_commit"), token=token, query="?dry_run=1")
    assert answer.status_code == 200 and answer.headers["writ-dry-run"] == "1"
    assert "planner_cannot_write" in [r["code"] for r in answer.json()["reasons"]]
    assert api.post("[1, 2]", token=token, query="?dry_run=1").json()["reasons"][0]["code"] == "input_invalid"
    assert len(api.entries()) == before
    assert api.post(body_of(tool="git_status"), token=token).status_code == 200  # without: logged
    assert len(api.entries()) == before + 1


def test_decision_api_large_posts_do_not_grow_the_log(api: Api) -> None:
    """1 MB posts (just under limits.max_input_bytes) leave a bounded entry each, not a megabyte."""
    token = issue_token(api.data_dir, "big-bot")
    doc = call_input(tool="git_status")
    doc["args"] = {"repo_path": "/srv/repo", "padding": "x" * (1_048_576 - 2_000)}
    big = json.dumps(doc)
    assert 1_000_000 < len(big) < 1_048_576
    before = len(api.entries())
    for _ in range(5):
        answer = api.post(big, token=token)
        assert answer.status_code == 200 and answer.json()["allow"] is True, answer.text[:300]
    new = api.entries()[before:]
    assert [e.kind for e in new] == ["api_decision"] * 5
    stored = sum(len(json.dumps(e.payload)) for e in new)
    assert stored < 20_000, stored
    assert new[0].payload["input"] is None and new[0].payload["input_bytes"] == len(big)
    assert new[0].payload["input_sha256"].startswith("sha256:")
    over = api.post('{"x": "' + "y" * 1_100_000 + '"}', token=token)  # over the limit: a deny, no input kept
    assert [r["code"] for r in over.json()["reasons"]] == ["input_too_large"]
    assert api.entries()[-1].payload["input"] is None


def raw_post(api: Api, head: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """Send ``head`` and ``body`` on one connection (the body left unfinished) and read the answer, or fail."""
    url = httpx.URL(api.url)
    answer = b""
    with socket.create_connection((url.host, url.port), timeout=20) as sock:
        sock.sendall(head.encode() + body)
        while True:
            top, sep, rest = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", top)
            if sep and length is not None and len(rest) >= int(length.group(1)):
                break
            try:
                data = sock.recv(65_536)
            except TimeoutError:
                pytest.fail("the server waited for the rest of a body already over limits.max_input_bytes")
            if not data:
                break
            answer += data
    top, _, rest = answer.partition(b"\r\n\r\n")
    return int(top.split(b" ", 2)[1]), json.loads(rest)


def test_decision_api_stops_reading_a_body_over_the_limit(api: Api) -> None:
    """A body over limits.max_input_bytes is answered ``input_too_large`` as soon as it is over the limit.

    One never ends (chunked, no last chunk), one declares 50 MB and sends a few bytes: the server
    neither waits for nor holds the rest.
    """
    token = issue_token(api.data_dir, "big-bot")
    head = (f"POST /v1/decisions HTTP/1.1\r\nHost: {httpx.URL(api.url).netloc.decode()}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n")
    chunk = b"x" * 65_536
    endless = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(18))  # 1.1 MiB, and no last chunk
    declared = head + "Content-Length: 50000000\r\n\r\n"  # 50 MB declared, a few bytes sent
    before = len(api.entries())
    for request, body in ((head + "Transfer-Encoding: chunked\r\n\r\n", endless), (declared, b'{"x": ')):
        status, answer = raw_post(api, request, body)
        assert status == 200 and [r["code"] for r in answer["reasons"]] == ["input_too_large"], answer
    new = api.entries()[before:]
    assert [e.kind for e in new] == ["api_decision"] * 2 and all(e.payload["input"] is None for e in new)
