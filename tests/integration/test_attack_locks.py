"""Issue 9, finding 1: a lock belongs to the principal, not to the session an agent can leave.

Attacks with real parts: `writ mcp` and `writ serve --config` subprocesses, mcp-server-git and the
npm filesystem server as upstreams, the official SDK client, one SQLite data directory that all
of them share. An agent whose session locked after a violation reconnects (a new HTTP session,
a new token, a new `writ mcp` process) and tries again; an operator reviews and unlocks; a
disabled principal's token, gateway and key stop.

Each test locks a principal of its own, so the tests do not lean on each other.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from mcp.shared.exceptions import MCPError
from support.gateway import (
    GatewayClient,
    audit_entries,
    gateway_client,
    http_gateway_client,
    issue_token,
    reason_codes,
    register,
    require_upstreams,
    serve_gateway,
    text_of,
    toml_list,
    toml_str,
    write_two_upstream_config,
)

from writ.engine.cli.main import main
from writ.engine.core.errors import WritError
from writ.engine.core.settings import Settings
from writ.engine.core.timeutil import utc_now
from writ.engine.wiring.services import open_services
from writ.plans.keys import PrivateKey
from writ.plans.models import Plan, PlanStep
from writ.plans.statements import sign_approval, sign_plan

# Proposing a plan starts its approval workflow: these gateways need Temporal (the session's dev server).
pytestmark = pytest.mark.usefixtures("temporal_module")

PRINCIPALS = {
    "plan-bot": "planner", "alice": "approver", "bob": "approver",  # the plans of the executor test
    "http-planner": "planner", "stdio-planner": "planner", "lock-exec": "executor", "gone-planner": "planner",
}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass
class Env:
    repo: Path
    files: Path
    config: Path
    data_dir: Path
    keys: dict[str, Path]
    url: str
    log: Path

    def session(self, principal: str) -> Any:
        """A new `writ mcp` process for ``principal`` and a client session to it."""
        return gateway_client(self.config, principal, self.data_dir, self.log)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    node = require_upstreams()
    root = tmp_path_factory.mktemp("locks")
    repo, files, config = write_two_upstream_config(root, node)
    data_dir = root / "writ-home"
    keys = register(data_dir, PRINCIPALS, keys=True)
    log = root / "gateways.log"
    with serve_gateway(config, data_dir, root / "serve.log") as url:
        yield Env(repo, files, config, data_dir, keys, url, log)


def http_session(env: Env, token: str) -> AbstractContextManager[GatewayClient]:
    """A new MCP session over HTTP with ``token``."""
    return http_gateway_client(env.url, token)


def writ(env: Env, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(env.data_dir)])
    assert result.exit_code == code, result.output
    return result.output


def kinds(env: Env, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in audit_entries(env.data_dir) if e.kind == kind]


def status(env: Env) -> dict[str, Any]:
    """The arguments of a harmless read: git__git_status of the test repository."""
    return {"repo_path": str(env.repo)}


def violate_as_planner(client: GatewayClient, env: Env, name: str) -> None:
    """A planner's write: denied, and its session (and now its principal) locked."""
    target = env.files / f"{name}.txt"
    result = client.call("fs__write_file", {"path": str(target), "content": "x"})
    assert reason_codes(result) == ["planner_cannot_write"], text_of(result)
    assert "obligation [lock_session]" in text_of(result)
    assert reason_codes(client.call("git__git_status", status(env))) == ["session_locked"]
    assert not target.exists()


def test_locked_principal_reconnects_over_http(env: Env) -> None:
    token = issue_token(env.data_dir, "http-planner")
    with http_session(env, token) as first:
        assert not first.call("git__git_status", status(env)).is_error
        violate_as_planner(first, env, "http-planner")
        # The same token, a new MCP session (the agent reconnects), while the first is still open.
        with http_session(env, token) as second:
            result = second.call("git__git_status", status(env))
            assert reason_codes(result) == ["principal_locked"], text_of(result)
            assert text_of(result).startswith("denied [principal_locked]: principal 'http-planner' is locked")
    # A fresh token of the same principal, after the first session ended: still locked.
    with http_session(env, issue_token(env.data_dir, "http-planner")) as third:
        assert reason_codes(third.call("git__git_status", status(env))) == ["principal_locked"]
        assert reason_codes(third.call("writ__writ_plan_status", {"plan_id": "abcdef"})) == ["principal_locked"]

    locked = [p for p in kinds(env, "principal_locked") if p["principal"] == "http-planner"]
    assert len(locked) == 1 and locked[0]["reasons"] == ["planner_cannot_write"]
    denied = [p for p in kinds(env, "decision") if p["input"] and p["input"]["principal"] == "http-planner"
              and [r["code"] for r in p["decision"]["reasons"]] == ["principal_locked"]]
    assert len(denied) == 3  # every refusal is in the log, with what was asked
    listed = json.loads(writ(env, "sessions", "list", "--all", "--json"))
    (lock,) = [p for p in listed["principals"] if p["principal"] == "http-planner"]
    assert lock["lock_reasons"] == ["planner_cannot_write"] and lock["disabled_at"] is None
    sessions = [s for s in listed["sessions"] if s["principal"] == "http-planner"]
    assert len(sessions) == 3 and {s["transport"] for s in sessions} == {"http"}
    assert sum(s["locked_at"] is not None for s in sessions) == 1

    # Only an operator lifts it, with a reason that goes to the audit log.
    writ(env, "principals", "unlock", "http-planner", code=2)  # --reason is required
    assert "unlocked http-planner" in writ(env, "principals", "unlock", "http-planner", "--reason", "reviewed")
    assert kinds(env, "principal_unlocked")[-1]["reason"] == "reviewed"
    assert "principal_not_locked" in writ(env, "principals", "unlock", "http-planner", "--reason", "again", code=1)
    with http_session(env, token) as after:
        assert not after.call("git__git_status", status(env)).is_error


def test_locked_principal_restarts_stdio_gateway(env: Env) -> None:
    with env.session("stdio-planner") as first:
        violate_as_planner(first, env, "stdio-planner")
    # The agent's client restarts `writ mcp`: a new process, a new session, the same principal.
    with env.session("stdio-planner") as restarted:
        result = restarted.call("git__git_status", status(env))
        assert reason_codes(result) == ["principal_locked"], text_of(result)
        assert reason_codes(restarted.call("fs__read_text_file", {"path": str(env.files / "notes.txt")})) == [
            "principal_locked"]
    # And over HTTP, in the other gateway process: the lock is in the database they share.
    with http_session(env, issue_token(env.data_dir, "stdio-planner")) as other:
        assert reason_codes(other.call("git__git_status", status(env))) == ["principal_locked"]
    sessions = [s for s in json.loads(writ(env, "sessions", "list", "--all", "--json"))["sessions"]
                if s["principal"] == "stdio-planner"]
    assert {s["transport"] for s in sessions} == {"stdio", "http"}
    assert all(s["ended_at"] for s in sessions if s["transport"] == "stdio")


def approved_plan(env: Env, planner: GatewayClient, target: Path, content: str) -> str:
    result = planner.call("writ__writ_plan_propose", {
        "title": f"Write {target.name}", "rationale": "for the test",
        "steps": [{"tool": "fs__write_file", "args": {"path": str(target), "content": content}}]})
    assert not result.is_error, text_of(result)
    plan_id = str((result.structured_content or {})["plan_id"])
    with open_services(Settings(home=env.data_dir)) as w:
        for name in ("alice", "bob"):
            w.plans.add_approval(plan_id, sign_approval(plan_id, PrivateKey.load(env.keys[name]), approver=name,
                                                        comment="ok").to_json())
        assert w.plans.get(plan_id).state.value == "approved"
    return plan_id


def test_locked_executor_cannot_begin_another_plan(env: Env) -> None:
    a, b = env.files / "plan-a.txt", env.files / "plan-b.txt"
    with env.session("plan-bot") as planner:
        plan_a = approved_plan(env, planner, a, "A\n")
        plan_b = approved_plan(env, planner, b, "B\n")
    with env.session("lock-exec") as executor:
        assert not executor.call("writ__writ_plan_begin", {"plan_id": plan_a}).is_error
        result = executor.call("fs__write_file", {"path": str(a), "content": "not what was approved\n"})
        assert reason_codes(result) == ["step_not_in_plan"] and "obligation [lock_session]" in text_of(result)
    # The locked executor starts another `writ mcp` and begins the other approved plan.
    with env.session("lock-exec") as again:
        result = again.call("writ__writ_plan_begin", {"plan_id": plan_b})
        assert reason_codes(result) == ["principal_locked"], text_of(result)
        assert reason_codes(again.call("fs__write_file", {"path": str(b), "content": "B\n"})) == ["principal_locked"]
        assert reason_codes(again.call("writ__writ_plan_finish", {"outcome": "completed"})) == ["principal_locked"]
    assert not a.exists() and not b.exists()
    with open_services(Settings(home=env.data_dir)) as w:
        assert w.plans.get(plan_b).state.value == "approved" and w.plans.claims(plan_b) == []
        assert w.plans.claims(plan_a) == []
    assert [p for p in kinds(env, "principal_locked") if p["principal"] == "lock-exec"][0]["reasons"] == [
        "step_not_in_plan"]


def test_disabled_principal_loses_its_tokens_keys_and_gateway(env: Env) -> None:
    token = issue_token(env.data_dir, "gone-planner")
    headers = {**ACCEPT, "Authorization": f"Bearer {token}"}
    assert httpx.post(env.url, json=INIT, headers=headers, timeout=30).status_code == 200
    with http_session(env, token) as open_session:
        assert not open_session.call("git__git_status", status(env)).is_error
        out = writ(env, "principals", "disable", "gone-planner", "--reason", "its host was compromised")
        assert "disabled gone-planner" in out and "1 key(s) revoked" in out
        answer = httpx.post(env.url, json=INIT, headers=headers, timeout=30)  # the token stops at once
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "principal_disabled"
        with pytest.raises(Exception):  # noqa: B017 - the open session's next request gets the 403 too
            open_session.call("git__git_status", status(env))
    # Its gateway does not start.
    started = subprocess.run(
        [sys.executable, "-m", "writ.engine.cli.gateway", "--principal", "gone-planner", "--config", str(env.config),
         "--data-dir", str(env.data_dir)], input="", capture_output=True, text=True, timeout=60,
        cwd=env.config.parent)
    assert started.returncode == 1 and "error[principal_disabled]" in started.stderr, started.stderr
    # Its key stops signing: a plan it signs now is refused.
    now = utc_now()
    plan = Plan(title="t", rationale="r", planner="gone-planner", created_at=now, expires_at=now + timedelta(hours=1),
                nonce=secrets.token_hex(16), steps=(PlanStep(server="fs", tool="write_file",
                                                             definition_digest="sha256:" + "ab" * 32,
                                                             args={"path": "/x", "content": "y"}),))
    envelope = sign_plan(plan, PrivateKey.load(env.keys["gone-planner"]))
    with open_services(Settings(home=env.data_dir)) as w, pytest.raises(WritError, match="revoked"):
        w.plans.submit(envelope.to_json())
    assert [p for p in kinds(env, "principal_disabled") if p["principal"] == "gone-planner"]
    assert "principal_disabled" in {p["code"] for p in kinds(env, "http_refused")}


def test_a_lock_is_seen_by_every_replica(db_settings: Settings) -> None:
    """Two gateway replicas (two connections to one database) lock the same principal at once: one lock, one
    ``principal_locked`` entry, and both see it at once; on SQLite and PostgreSQL."""
    from concurrent.futures import ThreadPoolExecutor

    from writ.attestations.audit import AuditLog
    from writ.engine.core.db import open_database
    from writ.engine.wiring.services import wire_services

    with open_database(db_settings) as one, open_database(db_settings) as two:
        replicas = [wire_services(db_settings, one), wire_services(db_settings, two)]
        replicas[0].trust.add_principal("replicated-bot", "executor")

        def lock(i: int) -> bool:
            return replicas[i % 2].trust.status.lock("replicated-bot", session_id=f"s-{i}", decision_id=f"d-{i}",
                                                      codes=("step_not_in_plan",))

        with ThreadPoolExecutor(4) as pool:
            assert sorted(pool.map(lock, range(8))) == [False] * 7 + [True]
        assert all(r.trust.principal_state("replicated-bot").locked for r in replicas)
        assert [e.kind for e in AuditLog(one).tail(100)].count("principal_locked") == 1
        replicas[1].trust.unlock_principal("replicated-bot", reason="reviewed")
        assert not replicas[0].trust.principal_state("replicated-bot").locked


def test_locked_principal_lists_and_sets_log_levels_upstream(tmp_path: Path) -> None:
    """Requests policy does not decide (listings, unsubscribe, logging/setLevel) reached upstreams for a locked
    principal (found by a second look): each is refused with ``principal_locked`` and audited."""
    node = require_upstreams()
    everything = Path(__file__).resolve().parents[2] / ".mcp-servers/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
    config = tmp_path / "writ.toml"
    config.write_text(f"[upstreams.everything]\ncommand = {toml_str(node)}\n"
                      f"args = {toml_list([str(everything), 'stdio'])}\n")
    data = tmp_path / "writ-home"
    register(data, {"exec-bot": "executor"})
    with open_services(Settings(home=data)) as w:
        assert w.trust.status.lock("exec-bot", session_id="s-old", decision_id=None, codes=("step_not_in_plan",))
    requests = {
        "resources/list": lambda s: s.list_resources(),
        "resources/templates/list": lambda s: s.list_resource_templates(),
        "prompts/list": lambda s: s.list_prompts(),
        "logging/setLevel": lambda s: s.set_logging_level("debug"),
        "resources/unsubscribe": lambda s: s.unsubscribe_resource("writ://everything/demo://resource/static/x"),
    }
    with gateway_client(config, "exec-bot", data, tmp_path / "gateway.log") as client:
        for method, send in requests.items():
            with pytest.raises(MCPError, match=r"denied \[principal_locked\]"):
                client.portal.call(send, client.session)
    refused = [e.payload["method"] for e in audit_entries(data) if e.kind == "request_refused"]
    assert refused == list(requests)
