"""`writ serve --config writ.toml`: the gateway over streamable HTTP at /mcp, bearer tokens per principal.

A real `writ serve` subprocess with mcp-server-git and the filesystem server as stdio upstreams,
tokens issued with `writ tokens new`, and the official SDK client (`streamable_http_client`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from support.gateway import (
    STANDARD_PRINCIPALS,
    GatewayClient,
    audit_entries,
    http_gateway_client,
    issue_token,
    reason_codes,
    register,
    require_upstreams,
    serve_gateway,
    text_of,
    write_two_upstream_config,
)

from writ.engine.cli.main import main

# `writ serve` runs the approval worker: it reaches the session's Temporal dev server, and starts none.
pytestmark = pytest.mark.usefixtures("temporal_module")

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
TOKEN_CACHE_S = 1.0  # this module's `writ serve` reuses a token it looked up for at most a second


@dataclass
class Env:
    repo: Path
    files: Path
    data_dir: Path
    url: str
    log: Path


def writ(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def new_token(env: Env, principal: str) -> str:
    return issue_token(env.data_dir, principal)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    node = require_upstreams()
    root = tmp_path_factory.mktemp("http")
    repo, files, config = write_two_upstream_config(root, node)
    data_dir = root / "writ-home"
    register(data_dir, STANDARD_PRINCIPALS)
    log = root / "serve.log"
    with serve_gateway(config, data_dir, log, env={**os.environ, "WRIT_LIMITS__TOKEN_CACHE_S": str(TOKEN_CACHE_S)}) \
            as url:
        yield Env(repo, files, data_dir, url, log)


def http_client(env: Env, token: str) -> AbstractContextManager[GatewayClient]:
    return http_gateway_client(env.url, token)


def post_init(env: Env, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(env.url, json=INIT, headers={**ACCEPT, **headers}, timeout=30)


def test_no_token_is_401(env: Env) -> None:
    answer = post_init(env, {})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "token_missing"
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_unknown_token_is_401(env: Env) -> None:
    answer = post_init(env, {"Authorization": "Bearer writ_not-a-real-token"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "token_invalid"


def test_revoked_token_is_401_within_the_token_cache_bound(env: Env) -> None:
    token = new_token(env, "plan-bot")
    assert post_init(env, {"Authorization": f"Bearer {token}"}).status_code == 200  # looked up, and cached
    listed = writ("tokens", "list", "--data-dir", str(env.data_dir))
    token_id = listed.strip().splitlines()[-1].split()[0]
    assert "active" in listed.strip().splitlines()[-1]
    writ("tokens", "revoke", token_id, "--data-dir", str(env.data_dir))
    time.sleep(TOKEN_CACHE_S)  # the promise: stopped once WRIT_LIMITS__TOKEN_CACHE_S has passed since the revoke
    answer = post_init(env, {"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "token_invalid"
    assert f"{token_id}  plan-bot" in writ("tokens", "list", "--data-dir", str(env.data_dir))


def test_only_the_token_digest_is_stored(env: Env) -> None:
    token = new_token(env, "audit-bot")
    assert token.encode() not in (env.data_dir / "writ.sqlite").read_bytes()


def test_token_for_an_unknown_principal_is_refused(env: Env) -> None:
    result = CliRunner().invoke(main, ["tokens", "new", "--principal", "nobody", "--data-dir", str(env.data_dir)])
    assert result.exit_code == 1
    assert "principal_not_found" in result.output


def test_foreign_origin_is_403(env: Env) -> None:
    token = new_token(env, "plan-bot")
    answer = post_init(env, {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"})
    assert answer.status_code == 403
    assert post_init(env, {"Authorization": f"Bearer {token}", "Origin": "http://localhost:1234"}).status_code == 200


def test_a_foreign_origin_gets_writs_origin_forbidden_body(env: Env) -> None:
    # Writ's own refusal (the reason code in Writ's JSON error shape), before the token is even looked at;
    # not the MCP SDK's DNS-rebinding 403, whose body is plain text without a code.
    token = new_token(env, "plan-bot")
    forbidden = {"error": {"code": "origin_forbidden", "message": "requests from another origin are refused"}}
    for headers in ({"Authorization": f"Bearer {token}", "Origin": "https://evil.example"},
                    {"Origin": "http://localhost.evil.example:8080"},  # no token: the origin is refused first
                    {"Authorization": f"Bearer {token}", "Origin": "null"}):  # a sandboxed frame or a file: page
        answer = post_init(env, headers)
        assert answer.status_code == 403, (headers, answer.text)
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == forbidden, answer.text
    listing = httpx.get(env.url, headers={"Accept": "text/event-stream", "Origin": "https://evil.example"}, timeout=30)
    assert (listing.status_code, listing.json()) == (403, forbidden)


def test_foreign_host_is_refused(env: Env) -> None:
    token = new_token(env, "plan-bot")
    answer = post_init(env, {"Authorization": f"Bearer {token}", "Host": "evil.example"})
    assert answer.status_code in (400, 421)


def test_a_session_belongs_to_the_principal_that_opened_it(env: Env) -> None:
    planner, executor = new_token(env, "plan-bot"), new_token(env, "exec-bot")
    opened = post_init(env, {"Authorization": f"Bearer {planner}"})
    session_id = opened.headers["mcp-session-id"]
    answer = httpx.post(env.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                        headers={**ACCEPT, "Authorization": f"Bearer {executor}", "mcp-session-id": session_id,
                                 "mcp-protocol-version": "2025-11-25"}, timeout=30)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "session_forbidden"


def test_planner_over_http_reads_and_is_denied_a_write(env: Env) -> None:
    target = env.files / "planner-wrote-this.txt"
    with http_client(env, new_token(env, "plan-bot")) as planner:
        tools = {t.name: t for t in planner.list_tools()}
        assert {"git__git_status", "fs__write_file"} <= set(tools)
        assert (tools["git__git_status"].meta or {})["writ/definition_digest"].startswith("sha256:")

        result = planner.call("fs__read_text_file", {"path": str(env.files / "notes.txt")})
        assert not result.is_error, text_of(result)
        assert "read me" in text_of(result)

        result = planner.call("fs__write_file", {"path": str(target), "content": "x"})
        assert result.is_error
        assert reason_codes(result) == ["planner_cannot_write"]
        assert text_of(result).startswith("denied [planner_cannot_write]")
        assert not target.exists()
    writ("principals", "unlock", "plan-bot", "--reason", "reviewed", "--data-dir", str(env.data_dir))


def test_sessions_keep_separate_principals_and_locks(env: Env) -> None:
    target = env.files / "locked.txt"
    with http_client(env, new_token(env, "plan-bot")) as locked, \
            http_client(env, new_token(env, "plan-bot")) as other, \
            http_client(env, new_token(env, "exec-bot")) as executor:
        result = locked.call("fs__write_file", {"path": str(target), "content": "x"})
        assert reason_codes(result) == ["planner_cannot_write"]
        result = locked.call("git__git_status", {"repo_path": str(env.repo)})
        assert result.is_error and reason_codes(result) == ["session_locked"]
        # Another session of the same principal is refused too: the lock is the principal's (issue 9, finding 1),
        # until an operator lifts it; the session that violated stays locked.
        result = other.call("git__git_status", {"repo_path": str(env.repo)})
        assert reason_codes(result) == ["principal_locked"]
        writ("principals", "unlock", "plan-bot", "--reason", "reviewed", "--data-dir", str(env.data_dir))
        result = other.call("git__git_status", {"repo_path": str(env.repo)})
        assert not result.is_error, text_of(result)
        assert "On branch main" in text_of(result)
        assert reason_codes(locked.call("git__git_status", {"repo_path": str(env.repo)})) == ["session_locked"]
        # The executor's session acts for the executor: its write needs a plan, it is not a planner's.
        result = executor.call("fs__write_file", {"path": str(target), "content": "x"})
        assert reason_codes(result) == ["plan_required"]
        tools = {t.name for t in executor.list_tools()}
        assert "writ__writ_plan_begin" in tools and "writ__writ_plan_propose" not in tools
        assert not target.exists()


def test_the_agent_token_reaches_neither_the_audit_log_nor_the_upstreams(env: Env) -> None:
    token = new_token(env, "plan-bot")
    with http_client(env, token) as planner:
        assert not planner.call("git__git_status", {"repo_path": str(env.repo)}).is_error
    assert token.encode() not in (env.data_dir / "writ.sqlite").read_bytes()
    assert token not in env.log.read_text()


def test_session_started_is_audited_with_the_principal(env: Env) -> None:
    for principal in ("plan-bot", "exec-bot"):  # its own sessions: it must pass alone, in any order
        with http_client(env, new_token(env, principal)) as client:
            client.list_tools()
    entries = audit_entries(env.data_dir)
    started = [e.payload for e in entries if e.kind == "session_started"]
    assert started and {s["principal"] for s in started} >= {"plan-bot", "exec-bot"}
    assert all(s["transport"] == "http" for s in started)
    assert any(e.kind == "gateway_started" for e in entries)


def test_one_gateway_session_per_mcp_session(env: Env) -> None:
    def started() -> int:
        return sum(1 for e in audit_entries(env.data_dir) if e.kind == "session_started")

    before = started()
    with http_client(env, new_token(env, "plan-bot")) as planner:
        for _ in range(3):
            planner.list_tools()
            assert not planner.call("git__git_status", {"repo_path": str(env.repo)}).is_error
    assert started() == before + 1


def test_a_closed_session_cannot_be_reused(env: Env) -> None:
    token = new_token(env, "plan-bot")
    session_id = post_init(env, {"Authorization": f"Bearer {token}"}).headers["mcp-session-id"]
    headers = {**ACCEPT, "Authorization": f"Bearer {token}", "mcp-session-id": session_id,
               "mcp-protocol-version": "2025-11-25"}
    assert httpx.delete(env.url, headers=headers, timeout=30).status_code == 200
    answer = httpx.post(env.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers,
                        timeout=30)
    assert answer.status_code == 404


def test_a_sessionless_request_is_refused_not_run(env: Env) -> None:
    # Protocol 2026-07-28 has no sessions: a session lock or a bound plan could not hold, so no call runs.
    target = env.files / "sessionless.txt"
    modern = "2026-07-28"
    meta = {"io.modelcontextprotocol/protocolVersion": modern,
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    answer = httpx.post(env.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "fs__write_file", "arguments": {"path": str(target), "content": "x"}, "_meta": meta}},
        headers={**ACCEPT, "Authorization": f"Bearer {new_token(env, 'exec-bot')}",
                 "mcp-protocol-version": modern, "mcp-method": "tools/call", "mcp-name": "fs__write_file"},
        timeout=30)
    body = answer.text
    assert "error" in body and "needs an MCP session" in body, (answer.status_code, body)
    assert not target.exists()
