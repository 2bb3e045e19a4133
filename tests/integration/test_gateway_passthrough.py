"""Everything but tools through the gateway: prompts, resources, completions, progress, logging, and the
upstream's own sampling and elicitation requests, each decided by policy and audited.

The upstream is the MCP reference server `@modelcontextprotocol/server-everything` (npm), which has
all of these; the gateway is a real `writ mcp` (stdio) and, for the routing between sessions, a real
`writ serve` (HTTP). The agent side is the official SDK client with sampling, elicitation and logging
callbacks that record what reaches them. The policy is the shipped one, with the everything server's
tools classed as reads and one rule a security team might add: no upstream may ask a human for input
(elicitation).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from support.gateway import (
    REQUEST_TIMEOUT_S,
    audit_entries,
    issue_token,
    register,
    require_upstreams,
    serve_gateway,
    text_of,
    toml_list,
    toml_str,
)

from writ.engine.core.settings import shipped_policy_dir

ROOT = Path(__file__).resolve().parents[2]
# `writ serve` runs the approval worker: it reaches the session's Temporal dev server, and starts none.
pytestmark = pytest.mark.usefixtures("temporal_module")

EVERYTHING = ROOT / ".mcp-servers/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
PRINCIPALS = {"plan-bot": "planner", "exec-bot": "executor", "exec-2": "executor", "audit-bot": "auditor"}
READ_TOOLS = ["echo", "trigger-sampling-request", "trigger-elicitation-request", "trigger-long-running-operation",
              "toggle-simulated-logging", "toggle-subscriber-updates"]
# An upstream whose one tool reports what its client (Writ's upstream side) declared at initialize.
PROBE_SERVER = """
import json

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[types.Tool(name="client_capabilities", input_schema={"type": "object"})])


async def call_tool(ctx, params):
    caps = ctx.session.client_params.capabilities.model_dump(mode="json", by_alias=True, exclude_none=True)
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(caps))])


async def main():
    server = Server("probe", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


anyio.run(main)
"""
# An upstream an attacker controls, sending back more than limits.max_result_bytes outside any result: a
# JSON-RPC error to a tool call or a resource read, and a log message during a call (argv[1]: how many bytes).
FLOODING_SERVER = """
import sys

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

N = int(sys.argv[1])


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[types.Tool(name="shout", input_schema={"type": "object"}),
                                        types.Tool(name="chatty", input_schema={"type": "object"})])


async def call_tool(ctx, params):
    if params.name == "shout":
        raise MCPError(types.INTERNAL_ERROR, "E" * N, data={"more": "D" * N})
    await ctx.session.send_log_message("error", {"blob": "L" * N}, logger="flood")
    await ctx.session.send_log_message("error", "a small one", logger="flood")
    return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])


async def list_resources(ctx, params):
    return types.ListResourcesResult(resources=[types.Resource(uri="flood://big", name="big")])


async def read_resource(ctx, params):
    raise MCPError(types.INTERNAL_ERROR, "R" * N)


async def main():
    server = Server("flooding", on_list_tools=list_tools, on_call_tool=call_tool,
                    on_list_resources=list_resources, on_read_resource=read_resource)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


anyio.run(main)
"""
NO_ELICITATION = """package writ.authz

# A security team's own rule: no upstream may ask our people for input.
deny contains reason("elicitation_forbidden", "upstream servers may not ask for user input here") if {
	input.method == "elicitation/create"
}
"""


@dataclass
class Agent:
    """What reached the agent's client of its own accord."""

    sampled: list[types.CreateMessageRequestParams] = field(default_factory=list)
    elicited: list[types.ElicitRequestParams] = field(default_factory=list)
    logs: list[types.LoggingMessageNotificationParams] = field(default_factory=list)
    notes: list[Any] = field(default_factory=list)

    async def sampling(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.sampled.append(params)
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text="the agent's model says hi"))

    async def elicitation(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicited.append(params)
        return types.ElicitResult(action="decline")

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    async def message(self, message: Any) -> None:
        if not isinstance(message, Exception):
            self.notes.append(message)

    def callbacks(self) -> dict[str, Any]:
        return {"sampling_callback": self.sampling, "elicitation_callback": self.elicitation,
                "logging_callback": self.log, "message_handler": self.message,
                "read_timeout_seconds": REQUEST_TIMEOUT_S}


class Client:
    """A synchronous face on an SDK session that lives on a portal's event loop."""

    def __init__(self, portal: BlockingPortal, session: ClientSession, agent: Agent) -> None:
        self.portal, self.session, self.agent = portal, session, agent

    def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async def go() -> Any:
            return await fn(*args, **kwargs)

        return self.portal.call(go)

    def call(self, name: str, args: dict[str, Any] | None = None, **kwargs: Any) -> types.CallToolResult:
        return self(self.session.call_tool, name, args or {}, **kwargs)

    def wait_for(self, what: str, predicate: Any, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.portal.call(anyio.sleep, 0.1)


@dataclass
class Setup:
    root: Path
    data_dir: Path
    config: Path
    policy_dir: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "WRIT_POLICY_DIR": str(self.policy_dir)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    node = require_upstreams()
    if not EVERYTHING.exists():
        pytest.fail(f"{EVERYTHING} is missing: npm ci --prefix .mcp-servers")
    root = tmp_path_factory.mktemp("passthrough")
    policy_dir = root / "policies"
    shutil.copytree(shipped_policy_dir(), policy_dir)
    tools_json = policy_dir / "writ" / "tools.json"
    tools = json.loads(tools_json.read_text())
    tools["servers"]["everything"] = {"description": "the MCP reference server", "trust_annotations": False,
                                      "tools": dict.fromkeys(READ_TOOLS, "read")}
    tools["servers"]["probe"] = {"description": "reports its client's capabilities", "trust_annotations": False,
                                 "tools": {"client_capabilities": "read"}}
    tools["servers"]["flooding"] = {"description": "sends more than the result limit outside results",
                                    "trust_annotations": False, "tools": {"shout": "read", "chatty": "read"}}
    tools_json.write_text(json.dumps(tools, indent=2))
    (policy_dir / "writ" / "no_elicitation.rego").write_text(NO_ELICITATION)
    config_dir = root / "config"
    config_dir.mkdir()
    probe = config_dir / "probe_server.py"
    probe.write_text(PROBE_SERVER)
    config = config_dir / "writ.toml"
    config.write_text(f"""
[gateway]
call_timeout_s = 30
session_idle_timeout_s = 3

[upstreams.everything]
command = {toml_str(node)}
args = {toml_list([str(EVERYTHING), "stdio"])}

[upstreams.probe]
command = {toml_str(sys.executable)}
args = {toml_list([str(probe)])}
""")
    data_dir = root / "writ-home"
    register(data_dir, PRINCIPALS)
    return Setup(root, data_dir, config, policy_dir)


@contextmanager
def stdio_gateway(setup: Setup, principal: str, env: dict[str, str] | None = None) -> Iterator[Client]:
    """`writ mcp --principal P` with the everything server behind it, and an agent session to it."""
    agent = Agent()
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "writ.engine.cli.gateway", "--principal", principal, "--config", str(setup.config),
              "--data-dir", str(setup.data_dir), "-v"],
        cwd=str(setup.config.parent), env={**setup.env(), **(env or {})})

    @asynccontextmanager
    async def connect() -> AsyncIterator[ClientSession]:
        with (setup.root / f"mcp-{principal}.log").open("a") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write, **agent.callbacks()) as session,
            ):
                await session.initialize()
                yield session

    with on_portal(connect(), agent) as client:
        yield client


@contextmanager
def on_portal(connect: AbstractAsyncContextManager[ClientSession], agent: Agent) -> Iterator[Client]:
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(connect) as session:
        yield Client(portal, session, agent)


@pytest.fixture(scope="module")
def executor(setup: Setup) -> Iterator[Client]:
    with stdio_gateway(setup, "exec-bot") as client:
        yield client


def decisions(setup: Setup, method: str) -> list[dict[str, Any]]:
    return [e.payload for e in audit_entries(setup.data_dir)
            if e.kind == "decision" and e.payload.get("input", {}).get("method") == method]


# --- prompts ---------------------------------------------------------------------------------


def test_prompts_are_listed_under_their_server_and_got_through_policy(setup: Setup, executor: Client) -> None:
    names = [p.name for p in executor(executor.session.list_prompts).prompts]
    assert "everything__simple-prompt" in names and "everything__args-prompt" in names
    assert all(n.startswith("everything__") for n in names)

    result = executor(executor.session.get_prompt, "everything__args-prompt", {"city": "Lisbon", "state": "PT"})
    texts = [m.content.text for m in result.messages if isinstance(m.content, types.TextContent)]
    assert any("Lisbon" in t for t in texts), texts

    got = decisions(setup, "prompts/get")
    assert got and got[-1]["input"]["tool"] == {**got[-1]["input"]["tool"], "server": "everything",
                                                 "name": "args-prompt"}
    assert got[-1]["decision"]["allow"] is True
    results = [e.payload for e in audit_entries(setup.data_dir) if e.kind == "request_result"]
    assert any(r["method"] == "prompts/get" and r["outcome"] == "ok" and r["result_sha256"].startswith("sha256:")
               for r in results)


def test_an_unknown_prompt_is_invalid_params(executor: Client) -> None:
    for name in ("simple-prompt", "nosuch__simple-prompt"):
        with pytest.raises(MCPError) as e:
            executor(executor.session.get_prompt, name)
        assert e.value.code == types.INVALID_PARAMS and "Unknown prompt" in e.value.message


# --- resources -------------------------------------------------------------------------------


def test_resources_are_namespaced_and_read_through_policy(setup: Setup, executor: Client) -> None:
    listed = executor(executor.session.list_resources).resources
    uris = [str(r.uri) for r in listed]
    assert uris and all(u.startswith("writ://everything/demo://") for u in uris), uris
    templates = [t.uri_template for t in executor(executor.session.list_resource_templates).resource_templates]
    assert "writ://everything/demo://resource/dynamic/text/{resourceId}" in templates

    result = executor(executor.session.read_resource, uris[0])
    assert [str(c.uri) for c in result.contents] == [uris[0]]
    assert isinstance(result.contents[0], types.TextResourceContents) and result.contents[0].text

    # A URI made from a template is read too: the server is in the name, not in a listing.
    dynamic = executor(executor.session.read_resource, "writ://everything/demo://resource/dynamic/text/7")
    assert str(dynamic.contents[0].uri) == "writ://everything/demo://resource/dynamic/text/7"
    names = [d["input"]["tool"]["name"] for d in decisions(setup, "resources/read")]
    assert "demo://resource/dynamic/text/7" in names


def test_huge_resource_or_prompt_result_is_not_passed_on(setup: Setup) -> None:
    """limits.max_result_bytes bounds what an upstream sends back through resources/read and prompts/get too,
    not only tools/call: over it, the agent gets result_too_large and the log only its size and sha256."""
    limit = 2000
    with stdio_gateway(setup, "exec-bot", env={"WRIT_LIMITS__MAX_RESULT_BYTES": str(limit)}) as small:
        fine = small(small.session.read_resource, "writ://everything/demo://resource/dynamic/text/7")
        assert fine.contents  # a small result still passes
        refused = []
        with pytest.raises(MCPError) as e:
            small(small.session.read_resource, "writ://everything/demo://resource/static/document/features.md")
        refused.append(e.value)
        city = "Lisbon " * 600  # the args prompt says it back: a result over the limit
        with pytest.raises(MCPError) as e:
            small(small.session.get_prompt, "everything__args-prompt", {"city": city})
        refused.append(e.value)
    for error in refused:
        assert error.code == types.INVALID_REQUEST and "result_too_large" in error.message, error.message
    logged = [e.payload for e in audit_entries(setup.data_dir)
              if e.kind == "request_result" and e.payload["outcome"] == "result_too_large"]
    assert sorted(r["method"] for r in logged[-2:]) == ["prompts/get", "resources/read"]
    for entry in logged[-2:]:
        assert entry["result_bytes"] > limit and entry["result_sha256"].startswith("sha256:")
        assert "Lisbon Lisbon" not in json.dumps(entry) and "## " not in json.dumps(entry)


def test_an_upstream_error_or_log_message_over_the_limit_is_not_passed_on(setup: Setup, tmp_path: Path) -> None:
    """limits.max_result_bytes also bounds what a hostile upstream sends outside a result: its JSON-RPC error to a
    tool call or a resource read (result_too_large instead), and a log message it sends meanwhile (dropped)."""
    limit, size = 2000, 50_000
    script = tmp_path / "flooding_server.py"
    script.write_text(FLOODING_SERVER)
    config = tmp_path / "writ.toml"
    config.write_text(f"""
[upstreams.flooding]
command = {toml_str(sys.executable)}
args = {toml_list([str(script), str(size)])}
""")
    flooded = Setup(setup.root, setup.data_dir, config, setup.policy_dir)
    with stdio_gateway(flooded, "exec-bot", env={"WRIT_LIMITS__MAX_RESULT_BYTES": str(limit)}) as client:
        errors = []
        with pytest.raises(MCPError) as e:
            client.call("flooding__shout")
        errors.append(e.value)
        with pytest.raises(MCPError) as e:
            client(client.session.read_resource, "writ://flooding/flood://big")
        errors.append(e.value)
        assert not client.call("flooding__chatty").is_error
        client.wait_for("the small log message", lambda: any(m.data == "a small one" for m in client.agent.logs))
    for error in errors:
        assert len(error.message) < limit and len(json.dumps(error.data)) < limit, (len(error.message), error.data)
        assert error.code == types.INTERNAL_ERROR and "result_too_large" in error.message, error.message
    assert [m.data for m in client.agent.logs if m.logger == "flooding.flood"] == ["a small one"]


def test_a_uri_without_a_known_server_is_invalid_params(executor: Client) -> None:
    for uri in ("demo://resource/static/document/features.md", "writ://nosuch/demo://x", "writ://everything"):
        with pytest.raises(MCPError) as e:
            executor(executor.session.read_resource, uri)
        assert e.value.code == types.INVALID_PARAMS and "Unknown resource" in e.value.message


def test_a_subscribed_resource_reports_updates_under_its_exposed_uri(executor: Client) -> None:
    uri = "writ://everything/demo://resource/dynamic/text/1"
    executor(executor.session.subscribe_resource, uri)
    assert not executor.call("everything__toggle-subscriber-updates").is_error
    try:
        executor.wait_for("a resource update", lambda: any(
            isinstance(n, types.ResourceUpdatedNotification) for n in executor.agent.notes))
    finally:
        executor.call("everything__toggle-subscriber-updates")
        executor(executor.session.unsubscribe_resource, uri)
    updated = {str(n.params.uri) for n in executor.agent.notes if isinstance(n, types.ResourceUpdatedNotification)}
    assert updated == {uri}


# --- completions, progress, logging ------------------------------------------------------------


def test_completion_of_a_prompt_argument(setup: Setup, executor: Client) -> None:
    ref = types.PromptReference(type="ref/prompt", name="everything__completable-prompt")
    result = executor(executor.session.complete, ref, {"name": "department", "value": "Eng"})
    assert "Engineering" in result.completion.values
    assert decisions(setup, "completion/complete")[-1]["input"]["tool"]["name"] == "completable-prompt"


def test_progress_reaches_the_agent_under_its_own_token(executor: Client) -> None:
    seen: list[tuple[float, float | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, total))

    result = executor.call("everything__trigger-long-running-operation", {"duration": 1, "steps": 3},
                           progress_callback=progress)
    assert not result.is_error, text_of(result)
    assert [v for v, _ in seen] == [1, 2, 3] and all(t == 3 for _, t in seen)


def test_log_messages_carry_the_server_in_their_logger(executor: Client) -> None:
    executor(executor.session.set_logging_level, "debug")
    assert not executor.call("everything__toggle-simulated-logging").is_error
    try:
        executor.wait_for("a log message", lambda: bool(executor.agent.logs))
    finally:
        executor.call("everything__toggle-simulated-logging")
    assert all((m.logger or "").split(".")[0] == "everything" for m in executor.agent.logs)


# --- the upstream's own requests ---------------------------------------------------------------


def test_sampling_reaches_the_agent_and_its_answer_the_upstream(setup: Setup, executor: Client) -> None:
    before = len(executor.agent.sampled)
    result = executor.call("everything__trigger-sampling-request", {"prompt": "say hi", "maxTokens": 10})
    assert not result.is_error, text_of(result)
    assert "the agent's model says hi" in text_of(result)
    asked = executor.agent.sampled[before:]
    assert len(asked) == 1 and "say hi" in json.dumps(asked[0].model_dump(mode="json"))
    made = decisions(setup, "sampling/createMessage")
    assert made and made[-1]["decision"]["allow"] is True and made[-1]["input"]["principal"] == "exec-bot"


def test_policy_can_refuse_an_upstream_asking_for_input(setup: Setup, executor: Client) -> None:
    result = executor.call("everything__trigger-elicitation-request")
    assert executor.agent.elicited == []  # never reached the agent's client
    # The upstream got a JSON-RPC error naming the reason, and (this server) passed it on in its result.
    assert result.is_error and "denied [elicitation_forbidden]" in text_of(result), text_of(result)
    denied = decisions(setup, "elicitation/create")
    assert denied and [r["code"] for r in denied[-1]["decision"]["reasons"]] == ["elicitation_forbidden"]


def test_upstreams_are_offered_sampling_and_elicitation_but_never_the_agents_roots(executor: Client) -> None:
    # Roots would let the agent's client tell an upstream what it may touch (the filesystem server
    # replaces its allowed directories with them): that is the operator's configuration, not the agent's.
    declared = json.loads(text_of(executor.call("probe__client_capabilities")))
    assert "sampling" in declared and "elicitation" in declared
    assert "roots" not in declared, declared


def test_an_agent_client_without_sampling_is_not_asked_and_the_refusal_is_audited(setup: Setup) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "writ.engine.cli.gateway", "--principal", "exec-2", "--config", str(setup.config),
              "--data-dir", str(setup.data_dir)],
        cwd=str(setup.config.parent), env=setup.env())

    @asynccontextmanager
    async def connect() -> AsyncIterator[ClientSession]:  # declares neither sampling nor elicitation
        with (setup.root / "mcp-plain.log").open("a") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write, read_timeout_seconds=REQUEST_TIMEOUT_S) as session,
            ):
                await session.initialize()
                yield session

    with on_portal(connect(), Agent()) as plain:
        result = plain.call("everything__trigger-sampling-request", {"prompt": "anyone?", "maxTokens": 5})
    assert result.is_error and "refused [client_unsupported]" in text_of(result), text_of(result)
    refused = [e.payload for e in audit_entries(setup.data_dir) if e.kind == "upstream_request_refused"]
    assert any(r["code"] == "client_unsupported" and r["principal"] == "exec-2"
               and r["method"] == "sampling/createMessage" for r in refused), refused


# --- roles --------------------------------------------------------------------------------------


def test_a_role_that_may_not_read_sees_no_prompts_and_is_denied_them(setup: Setup) -> None:
    with stdio_gateway(setup, "audit-bot") as auditor:
        assert auditor(auditor.session.list_prompts).prompts == []
        assert auditor(auditor.session.list_resources).resources == []
        with pytest.raises(MCPError) as e:
            auditor(auditor.session.get_prompt, "everything__simple-prompt")
        assert "denied [role_not_permitted]" in e.value.message
        with pytest.raises(MCPError) as e:
            auditor(auditor.session.read_resource, "writ://everything/demo://resource/dynamic/text/1")
        assert "denied [role_not_permitted]" in e.value.message


# --- HTTP: one upstream, several agent sessions ---------------------------------------------------


@pytest.fixture(scope="module")
def serve(setup: Setup) -> Iterator[str]:
    with serve_gateway(setup.config, setup.data_dir, setup.root / "serve.log", env=setup.env()) as url:
        yield url


@contextmanager
def http_gateway(setup: Setup, url: str, principal: str) -> Iterator[Client]:
    token = issue_token(setup.data_dir, principal)
    agent = Agent()

    @asynccontextmanager
    async def connect() -> AsyncIterator[ClientSession]:
        async with (
            create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write, **agent.callbacks()) as session,
        ):
            await session.initialize()
            yield session

    with on_portal(connect(), agent) as client:
        yield client


def test_sampling_goes_to_the_session_whose_call_asked(setup: Setup, serve: str) -> None:
    with http_gateway(setup, serve, "exec-bot") as first, http_gateway(setup, serve, "exec-2") as second:
        first.call("everything__echo", {"message": "hello"})
        second.call("everything__echo", {"message": "hello"})
        result = second.call("everything__trigger-sampling-request", {"prompt": "for the second", "maxTokens": 5})
        assert "the agent's model says hi" in text_of(result), text_of(result)
        assert len(second.agent.sampled) == 1 and first.agent.sampled == []
        result = first.call("everything__trigger-sampling-request", {"prompt": "for the first", "maxTokens": 5})
        assert "the agent's model says hi" in text_of(result), text_of(result)
        assert len(first.agent.sampled) == 1 and len(second.agent.sampled) == 1
        assert "for the first" in json.dumps(first.agent.sampled[0].model_dump(mode="json"))


def test_a_session_its_client_walked_away_from_is_ended_and_audited(setup: Setup, serve: str) -> None:
    # A client that vanishes without DELETE (crashed, killed) leaves no request in flight and no
    # stream open: after session_idle_timeout_s (3 s in this config) the session is ended.
    token = issue_token(setup.data_dir, "plan-bot")
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "Authorization": f"Bearer {token}"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    opened = httpx.post(serve, json=init, headers=headers, timeout=30)
    key = opened.headers["mcp-session-id"]
    headers.update({"mcp-session-id": key, "mcp-protocol-version": "2025-11-25"})
    httpx.post(serve, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers, timeout=30)
    listed = httpx.post(serve, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers, timeout=30)
    assert "everything__echo" in listed.text
    ours = [e.payload for e in audit_entries(setup.data_dir) if e.kind == "session_started"][-1]
    assert ours["principal"] == "plan-bot"
    deadline = time.monotonic() + 30
    while not any(e.kind == "session_ended" and e.payload["session_id"] == ours["session_id"]
                  for e in audit_entries(setup.data_dir)):
        assert time.monotonic() < deadline, "the idle session was never ended"
        time.sleep(0.5)
    gone = httpx.post(serve, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=headers, timeout=30)
    assert gone.status_code == 404


def test_sampling_is_refused_when_two_sessions_have_calls_in_flight(setup: Setup, serve: str) -> None:
    # Which call an upstream's request belongs to is not on the wire: with two sessions waiting on
    # the same upstream, Writ refuses to guess rather than show one principal's prompt to another.
    with http_gateway(setup, serve, "exec-bot") as first, http_gateway(setup, serve, "exec-2") as second:
        busy = first.portal.start_task_soon(first.session.call_tool, "everything__trigger-long-running-operation",
                                            {"duration": 4, "steps": 2})
        first.wait_for("the long call to be in flight", lambda: any(
            e.kind == "decision" and e.payload["input"] and e.payload["input"]["principal"] == "exec-bot"
            and e.payload["input"]["tool"]["name"] == "trigger-long-running-operation" for e in audit_entries(setup.data_dir)))
        result = second.call("everything__trigger-sampling-request", {"prompt": "whose is this?", "maxTokens": 5})
        assert not busy.result(timeout=30).is_error
    assert first.agent.sampled == [] and second.agent.sampled == []
    assert result.is_error and "cannot tell which one" in text_of(result), text_of(result)
    refused = [e.payload for e in audit_entries(setup.data_dir) if e.kind == "upstream_request_refused"]
    assert any(r["code"] == "session_ambiguous" and r["method"] == "sampling/createMessage" for r in refused)
