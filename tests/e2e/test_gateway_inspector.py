"""`writ mcp` driven by another client: the MCP Inspector's CLI (`@modelcontextprotocol/inspector` 2.x,
Node), which starts the gateway itself as a stdio server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.gateway import (
    ROOT,
    STANDARD_PRINCIPALS,
    register,
    require_upstreams,
    unlock,
    write_two_upstream_config,
)

INSPECTOR = ROOT / ".mcp-servers" / "node_modules" / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" \
    / "build" / "index.js"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TOOL_IS_ERROR = 5  # the Inspector CLI's exit code when the tool result has isError


@dataclass
class Env:
    node: str
    repo: Path
    files: Path
    config: Path
    data_dir: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    node = require_upstreams()
    if not INSPECTOR.exists():
        message = f"{INSPECTOR} is missing (npm install --prefix .mcp-servers @modelcontextprotocol/inspector)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("inspector")
    repo, files, config = write_two_upstream_config(root, node)
    data_dir = root / "writ-home"
    register(data_dir, STANDARD_PRINCIPALS)
    return Env(node, repo, files, config, data_dir)


def inspect(env: Env, principal: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`inspector --cli ARGS -- writ mcp --principal P ...`: the Inspector starts the gateway as its server."""
    server = [sys.executable, "-m", "writ.engine.cli.gateway", "--principal", principal,
              "--config", str(env.config), "--data-dir", str(env.data_dir)]
    return subprocess.run([env.node, str(INSPECTOR), "--cli", *args, "--", *server], check=False,
                          cwd=env.config.parent,
                          capture_output=True, text=True, timeout=90)


def test_inspector_lists_namespaced_tools_with_their_definition_digest(env: Env) -> None:
    run = inspect(env, "plan-bot", "--method", "tools/list")
    assert run.returncode == 0, run.stderr
    tools = {t["name"]: t for t in json.loads(run.stdout)["tools"]}
    assert {"git__git_status", "git__git_commit", "fs__read_text_file", "fs__write_file"} <= set(tools)
    meta = tools["git__git_status"]["_meta"]
    assert (meta["writ/server"], meta["writ/tool"]) == ("git", "git_status")
    assert DIGEST.match(meta["writ/definition_digest"])
    assert tools["git__git_status"]["annotations"]["readOnlyHint"] is True


def test_inspector_planner_read_is_allowed(env: Env) -> None:
    run = inspect(env, "plan-bot", "--method", "tools/call", "--tool-name", "git__git_status",
                  "--tool-arg", f"repo_path={env.repo}")
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert not result.get("isError")
    assert "On branch main" in result["content"][0]["text"]


def test_inspector_planner_write_is_denied_and_not_executed(env: Env) -> None:
    target = env.files / "planner-wrote-this.txt"
    run = inspect(env, "plan-bot", "--method", "tools/call", "--tool-name", "fs__write_file",
                  "--tool-arg", f"path={target}", "--tool-arg", "content=x")
    assert run.returncode == TOOL_IS_ERROR, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("denied [planner_cannot_write]")
    assert [r["code"] for r in result["_meta"]["writ/decision"]["reasons"]] == ["planner_cannot_write"]
    assert not target.exists()
    unlock(env.data_dir, "plan-bot")  # the write locked the principal: the module's other plan-bot runs go on
