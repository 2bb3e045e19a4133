"""`writ mcp` end to end: the official MCP client -> the gateway subprocess -> mcp-server-git and the
filesystem server, with the shipped policies, the embedded engine and a real audit log."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from mcp.shared.exceptions import MCPError
from support.gateway import (
    FS_SERVER,
    STANDARD_PRINCIPALS,
    GatewayClient,
    commit_count,
    gateway_client,
    http_git_server,
    make_repo,
    reason_codes,
    register,
    require_upstreams,
    temporal_environment,
    text_of,
    toml_list,
    toml_str,
    unlock,
)

from writ.attestations.audit import AuditLog
from writ.engine.cli.audit import audit
from writ.engine.core.db import open_database
from writ.engine.core.settings import Settings
from writ.engine.gateway.listing import definition_digest

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class Env:
    def __init__(self, root: Path) -> None:
        node = require_upstreams()
        self.root = root
        self.repo = make_repo(root / "repo")
        self.files = root / "files"
        self.files.mkdir()
        (self.files / "notes.txt").write_text("read me\n")
        self.data_dir = root / "writ-home"
        self.stderr = root / "gateway.stderr"
        self.config = root / "writ.toml"
        self.config.write_text(f"""
[gateway]
call_timeout_s = 30

[upstreams.git]
command = {toml_str(sys.executable)}
args = {toml_list(["-m", "mcp_server_git", "--repository", str(self.repo)])}

[upstreams.fs]
command = {toml_str(node)}
args = {toml_list([str(FS_SERVER), str(self.files)])}""")
        register(self.data_dir, STANDARD_PRINCIPALS)

    def client(self, principal: str) -> Iterator[GatewayClient]:
        with gateway_client(self.config, principal, self.data_dir, self.stderr) as client:
            yield client


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return Env(tmp_path_factory.mktemp("gateway"))


@pytest.fixture(scope="module")
def planner(env: Env) -> Iterator[GatewayClient]:
    yield from env.client("plan-bot")


@pytest.fixture(scope="module")
def executor(env: Env) -> Iterator[GatewayClient]:
    yield from env.client("exec-bot")


def test_tools_are_namespaced_and_carry_their_definition_digest(planner: GatewayClient) -> None:
    tools = {t.name: t for t in planner.list_tools()}
    assert {"git__git_status", "git__git_commit", "fs__read_text_file", "fs__write_file"} <= set(tools)
    assert all(name.startswith(("git__", "fs__", "writ__")) for name in tools)
    # Writ's own tools: a planner sees those its role may call.
    assert {n for n in tools if n.startswith("writ__")} == {"writ__writ_plan_propose", "writ__writ_plan_status"}
    for name, tool in tools.items():
        meta = tool.meta or {}
        server, _, upstream_name = name.partition("__")
        assert (meta["writ/server"], meta["writ/tool"]) == (server, upstream_name)
        assert DIGEST.match(meta["writ/definition_digest"])
        # An agent (or a plan author) can recompute the digest from the definition it was shown.
        assert definition_digest(tool.model_copy(update={"name": upstream_name})) == meta["writ/definition_digest"]
    assert tools["git__git_status"].annotations and tools["git__git_status"].annotations.read_only_hint is True


def test_digests_are_stable_across_gateway_and_upstream_restarts(planner: GatewayClient,
                                                                  executor: GatewayClient) -> None:
    # Two gateway processes, each with its own upstream processes.
    digests = [{t.name: (t.meta or {})["writ/definition_digest"] for t in c.list_tools()
                if not t.name.startswith("writ__")} for c in (planner, executor)]  # Writ's own differ by role
    assert digests[0] == digests[1]


def test_planner_reads_git_status(planner: GatewayClient, env: Env) -> None:
    result = planner.call("git__git_status", {"repo_path": str(env.repo)})
    assert not result.is_error, text_of(result)
    assert "On branch main" in text_of(result)
    assert "README.md" in text_of(result)  # the staged change: a real answer from the real repository


def test_planner_reads_a_file(planner: GatewayClient, env: Env) -> None:
    result = planner.call("fs__read_text_file", {"path": str(env.files / "notes.txt")})
    assert not result.is_error, text_of(result)
    assert "read me" in text_of(result)


def test_stdin_pieces_crlf_and_batched_lines_are_read_as_whole_messages(env: Env) -> None:
    """`writ mcp` reads its stdin on the event loop: however the pipe cuts what a client writes (a message in two
    writes split inside a UTF-8 character, two messages in one write, CRLF line ends), each message arrives
    whole and is answered once; at EOF the gateway exits 0."""
    accented = env.files / "café.txt"
    accented.write_text("crème\n")
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "pieces", "version": "0"}}}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "fs__read_text_file", "arguments": {"path": str(accented)}}}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
    call_bytes = json.dumps(call, ensure_ascii=False).encode()
    cut = call_bytes.index("é".encode()) + 1  # inside the two bytes of é
    with env.stderr.open("ab") as errlog:
        proc = subprocess.Popen(
            [sys.executable, "-m", "writ.engine.cli.gateway", "--principal", "plan-bot", "--config", str(env.config),
             "--data-dir", str(env.data_dir)], cwd=env.config.parent, env=temporal_environment(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(init).encode() + b"\r\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 1
        proc.stdin.write(json.dumps(initialized).encode() + b"\n" + call_bytes[:cut])
        proc.stdin.flush()
        time.sleep(0.2)  # lets the gateway read the first piece on its own
        proc.stdin.write(call_bytes[cut:] + b"\r\n" + json.dumps(ping).encode() + b"\n")
        proc.stdin.flush()
        answers = sorted((json.loads(proc.stdout.readline()) for _ in range(2)), key=lambda a: a["id"])
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [a["id"] for a in answers] == [2, 3]
    result = answers[0]["result"]
    assert not result.get("isError") and "crème" in result["content"][0]["text"], result
    assert answers[1]["result"] == {}
    assert proc.stdout.read() == b""  # nothing else was written: one answer per request


def test_unknown_tool_is_a_protocol_error_not_a_tool_result(planner: GatewayClient) -> None:
    for name in ("git__no_such_tool", "nosuchserver__git_status", "git_status", ""):
        with pytest.raises(MCPError) as err:
            planner.call(name)
        assert err.value.code == -32602, name


def test_planner_write_is_denied_not_executed_and_locks_the_session(env: Env) -> None:
    target = env.files / "planner-wrote-this.txt"
    with gateway_client(env.config, "plan-bot", env.data_dir, env.stderr) as planner:  # its own session
        result = planner.call("fs__write_file", {"path": str(target), "content": "x"})
        assert result.is_error
        assert reason_codes(result) == ["planner_cannot_write"]
        assert text_of(result).startswith("denied [planner_cannot_write]: planners may not change anything")
        assert "obligation [lock_session]" in text_of(result)
        assert not target.exists()

        result = planner.call("git__git_commit", {"repo_path": str(env.repo), "message": "sneaky"})
        assert result.is_error
        assert "planner_cannot_write" in reason_codes(result)
        assert commit_count(env.repo) == 1  # the staged change was there to commit: nothing was

        result = planner.call("git__git_status", {"repo_path": str(env.repo)})  # even a read, now
        assert result.is_error and reason_codes(result) == ["session_locked"]
    unlock(env.data_dir, "plan-bot")  # the principal was locked too: the module's other plan-bot sessions go on


def test_executor_write_without_a_plan_is_denied_plan_required(executor: GatewayClient, env: Env) -> None:
    target = env.files / "executor-wrote-this.txt"
    result = executor.call("fs__write_file", {"path": str(target), "content": "x"})
    assert result.is_error
    assert reason_codes(result) == ["plan_required"]
    assert text_of(result).startswith("denied [plan_required]: executors may write only as a step of an approved plan")
    assert not target.exists()

    result = executor.call("git__git_commit", {"repo_path": str(env.repo), "message": "unplanned"})
    assert reason_codes(result) == ["plan_required"]
    assert commit_count(env.repo) == 1

    result = executor.call("git__git_log", {"repo_path": str(env.repo)})  # plan_required does not lock
    assert not result.is_error and "initial" in text_of(result)


def test_an_http_upstream_is_governed_the_same_and_its_loss_reported(planner: GatewayClient, env: Env,
                                                                       tmp_path: Path) -> None:
    with http_git_server(env.repo, tmp_path / "http-git.log") as (url, server):
        config = tmp_path / "writ.toml"
        config.write_text(f"[gateway]\nmax_restarts = 0\n[upstreams.git]\nurl = {toml_str(url)}\n")
        with gateway_client(config, "plan-bot", env.data_dir, env.stderr) as client:
            over_http = {t.name: (t.meta or {})["writ/definition_digest"] for t in client.list_tools()
                         if t.name.startswith("git__")}
            over_stdio = {t.name: (t.meta or {})["writ/definition_digest"]
                          for t in planner.list_tools() if t.name.startswith("git__")}
            assert over_http == over_stdio  # the digest is of the definition, not of the transport

            result = client.call("git__git_status", {"repo_path": str(env.repo)})
            assert not result.is_error and "On branch main" in text_of(result)

            server.kill()
            server.wait()
            result = client.call("git__git_status", {"repo_path": str(env.repo)})
            assert text_of(result).startswith("error [upstream_unavailable]: ")
            # Policy decides before the upstream is even tried.
            assert reason_codes(client.call("git__git_commit", {"repo_path": str(env.repo), "message": "m"})) == [
                "planner_cannot_write"]
    unlock(env.data_dir, "plan-bot")  # that write locked the principal: the module's other plan-bot sessions go on


def test_an_auditor_sees_no_tools_it_could_never_call(env: Env) -> None:
    with gateway_client(env.config, "audit-bot", env.data_dir, env.stderr) as auditor:
        assert auditor.list_tools() == []
        result = auditor.call("git__git_status", {"repo_path": str(env.repo)})  # hidden, not unknown
        assert reason_codes(result) == ["role_not_permitted"]


def test_the_audit_log_holds_every_decision_and_result_and_verifies(executor: GatewayClient, env: Env) -> None:
    allowed = executor.call("git__git_status", {"repo_path": str(env.repo)})
    denied = executor.call("fs__create_directory", {"path": str(env.files / "d")})
    upstream_error = executor.call("fs__read_text_file", {"path": str(env.files / "missing.txt")})
    with pytest.raises(MCPError):
        executor.call("fs__no_such_tool")
    assert not allowed.is_error and upstream_error.is_error  # the upstream's own error result, passed on
    denied_id = (denied.meta or {})["writ/decision"]["decision_id"]

    with open_database(Settings(home=env.data_dir), create=False) as store:
        entries = AuditLog(store).tail(10_000)
    decisions = {e.payload["decision"]["decision_id"]: e.payload for e in entries if e.kind == "decision"}
    results = [e.payload for e in entries if e.kind == "tool_result"]

    assert decisions[denied_id]["decision"]["allow"] is False
    assert decisions[denied_id]["input"]["tool"] == {
        "server": "fs", "name": "create_directory", "annotations": decisions[denied_id]["input"]["tool"]["annotations"],
        "definition_digest": decisions[denied_id]["input"]["tool"]["definition_digest"], "annotations_trusted": False}
    assert not any(r["decision_id"] == denied_id for r in results)  # a deny never reaches the upstream
    # Every result follows an allow of the same call; every allow of a tool call has its result.
    allows = {d for d, p in decisions.items() if p["decision"]["allow"]}
    assert {r["decision_id"] for r in results} == allows
    last_two = results[-2:]
    assert [(r["server"], r["tool"], r["outcome"]) for r in last_two] == [
        ("git", "git_status", "ok"), ("fs", "read_text_file", "tool_error")]
    for r in last_two:
        assert DIGEST.match(r["result_sha256"]) and r["duration_us"] > 0 and DIGEST.match(r["definition_digest"])
    assert {e.kind for e in entries} >= {"gateway_started", "decision", "tool_result", "tool_unknown"}

    verified = CliRunner().invoke(audit, ["verify", "--data-dir", str(env.data_dir)])
    assert verified.exit_code == 0, verified.output
    assert "audit log OK" in verified.output
