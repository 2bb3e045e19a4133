"""The gateway's MCP server: every upstream tool, namespaced, and every call decided by policy first.

    pdp = DecisionPoint.from_settings(settings)
    gateway = Gateway(pdp, config, resolve_principal(config, "plan-bot"))
    anyio.run(gateway.serve_stdio)              # what `writ mcp` runs

``tools/call`` for ``git__git_status``: policy input (principal, role, session, tool with the
upstream's annotations and definition digest, args, ``plan=None``, now) -> ``DecisionPoint.decide``
(logged) -> a deny is an ``isError`` result whose text is ``denied [code]: sentence`` per reason;
an allow is forwarded to the upstream and its result returned unchanged, after a ``tool_result``
audit entry (result digest, duration). An unknown tool is JSON-RPC error -32602.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from writ.engine.errors import AuditError, InputError, WritError
from writ.engine.gateway.config import GatewayConfig, Principal
from writ.engine.gateway.upstream import UpstreamManager, UpstreamTool
from writ.engine.pdp import DecisionPoint
from writ.engine.policy.models import Decision, PolicyInput, Session, Tool, ToolAnnotations
from writ.plans.canonical import digest

log = logging.getLogger(__name__)

META = "writ/"  # prefix of the gateway's _meta keys
# A tool is left out of tools/list only when its role alone denies it: the role can never
# call it, whatever the arguments or plan. Planners still see write tools: a plan names them
# and pins their digest, and calling one is denied (planner_cannot_write) at call time.
HIDDEN_WHEN_ONLY = frozenset({"role_not_permitted", "role_cannot_write"})
# Obligations the gateway knows how to meet today. Any other obligation on an allow (e.g.
# plan_required, which needs a plan claim) means the call cannot run: fail closed.
FULFILLABLE = frozenset({"lock_session"})

# Reason codes the gateway itself produces (the policy's are in docs/policies.md).
GATEWAY_REASONS: dict[str, str] = {
    "upstream_unavailable": "the upstream server is not running or its connection is gone",
    "upstream_timeout": "the upstream server did not answer within its call timeout",
    "gateway_error": "the gateway failed while handling the call",
    "obligation_unfulfilled": "the policy allowed the call on a condition the gateway cannot meet yet",
}

INSTRUCTIONS = (
    "Writ governs these tools. Each is named <server>__<tool> and every call is decided by policy "
    "before it reaches the server. A refused call returns an error result whose text starts with "
    "'denied [reason_code]:' followed by what to do instead; 'error [upstream_unavailable]' means "
    "the server behind the tool is down. Each tool's _meta carries its writ/definition_digest."
)


@dataclass
class SessionState:
    """One client session of the gateway. ``locked`` is set when a decision obliges it, and stays set."""

    id: str
    locked: bool = False


class Gateway:
    def __init__(self, pdp: DecisionPoint, config: GatewayConfig, principal: Principal,
                 *, session_id: str | None = None) -> None:
        self.pdp = pdp
        self.principal = principal
        self.upstreams = UpstreamManager(config, on_tools_changed=self._tools_changed)
        self.session = SessionState(session_id or f"s-{uuid.uuid4().hex}")
        self._client: ServerSession | None = None

    # --- serving ------------------------------------------------------------------------

    def server(self) -> Server[Any]:
        try:
            ver = version("writ")
        except PackageNotFoundError:
            ver = "0"
        return Server("writ", version=ver, instructions=INSTRUCTIONS,
                      on_list_tools=self.list_tools, on_call_tool=self.call_tool)

    async def serve_stdio(self) -> None:
        """Start the upstreams, serve MCP on stdin/stdout until the client leaves, stop the upstreams."""
        async with anyio.create_task_group() as tg:
            await self.upstreams.start(tg)
            self._audit("gateway_started", {
                "session_id": self.session.id,
                "principal": self.principal.name, "role": self.principal.role,
                "upstreams": self.upstreams.status(), "tools": self._digests(),
            })
            server = self.server()
            async with stdio_server() as (read, write):
                options = server.create_initialization_options(NotificationOptions(tools_changed=True))
                await server.run(read, write, options)
            self.upstreams.stop()
            tg.cancel_scope.cancel()

    # --- tools/list ---------------------------------------------------------------------

    async def list_tools(self, ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        self._client = ctx.session
        return types.ListToolsResult(tools=[self._exposed(t) for t in self.upstreams.tools() if self._visible(t)])

    def _visible(self, entry: UpstreamTool) -> bool:
        # A dry run on the engine alone, not logged: a hint for the listing, never an enforcement.
        dry = self.pdp.engine.decide(self._input(entry, {}, Session(id=self.session.id)))
        return dry.allow or not dry.reasons or not set(dry.reason_codes) <= HIDDEN_WHEN_ONLY

    @staticmethod
    def _exposed(entry: UpstreamTool) -> types.Tool:
        meta = dict(entry.tool.meta or {})
        meta.update({f"{META}server": entry.server, f"{META}tool": entry.tool.name,
                     f"{META}definition_digest": entry.digest})
        return entry.tool.model_copy(update={"name": entry.exposed_name, "meta": meta})

    # --- tools/call ---------------------------------------------------------------------

    async def call_tool(self, ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        self._client = ctx.session
        name, args = params.name, params.arguments or {}
        entry = self.upstreams.tool(name)
        if entry is None:
            upstream = self.upstreams.upstream_of(name)
            if upstream is None or upstream.state == "ready" or upstream.tools:
                self._audit("tool_unknown", {"session_id": self.session.id, "principal": self.principal.name,
                                             "tool": name[:200]})
                raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")
            # Its upstream never listed its tools: the tool cannot be known, nor called.
            return deny_result(self.pdp.refuse_input(InputError(
                f"tool {name!r}: upstream {upstream.name!r} is not available ({upstream.problem or upstream.state})",
                code="upstream_unavailable")))
        try:
            inp = self._input(entry, args, Session(id=self.session.id, locked=self.session.locked))
        except Exception as e:  # noqa: BLE001 - e.g. arguments that are not an object: a logged deny
            log.warning("cannot build the policy input for %s: %s", name, e)
            return deny_result(self.pdp.refuse_input(InputError(
                f"the call to {name} could not be turned into a policy input ({type(e).__name__})",
                code="gateway_error")))
        decision = self.pdp.decide(inp)
        if decision.has_obligation("lock_session"):
            self.session.locked = True
        if not decision.allow:
            return deny_result(decision)
        unmet = sorted({o.code for o in decision.obligations} - FULFILLABLE)
        if unmet:
            message = f"the policy allowed the call on obligations the gateway cannot meet yet: {', '.join(unmet)}"
            self._record(decision, entry, "obligation_unfulfilled", 0, error={"message": message})
            return error_result("obligation_unfulfilled", message, decision)
        return await self._forward(decision, entry, args)

    async def _forward(self, decision: Decision, entry: UpstreamTool, args: dict[str, Any]) -> types.CallToolResult:
        start = time.perf_counter_ns()

        def took() -> int:
            return (time.perf_counter_ns() - start) // 1000

        try:
            result = await self.upstreams.call(entry, args)
        except MCPError as e:  # the upstream's own JSON-RPC error: passed on unchanged
            self._record(decision, entry, "upstream_error", took(), error={"code": e.code, "message": e.message[:500]})
            raise
        except WritError as e:  # upstream_unavailable, upstream_timeout
            self._record(decision, entry, e.code, took(), error={"message": e.message})
            return error_result(e.code, e.message, decision)
        except anyio.get_cancelled_exc_class():
            self._record(decision, entry, "cancelled", took())
            raise
        except Exception as e:  # never a traceback to the agent: logged here and in the audit log
            log.exception("forwarding %s failed", entry.exposed_name)
            self._record(decision, entry, "gateway_error", took(), error={"message": f"{type(e).__name__}: {e}"[:500]})
            return error_result("gateway_error", f"forwarding the call failed ({type(e).__name__}); "
                                "it may or may not have reached the server", decision)
        self._record(decision, entry, "tool_error" if result.is_error else "ok", took(), result=result)
        return result

    def _input(self, entry: UpstreamTool, args: dict[str, Any], session: Session) -> PolicyInput:
        hints = entry.tool.annotations
        annotations = ToolAnnotations(
            read_only=hints.read_only_hint, destructive=hints.destructive_hint,
            idempotent=hints.idempotent_hint, open_world=hints.open_world_hint,
        ) if hints else ToolAnnotations()
        return PolicyInput(
            principal=self.principal.name, role=self.principal.role, groups=list(self.principal.groups),
            session=session,
            tool=Tool(server=entry.server, name=entry.tool.name, annotations=annotations,
                      definition_digest=entry.digest),
            args=args, plan=None, now=datetime.now(UTC),
        )

    # --- audit ---------------------------------------------------------------------------

    def _record(self, decision: Decision, entry: UpstreamTool, outcome: str, duration_us: int, *,
                result: types.CallToolResult | None = None, error: dict[str, Any] | None = None) -> None:
        """The ``tool_result`` entry of an allowed call. If it cannot be written, the call already happened:
        the result still goes back, and the process log says the entry is missing."""
        payload: dict[str, Any] = {
            "decision_id": decision.decision_id, "session_id": self.session.id, "principal": self.principal.name,
            "server": entry.server, "tool": entry.tool.name, "definition_digest": entry.digest,
            "outcome": outcome, "duration_us": duration_us,
            "result_sha256": result_digest(result) if result is not None else None,
        }
        if error:
            payload["error"] = error
        self._audit("tool_result", payload)

    def _audit(self, kind: str, payload: dict[str, Any]) -> None:
        try:
            self.pdp.audit.append(kind, payload)
        except AuditError as e:
            log.error("audit entry %s not written (%s): %s", kind, e.message, json.dumps(payload, default=str)[:1000])

    def _digests(self) -> dict[str, str]:
        return {t.exposed_name: t.digest for t in self.upstreams.tools()}

    async def _tools_changed(self) -> None:
        self._audit("tools_changed", {"session_id": self.session.id, "tools": self._digests()})
        if self._client is not None:
            try:
                await self._client.send_tool_list_changed()
            except Exception as e:  # noqa: BLE001 - the client may be gone or not take notifications
                log.info("could not tell the client the tool list changed: %s", e)


def deny_result(decision: Decision) -> types.CallToolResult:
    lines = [f"denied [{r.code}]: {r.message}" for r in decision.reasons]
    lines += [f"obligation [{o.code}]: {o.message}" for o in decision.obligations if o.code == "lock_session"]
    return _result("\n".join(lines), decision)


def error_result(code: str, message: str, decision: Decision) -> types.CallToolResult:
    return _result(f"error [{code}]: {message}", decision, code=code)


def _result(text: str, decision: Decision, *, code: str | None = None) -> types.CallToolResult:
    meta: dict[str, Any] = {
        "decision_id": decision.decision_id, "allow": decision.allow,
        "reasons": [r.model_dump() for r in decision.reasons], "policy_revision": decision.policy_revision,
    }
    if code:
        meta["error"] = code
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True,
                                meta={f"{META}decision": meta})


def result_digest(result: types.CallToolResult) -> str:
    """``sha256:`` of the result as JSON: RFC 8785 when it has a canonical form, else sorted-key JSON text."""
    doc = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        return digest(doc)
    except InputError:
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
