"""The gateway's MCP server: every upstream tool, namespaced, Writ's plan tools, every request decided by policy first.

    stores = wire_services(settings, store, engine=pdp.engine, audit=pdp.audit)
    gateway = Gateway(pdp, config, resolve_principal(stores.trust, "exec-bot"), stores)
    anyio.run(gateway.serve_stdio)              # what `writ mcp` runs

One ``Gateway`` is one agent session: its principal, its session lock and its bound plan. It
lists tools and builds and decides the policy input of every request; the requests themselves
are handled by ``calls.ToolCalls`` (``tools/call``: decide, tie to a plan step and claim it,
forward, record) and ``passthrough.PassThrough`` (resources, prompts, completions, logging,
and what upstreams ask of the agent). Writ's own plan tools are ``governance.Governance``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError

from writ.engine.core import reasons
from writ.engine.core.errors import WritError
from writ.engine.core.timeutil import utc_now
from writ.engine.gateway.approvals import ApprovalLink
from writ.engine.gateway.calls import ToolCalls
from writ.engine.gateway.capture import ContentCapture
from writ.engine.gateway.config import GatewayConfig, Principal
from writ.engine.gateway.governance import Governance
from writ.engine.gateway.listing import UpstreamTool
from writ.engine.gateway.passthrough import PassThrough
from writ.engine.gateway.results import META, Failed, audit_or_log, bounded_error, listable
from writ.engine.gateway.sessions import PrincipalGuard, Transport
from writ.engine.gateway.stdio import stdio_transport
from writ.engine.gateway.steps import BoundPlan, SessionBinding
from writ.engine.gateway.upstream import UpstreamManager
from writ.engine.policy.base import new_decision_id
from writ.engine.policy.models import (
    Decision,
    Method,
    PlanContext,
    PolicyInput,
    Reason,
    Session,
    Tool,
    ToolAnnotations,
)
from writ.engine.policy.pdp import DecisionPoint, audit_payload
from writ.engine.wiring.services import Services
from writ.plans.principal_status import PrincipalState

log = logging.getLogger(__name__)
R = TypeVar("R")

INSTRUCTIONS = (
    "Writ governs these tools. Each is named <server>__<tool> and every call is decided by policy "
    "before it reaches the server. A refused call returns an error result whose text starts with "
    "'denied [reason_code]:' followed by what to do instead; 'error [upstream_unavailable]' means "
    "the server behind the tool is down. Each tool's _meta carries its writ/definition_digest. "
    "Changes run only as steps of an approved plan: planners propose with writ__writ_plan_propose, "
    "executors run approved plans with writ__writ_plan_begin, the steps, then writ__writ_plan_finish. "
    "Prompts are named <server>__<prompt> and resources writ://<server>/<uri>; reading them is decided "
    "by policy too."
)
NOTIFY = NotificationOptions(tools_changed=True, prompts_changed=True, resources_changed=True)
Handler = Callable[[ServerRequestContext[Any, Any], Any], Awaitable[Any]]


class WritServer(Server[Any]):
    """The SDK's low-level server, announcing the list-changed notifications the gateway relays.

    The HTTP session manager asks for initialization options without any, so they are set here.

        server = build_server(lambda ctx: gateway)
        await server.run(read, write, server.create_initialization_options())
    """

    def create_initialization_options(self, notification_options: NotificationOptions | None = None,
                                      *args: Any, **kwargs: Any) -> Any:
        """The SDK's options, announcing tools, prompts and resources list changes unless told otherwise."""
        return super().create_initialization_options(notification_options or NOTIFY, *args, **kwargs)


def build_server(gateway_of: Callable[[ServerRequestContext[Any, Any]], Gateway]) -> WritServer:
    """The MCP server: every request goes to the ``Gateway`` of its session (``gateway_of``)."""
    try:
        ver = version("writ")
    except PackageNotFoundError:
        ver = "0"

    def route(handler: Callable[[Gateway], Handler]) -> Handler:
        async def handle(ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
            gateway = gateway_of(ctx)
            gateway.client = ctx.session  # the agent's side, for notifications and log messages
            return await handler(gateway)(ctx, params)
        return handle

    return WritServer(
        "writ", version=ver, instructions=INSTRUCTIONS,
        on_list_tools=route(lambda g: g.list_tools), on_call_tool=route(lambda g: g.calls.call_tool),
        on_list_resources=route(lambda g: g.passthrough.list_resources),
        on_list_resource_templates=route(lambda g: g.passthrough.list_resource_templates),
        on_read_resource=route(lambda g: g.passthrough.read_resource),
        on_subscribe_resource=route(lambda g: g.passthrough.subscribe_resource),
        on_unsubscribe_resource=route(lambda g: g.passthrough.unsubscribe_resource),
        on_list_prompts=route(lambda g: g.passthrough.list_prompts),
        on_get_prompt=route(lambda g: g.passthrough.get_prompt),
        on_completion=route(lambda g: g.passthrough.complete),
        on_set_logging_level=route(lambda g: g.passthrough.set_logging_level),
    )


@dataclass
class SessionState:
    """One client session of the gateway. ``locked`` is set when a decision obliges it, and stays set.

    The lock also goes to the database as a lock of the principal (``sessions.PrincipalGuard``):
    every other session of that principal, in any process, is refused until an operator unlocks it.

        gateway.session.id, gateway.session.locked, gateway.session.plan    # 's-1f0c...', False, None
    """

    id: str
    locked: bool = False
    binding: SessionBinding = field(default_factory=SessionBinding)

    @property
    def plan(self) -> BoundPlan | None:
        """The plan this session began (``writ__writ_plan_begin``), until it finishes."""
        return self.binding.plan


class Gateway:
    """One agent session of the gateway: who it acts for, its lock and bound plan, and its request handlers.

        gateway = Gateway(pdp, config, resolve_principal(stores.trust, "exec-bot"), stores, key_file=None)
        anyio.run(gateway.serve_stdio)                        # stdio: this session, its own upstreams
        Gateway(..., upstreams=shared, session_id="s-...")    # HTTP: one per MCP session, upstreams shared

    ``calls`` handles ``tools/call``, ``passthrough`` every other request, ``governance`` Writ's
    plan tools; each asks this object to build, decide and audit.
    """

    def __init__(self, pdp: DecisionPoint, config: GatewayConfig, principal: Principal, stores: Services,
                 *, session_id: str | None = None, key_file: Path | None = None,
                 upstreams: UpstreamManager | None = None, transport: Transport = "stdio",
                 approvals: ApprovalLink | None = None) -> None:
        self.pdp = pdp
        self.principal = principal
        self.stores = stores
        # Shared (``upstreams``) by the sessions of the HTTP transport, which starts and stops it; else our own.
        self.upstreams = upstreams or UpstreamManager(config, on_tools_changed=self.tools_changed,
                                                      audit=self.audit)
        self.session = SessionState(session_id or f"s-{uuid.uuid4().hex}")
        self.guard = PrincipalGuard(stores, principal, session_id=self.session.id, transport=transport)
        self.capture = ContentCapture(self)  # what a proposed plan's file writes replace, read as this session
        self.governance = Governance(
            stores, principal, self.upstreams, relist=self.refresh_tools, is_write=self.is_write, audit=self.audit,
            session_id=self.session.id, binding=self.session.binding, key_file=key_file,
            approvals=approvals or ApprovalLink(stores), capture=self.capture.plan,
        )
        self.calls = ToolCalls(self)
        self.passthrough = PassThrough(self)
        self.client: ServerSession | None = None  # the agent's side, once it sent a request
        self.log_level: types.LoggingLevel | None = None  # set by logging/setLevel
        self.upstreams.router.attach(self)

    # --- serving ------------------------------------------------------------------------

    def server(self) -> Server[Any]:
        """An MCP server whose every request goes to this gateway (stdio: one session)."""
        return build_server(lambda ctx: self)

    async def serve_stdio(self) -> None:
        """Start the upstreams, serve MCP on stdin/stdout until the client leaves, stop the upstreams."""
        async with anyio.create_task_group() as tg:
            await self.upstreams.start(tg)
            self.guard.started()
            self.audit("gateway_started", {
                "session_id": self.session.id,
                "principal": self.principal.name, "role": self.principal.role, "groups": list(self.principal.groups),
                "upstreams": self.upstreams.status(), "tools": self._digests(),
            })
            server = self.server()
            # A line that is not a JSON-RPC message is answered (-32700/-32600) and audited, never dropped.
            async with stdio_transport(self.audit, session_id=self.session.id,
                                       principal=self.principal.name) as (read, write):
                await server.run(read, write, server.create_initialization_options())
            self.end_session()
            self.upstreams.stop()
            tg.cancel_scope.cancel()

    def end_session(self) -> list[tuple[str, str]]:
        """The agent left: forget its session, and record a plan still bound to it (it stays executing).

        Returns the resource subscriptions nobody holds any more (the caller unsubscribes upstream).
        """
        orphaned = self.upstreams.router.detach(self)
        self.guard.ended()
        bound = self.session.plan
        if bound is not None:
            try:
                state = self.stores.plans.get(bound.id).state.value
            except WritError as e:
                state = f"unknown ({e.code})"
            self.audit("session_plan", {"session_id": self.session.id, "principal": self.principal.name,
                                        "plan_id": bound.id, "event": "session_ended", "state": state})
        return orphaned

    # --- tools/list ---------------------------------------------------------------------

    async def list_tools(self, ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        """Writ's plan tools and every upstream tool, less those the role alone could never call."""
        entries = list(self.governance.tools.values()) + self.upstreams.tools()
        return types.ListToolsResult(tools=[_exposed(t) for t in entries if listable(self._dry_run(t))])

    def _dry_run(self, entry: UpstreamTool) -> Decision:
        """The engine alone, not logged: a hint for the listing, never an enforcement."""
        return self.pdp.engine.decide(self.tool_input(entry, {}, Session(id=self.session.id)))

    def is_write(self, entry: UpstreamTool) -> bool:
        """Whether policy treats this tool as a write (a call that may run only as a plan step)."""
        return self._dry_run(entry).has_obligation(reasons.PLAN_REQUIRED)

    # --- the policy input and the decision ---------------------------------------------------

    def tool_input(self, entry: UpstreamTool, args: dict[str, Any], session: Session,
                   plan: PlanContext | None = None) -> PolicyInput:
        """The policy input of a ``tools/call`` of ``entry``, with its annotations and definition digest."""
        hints = entry.tool.annotations
        annotations = ToolAnnotations(
            read_only=hints.read_only_hint, destructive=hints.destructive_hint,
            idempotent=hints.idempotent_hint, open_world=hints.open_world_hint,
        ) if hints else ToolAnnotations()
        tool = Tool(server=entry.server, name=entry.tool.name, annotations=annotations, definition_digest=entry.digest,
                    annotations_trusted=entry.annotations_trusted)
        return self.policy_input("tools/call", tool, args, session, plan)

    def policy_input(self, method: Method, tool: Tool, args: dict[str, Any], session: Session,
                     plan: PlanContext | None) -> PolicyInput:
        """The policy input of any request of this session's principal, at the current time."""
        return PolicyInput(
            principal=self.principal.name, role=self.principal.role, groups=list(self.principal.groups),
            session=session, method=method, tool=tool, args=args, plan=plan, now=utc_now(),
        )

    def session_now(self) -> Session:
        """The session as policy sees it now (its id, and whether it is locked)."""
        return Session(id=self.session.id, locked=self.session.locked)

    def decide(self, build: Callable[[], PolicyInput], what: str, state: PrincipalState | None = None,
               *, durable: bool = True) -> Decision | None:
        """Decide (and log) the input ``build`` makes; lock the session and its principal if the decision says so.

        A principal locked (by any of its sessions) or disabled is denied before policy is asked
        (``principal_locked``, ``principal_disabled``); this session, once locked, gets the policy's
        ``session_locked``. None when no input could be built (the caller denies with ``refuse_input``).
        ``state``: the principal's state read when this HTTP request arrived (``PrincipalGuard.refusal``).
        ``durable=False``: a read's decision, fsynced after it returns (``DecisionPoint.decide``).
        """
        try:
            inp = build()
        except Exception as e:  # noqa: BLE001 - e.g. arguments that are not an object: a logged deny
            log.warning("cannot build the policy input for %s: %s", what, e)
            return None
        refused = None if self.session.locked else self.guard.refusal(state)
        if refused is not None:
            return self._refused(inp, *refused)
        decision = self.pdp.decide(inp, durable=durable)
        if decision.has_obligation(reasons.LOCK_SESSION):
            self.session.locked = True
            self.guard.lock(decision)
        return decision

    def _refused(self, inp: PolicyInput, code: str, message: str) -> Decision:
        """A deny the gateway gives without asking policy, logged with its input like any decision."""
        engine = self.pdp.engine
        decision = Decision(decision_id=new_decision_id(), allow=False, reasons=[Reason(code=code, message=message)],
                            obligations=[], policy_revision=engine.revision, engine=engine.name, duration_us=0)
        self.audit("decision", {**audit_payload(decision, inp), "decided_by": "gateway"})  # not re-evaluated (ADR 0022)
        return decision

    def bound_context(self) -> PlanContext | None:
        """The bound plan for a call that is no plan step (a governance tool, a read of a resource)."""
        bound = self.session.plan
        if bound is None:
            return None
        record = self.stores.plans.get(bound.id)
        return PlanContext(id=record.id, state=cast(Any, record.state.value), planner=record.planner,
                           expires_at=bound.plan.expires_at, step_matches=False, step_index=None)

    # --- upstreams ------------------------------------------------------------------------

    async def refresh_tools(self, server: str) -> None:
        """List ``server``'s tools now and wait for the answer (``UpstreamUnavailable`` if it is down).

        A changed definition is audited and announced to this session.
        """
        upstream = self.upstreams.upstreams.get(server)
        if upstream is not None and await upstream.refresh_now():
            await self.tools_changed()

    async def tools_changed(self) -> None:
        """An upstream's tool definitions changed: audit the new digests, tell this session's client."""
        self.audit("tools_changed", {"session_id": self.session.id, "tools": self._digests()})
        await self.notify(lambda client: client.send_tool_list_changed())

    async def run_upstream(self, server: str, ctx: ServerRequestContext[Any, Any] | None,
                           call: Callable[[], Awaitable[R]], done: Callable[..., None], what: str) -> R | Failed:
        """Run ``call`` as this session's request on ``server``; ``done(outcome, error=...)`` records a failure.

        The upstream's own JSON-RPC errors (recorded as ``upstream_error``; over ``limits.max_result_bytes``,
        replaced by ``bounded_error``) and cancellation propagate; any other failure is recorded and returned
        as ``Failed``, never a traceback to the agent.
        """
        session, request_id = (ctx.session, ctx.request_id) if ctx is not None else (self.client, None)
        try:
            with self.upstreams.router.exchange(server, self, session, request_id):
                return await call()
        except MCPError as e:
            done("upstream_error", error={"code": e.code, "message": e.message[:500]})
            bounded = bounded_error(e, self.stores.settings.limits.max_result_bytes)
            if bounded is e:
                raise
            raise bounded from None
        except WritError as e:  # upstream_unavailable, upstream_timeout
            done(e.code, error={"message": e.message})
            return Failed(e.code, e.message)
        except anyio.get_cancelled_exc_class():
            done("cancelled")
            raise
        except Exception as e:  # never a traceback to the agent: logged here and in the audit log
            log.exception("forwarding %s to %s failed", what, server)
            done(reasons.GATEWAY_ERROR, error={"message": f"{type(e).__name__}: {e}"[:500]})
            return Failed(reasons.GATEWAY_ERROR, f"forwarding {what} failed ({type(e).__name__}); "
                          "it may or may not have reached the server")

    # --- the agent's client and the audit log ----------------------------------------------------

    async def notify(self, send: Callable[[ServerSession], Awaitable[None]]) -> None:
        """A notification to this session's client, if it is (still) there."""
        if self.client is None:
            return
        try:
            await send(self.client)
        except Exception as e:  # noqa: BLE001 - the client may be gone or not take notifications
            log.info("could not notify the client: %s", e)

    def audit(self, kind: str, payload: dict[str, Any], *, durable: bool = True) -> None:
        """An entry about what already happened; a refused append is logged, not raised (``audit_or_log``)."""
        audit_or_log(self.pdp.audit, kind, payload, durable=durable)

    def _digests(self) -> dict[str, str]:
        return {t.exposed_name: t.digest for t in self.upstreams.tools()}


def _exposed(entry: UpstreamTool) -> types.Tool:
    """The tool as agents see it: its exposed name, and ``writ/`` keys (server, tool, digest) in ``_meta``."""
    meta = dict(entry.tool.meta or {})
    meta.update({f"{META}server": entry.server, f"{META}tool": entry.tool.name,
                 f"{META}definition_digest": entry.digest})
    return entry.tool.model_copy(update={"name": entry.exposed_name, "meta": meta})
