"""Real parts for the gateway tests: a git repository, the two upstream servers, `writ mcp` as a subprocess.

    register(data_dir, STANDARD_PRINCIPALS)                  # principals of the trust store
    with gateway_client(config_path, "plan-bot", data_dir, log_dir) as client:
        result = client.call("git__git_status", {"repo_path": str(repo)})

The client is the official `mcp` SDK client over stdio, driven from synchronous tests through
an anyio blocking portal, so one gateway subprocess can serve a whole test module.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parents[2]
FS_SERVER = ROOT / ".mcp-servers" / "node_modules" / "@modelcontextprotocol" / "server-filesystem" / "dist" / "index.js"
# Bound on any one request from a test: a gateway that hangs fails the test instead of the run.
REQUEST_TIMEOUT_S = 45.0


def require_upstreams() -> str:
    """The node binary; skips (fails in CI) when an upstream server is not installed."""
    problems = []
    venv_node = Path(sys.executable).with_name("node")
    node = str(venv_node) if venv_node.exists() else shutil.which("node")
    if node is None:
        problems.append("node is not on PATH")
    if not FS_SERVER.exists():
        problems.append(f"{FS_SERVER} is missing (npm install --prefix .mcp-servers @modelcontextprotocol/server-filesystem)")
    try:
        import mcp_server_git  # noqa: F401
    except ImportError:
        problems.append("mcp-server-git is not installed (pip install mcp-server-git)")
    if problems:
        if os.environ.get("CI"):
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))
    assert node is not None
    return node


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def make_repo(path: Path) -> Path:
    """A git repository with one commit and one staged change (so a git_commit would succeed)."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "t")  # so a git_commit that got through would really commit
    git(path, "config", "user.email", "t@example.com")
    (path / "README.md").write_text("hello\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "initial")
    (path / "README.md").write_text("hello, changed\n")
    git(path, "add", "README.md")
    return path


def commit_count(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD").strip())


def toml_str(value: str | Path) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


def pid_wrapped(pidfile: Path, command: list[str]) -> tuple[str, list[str]]:
    """Run ``command`` under ``sh`` that first appends its pid (which ``exec`` hands on) to ``pidfile``."""
    return "/bin/sh", ["-c", 'echo $$ >> "$0"; exec "$@"', str(pidfile), *command]


# Who the gateways of the tests act for: principals of the data directory's trust store.
STANDARD_PRINCIPALS = {"plan-bot": "planner", "exec-bot": "executor", "audit-bot": "auditor"}


def register(data_dir: Path, principals: dict[str, str], *, keys: bool = False) -> dict[str, Path]:
    """Add the principals that are not there yet to ``data_dir``'s trust store; with ``keys``, give each a new
    key, saved where `writ keys new` saves it. Returns the private key files.
    """
    from writ.engine.core.settings import Settings
    from writ.engine.wiring.services import key_file_name, keys_dir, open_services
    from writ.plans.keys import PrivateKey

    settings = Settings(home=data_dir)
    paths: dict[str, Path] = {}
    with open_services(settings) as w:
        known = {p.name for p in w.trust.principals()}
        for name, role in principals.items():
            if name not in known:
                w.trust.add_principal(name, role)
            if keys:
                key = PrivateKey.generate()
                paths[name] = keys_dir(settings) / key_file_name(name, key.key_id)
                key.save(paths[name])
                w.trust.add_key(name, key.public_key)
    return paths


def unlock(data_dir: Path, principal: str) -> None:
    """An operator lifts ``principal``'s lock (`writ principals unlock`): a violation locks the principal itself,
    in every gateway process and session (issue 9, finding 1), so a test that provokes one lifts it after.
    """
    from writ.engine.core.settings import Settings
    from writ.engine.wiring.services import open_services

    with open_services(Settings(home=data_dir)) as w:
        w.trust.unlock_principal(principal, reason="the violation was the test's own")


class GatewayClient:
    """Synchronous calls into an MCP client session that lives on the portal's event loop."""

    def __init__(self, portal: BlockingPortal, session: ClientSession) -> None:
        self.portal = portal
        self.session = session

    def call(self, name: str, args: dict[str, Any] | None = None) -> types.CallToolResult:
        async def go() -> types.CallToolResult:
            return await self.session.call_tool(name, args or {}, read_timeout_seconds=REQUEST_TIMEOUT_S)

        return self.portal.call(go)

    def list_tools(self) -> list[types.Tool]:
        async def go() -> list[types.Tool]:
            return (await self.session.list_tools()).tools

        return self.portal.call(go)


@contextmanager
def http_gateway_client(url: str, token: str) -> Iterator[GatewayClient]:
    """A new MCP session over streamable HTTP at ``url`` (``writ serve``'s ``/mcp``), authenticated by ``token``."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    @asynccontextmanager
    async def connect() -> AsyncIterator[ClientSession]:
        async with (
            create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write, read_timeout_seconds=REQUEST_TIMEOUT_S) as session,
        ):
            await session.initialize()
            yield session

    with start_blocking_portal() as portal, portal.wrap_async_context_manager(connect()) as session:
        yield GatewayClient(portal, session)


def temporal_environment() -> dict[str, str]:
    """The SDK's default child environment and the test's WRIT_TEMPORAL_* (its dev server and task queue)."""
    from mcp.client.stdio import get_default_environment

    return {**get_default_environment(), **{k: v for k, v in os.environ.items() if k.startswith("WRIT_TEMPORAL_")}}


@contextmanager
def gateway_client(config: Path, principal: str, data_dir: Path, stderr_file: Path,
                   env: dict[str, str] | None = None) -> Iterator[GatewayClient]:
    """`python -m writ.engine.cli.gateway` (the `writ mcp` command) as a subprocess, and a session to it.

    ``env``: WRIT_* settings of that process, beside the test's Temporal (``temporal_environment``).
    """
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "writ.engine.cli.gateway", "--principal", principal, "--config", str(config),
              "--data-dir", str(data_dir), "-v"],
        cwd=str(config.parent),
        env={**temporal_environment(), **(env or {})},
    )

    @asynccontextmanager
    async def connect() -> AsyncIterator[ClientSession]:
        with stderr_file.open("a") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write, read_timeout_seconds=REQUEST_TIMEOUT_S) as session,
            ):
                await session.initialize()
                yield session

    with start_blocking_portal() as portal, portal.wrap_async_context_manager(connect()) as session:
        yield GatewayClient(portal, session)


HTTP_GIT_SERVER = """
import sys, anyio
from pathlib import Path
from mcp_server_git.server import create_server
anyio.run(lambda: create_server(Path(sys.argv[1])).run_streamable_http_async(port=int(sys.argv[2])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def http_git_server(repo: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """mcp-server-git's own server object, served over streamable HTTP by the SDK: (its URL, its process)."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", HTTP_GIT_SERVER, str(repo), str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, 30, f"the HTTP git server did not start; see {log}")
        yield f"http://127.0.0.1:{port}/mcp", proc
    finally:
        proc.kill()
        proc.wait()


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def reason_codes(result: types.CallToolResult) -> list[str]:
    meta = (result.meta or {}).get("writ/decision") or {}
    return [r["code"] for r in meta.get("reasons", [])]


def error_code(result: types.CallToolResult) -> str | None:
    """The code of a refusal that is not a policy deny: a refused claim, a failed Writ tool, an upstream error."""
    meta = (result.meta or {}).get("writ/decision") or {}
    code = meta.get("error")
    return str(code) if code is not None else None


# An upstream whose one tool's description is read from a file at every tools/list: edit the file
# and the definition (so its digest) changes under a running gateway, as in a rug pull. The tool
# appends its "text" argument to a file, so a test can see whether a call ever reached it.
NOTES_SERVER = """
import sys
from pathlib import Path

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

description, notes = Path(sys.argv[1]), Path(sys.argv[2])


async def list_tools(ctx, params):
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    return types.ListToolsResult(tools=[types.Tool(name="append_note", description=description.read_text(),
                                                   input_schema=schema)])


async def call_tool(ctx, params):
    with notes.open("a") as f:
        f.write((params.arguments or {}).get("text", "") + "\\n")
    return types.CallToolResult(content=[types.TextContent(type="text", text="noted")])


async def main():
    server = Server("notes", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


anyio.run(main)
"""


def notes_server(directory: Path, description: str = "Append a line of text to the notes.") -> tuple[list[str], Path, Path]:
    """(command, description file, notes file) for a NOTES_SERVER upstream kept in ``directory``."""
    script, desc, notes = directory / "notes_server.py", directory / "notes-description.txt", directory / "notes.txt"
    script.write_text(NOTES_SERVER)
    desc.write_text(description)
    return [sys.executable, str(script), str(desc), str(notes)], desc, notes


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float, failure: str) -> None:
    """Wait until something listens on 127.0.0.1:port; fail the test if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(failure)
            time.sleep(0.1)


def write_two_upstream_config(root: Path, node: str) -> tuple[Path, Path, Path]:
    """A git repo, a files dir with notes.txt, and config/writ.toml serving both (git, fs).

    The config lives apart from the data directory: `writ mcp` refuses upstreams that could read it.
    Returns (repo, files, config).
    """
    repo = make_repo(root / "repo")
    files = root / "files"
    files.mkdir()
    (files / "notes.txt").write_text("read me\n")
    config_dir = root / "config"
    config_dir.mkdir()
    config = config_dir / "writ.toml"
    config.write_text(f"""
[gateway]
call_timeout_s = 30

[upstreams.git]
command = {toml_str(sys.executable)}
args = {toml_list(["-m", "mcp_server_git", "--repository", str(repo)])}

[upstreams.fs]
command = {toml_str(node)}
args = {toml_list([str(FS_SERVER), str(files)])}""")
    return repo, files, config


def issue_token(data_dir: Path, principal: str) -> str:
    """A new bearer token for ``principal``, through `writ tokens new`."""
    from click.testing import CliRunner

    from writ.engine.cli.main import main

    result = CliRunner().invoke(main, ["tokens", "new", "--principal", principal, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def audit_entries(data_dir: Path) -> list[Any]:
    """Every entry of ``data_dir``'s audit log, oldest first."""
    from writ.attestations.audit import AuditLog
    from writ.engine.core.db import open_database
    from writ.engine.core.settings import Settings

    with open_database(Settings(home=data_dir), create=False) as store:
        return AuditLog(store).tail(100_000)


@contextmanager
def serve_gateway(config: Path, data_dir: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`writ serve --config` as a subprocess (cwd: the config's directory): the URL of its /mcp."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from writ.engine.cli.main import main; main()", "serve", "--port", str(port),
             "--config", str(config), "--data-dir", str(data_dir)],
            cwd=config.parent, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, proc, 60, f"writ serve did not start; see {log}")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
