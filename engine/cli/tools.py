"""``writ tools list``: every upstream tool as the gateway exposes it, with its class and definition digest.

    $ writ tools list --config writ.toml
    TOOL               CLASS  FROM         DEFINITION DIGEST
    fs__write_file     write  policy data  sha256:5c0f...
    git__git_status    read   policy data  sha256:91ab...
    $ writ tools list --config writ.toml --json | jq '.tools[] | select(.class == "write")'

The upstreams are started as ``writ mcp`` starts them (same config, same checks), listed, and
stopped. The class is the policy's own (``data.writ.authz.class``, what the gateway decides
with); FROM says where it came from: the tool's entry in the policy data (``data.writ.tools``),
the tool's read-only annotation (only for servers whose ``trust_annotations`` is true), or the
default, write. A plan step names a write as ``{"server": "fs", "tool": "write_file",
"definition_digest": "sha256:..."}`` with the digest shown here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import JSON_OPTION, echo_json, settings, table
from writ.engine.core import reasons

if TYPE_CHECKING:
    from writ.engine.gateway.config import GatewayConfig
    from writ.engine.gateway.listing import UpstreamTool
    from writ.engine.policy.models import Tool
    from writ.plans.assessment import PolicyEvaluator

CLASS_PATH = "writ.authz.class"
TOOLS_DATA_PATH = "writ.tools"
FROM_DATA, FROM_ANNOTATIONS, FROM_DEFAULT = "policy data", "annotations", "default"


@dataclass(frozen=True)
class ClassifiedTool:
    """An upstream tool, its class by policy (``read``, ``write``), where the class came from, and its digest."""

    server: str
    tool: str
    tool_class: str
    source: str
    digest: str

    @property
    def exposed_name(self) -> str:
        return f"{self.server}__{self.tool}"

    def to_json(self) -> dict[str, str]:
        return {"name": self.exposed_name, "server": self.server, "tool": self.tool, "class": self.tool_class,
                "class_from": self.source, "definition_digest": self.digest}


@dataclass(frozen=True)
class Listing:
    """What the upstreams of a config offered: their classified tools, and why any upstream gave none."""

    tools: list[ClassifiedTool]
    problems: dict[str, str]

    def tool(self, server: str, name: str) -> ClassifiedTool | None:
        return next((t for t in self.tools if t.server == server and t.tool == name), None)


def policy_tool(entry: UpstreamTool) -> Tool:
    """The policy input's ``tool`` for an upstream tool, as the gateway builds it for a tools/call."""
    from writ.engine.policy.models import Tool, ToolAnnotations

    hints = entry.tool.annotations
    annotations = ToolAnnotations(
        read_only=hints.read_only_hint, destructive=hints.destructive_hint,
        idempotent=hints.idempotent_hint, open_world=hints.open_world_hint,
    ) if hints else ToolAnnotations()
    return Tool(server=entry.server, name=entry.tool.name, annotations=annotations, definition_digest=entry.digest,
                annotations_trusted=entry.annotations_trusted)


def tools_data(policy: PolicyEvaluator) -> Mapping[str, Any]:
    """``data.writ.tools.servers``: the classification in the policy data (empty if the policy set has none)."""
    from writ.engine.core.errors import PolicyEvaluationError

    try:
        doc = policy.evaluate(TOOLS_DATA_PATH)
    except PolicyEvaluationError as e:
        if e.code == reasons.POLICY_UNDEFINED:
            return {}
        raise
    servers = doc.get("servers") if isinstance(doc, dict) else None
    return servers if isinstance(servers, dict) else {}


def listed_in_data(data: Mapping[str, Any], server: str, tool: str) -> str | None:
    """The class ``data.writ.tools`` gives ``server``'s ``tool``, or None when it has no entry."""
    entry = data.get(server)
    tools = entry.get("tools") if isinstance(entry, dict) else None
    value = tools.get(tool) if isinstance(tools, dict) else None
    return str(value) if value is not None else None


def classify(policy: PolicyEvaluator, data: Mapping[str, Any], entry: UpstreamTool) -> ClassifiedTool:
    """The class policy gives ``entry`` (``data.writ.authz.class``) and where it came from."""
    doc = {"method": "tools/call", "tool": policy_tool(entry).model_dump(mode="json", by_alias=True)}
    tool_class = str(policy.evaluate(CLASS_PATH, doc))
    if listed_in_data(data, entry.server, entry.tool.name) is not None:
        source = FROM_DATA
    elif tool_class == "read":
        source = FROM_ANNOTATIONS
    else:
        source = FROM_DEFAULT
    return ClassifiedTool(entry.server, entry.tool.name, tool_class, source, entry.digest)


@contextmanager
def _quiet_upstream_logs() -> Iterator[None]:
    """The listing reports a failed upstream itself: keep the supervisor's log lines off the terminal."""
    logger = logging.getLogger("writ.engine.gateway")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def upstream_tools(config: GatewayConfig) -> tuple[list[UpstreamTool], dict[str, str]]:
    """Start every upstream of ``config`` as the gateway does, list its tools, stop it: (tools, problems)."""
    import anyio

    from writ.engine.gateway.upstream import UpstreamManager

    async def run() -> tuple[list[UpstreamTool], dict[str, str]]:
        manager = UpstreamManager(config)
        async with anyio.create_task_group() as tg:
            await manager.start(tg)
            found, status = manager.tools(), manager.status()
            manager.stop()
            tg.cancel_scope.cancel()
        problems = {name: f"upstream {name!r} did not start: {s['problem'] or s['state']}"
                    for name, s in status.items() if s["state"] != "ready"}
        return found, problems

    with _quiet_upstream_logs():
        return anyio.run(run)


def list_tools(config_path: Path, policy: PolicyEvaluator) -> Listing:
    """The classified tools of every upstream of the gateway config at ``config_path``."""
    from writ.engine.gateway.exposure import load_safe_config

    config = load_safe_config(config_path, settings())
    found, problems = upstream_tools(config)
    data = tools_data(policy)
    return Listing([classify(policy, data, entry) for entry in found], problems)


@click.group("tools")
def tools() -> None:
    """List the upstream tools of a gateway config, as the gateway exposes and classifies them.

    \b
    Example:
      writ tools list --config examples/writ.toml
    """


@tools.command("list")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), default=Path("writ.toml"),
              show_default=True, help="The gateway config whose upstreams to start and list.")
@JSON_OPTION
@writ_command(store="optional")  # the recorded policy directory if there is a data directory
def tools_list(config_path: Path, as_json: bool) -> None:
    """Start each upstream of the config, list its tools with their class and definition digest, stop it.

    CLASS is what policy decides (read: any role that may read calls it; write: only as a
    step of an approved plan). FROM is where the class came from: "policy data"
    (data.writ.tools), "annotations" (the tool says it is read-only and its server's
    trust_annotations is true), or "default" (anything else is a write). Copy a write's
    server, tool and digest into a plan file's step for `writ plan sign`.

    With --json: {"tools": [{name, server, tool, class, class_from, definition_digest}],
    "problems": {upstream: why it gave no tools}}. Exit status 1 if an upstream did not start.

    \b
    Example:
      writ tools list --config examples/writ.toml
      writ tools list --config examples/writ.toml --json
    """
    from writ.engine.policy.pdp import make_engine

    engine = make_engine(settings())
    try:
        listing = list_tools(config_path, engine)
    finally:
        engine.close()
    if as_json:
        echo_json({"tools": [t.to_json() for t in listing.tools], "problems": listing.problems})
    elif listing.tools:
        rows = [("TOOL", "CLASS", "FROM", "DEFINITION DIGEST")]
        rows += [(t.exposed_name, t.tool_class, t.source, t.digest) for t in listing.tools]
        table(rows)
    else:
        click.echo("no tools" + (" (no upstream started)" if listing.problems else ""))
    for problem in listing.problems.values():
        click.echo(click.style(f"error[{reasons.UPSTREAM_UNAVAILABLE}]: ", fg="red", bold=True) + problem, err=True)
    if listing.problems:
        raise SystemExit(1)

