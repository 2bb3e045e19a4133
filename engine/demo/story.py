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

The stage (tools, data directory, narrator, agents) is ``writ.engine.demo.scene``.
Raises ``DemoFailed`` (a ``WritError``) when something does not happen as it should,
naming what and where the gateway logs are.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

from writ.engine.core.errors import WritError
from writ.engine.demo.evidence import epilogue
from writ.engine.demo.scene import (
    PRINCIPALS,
    Agent,
    BrowserHook,
    DemoFailed,
    Echo,
    Narrator,
    Scene,
    build_scene,
    fresh_data_dir,
    gateway,
    git,
    prerequisites,
    text_of,
)
from writ.engine.demo.temporal import demo_temporal, send_approval
from writ.engine.gateway.exposure import private_dir
from writ.engine.wiring.datadir import init_data_dir
from writ.engine.wiring.services import Services, key_file_name, keys_dir, open_services
from writ.plans.keys import PrivateKey, short_key_id
from writ.workflows.approval.client import ApprovalClient
from writ.workflows.approval.worker import approval_worker

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
