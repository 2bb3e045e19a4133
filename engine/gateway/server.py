"""The gateway's MCP server: every upstream tool, namespaced, Writ's plan tools, every call decided by policy first.

    stores = wire_services(settings, store, engine=pdp.engine, audit=pdp.audit)
    gateway = Gateway(pdp, config, resolve_principal(stores.trust, "exec-bot"), stores)
    anyio.run(gateway.serve_stdio)              # what `writ mcp` runs

``tools/call`` for ``git__git_commit``: policy input (principal, role, groups, session, tool with
the upstream's annotations and definition digest, args, plan, now) -> ``DecisionPoint.decide``
(logged) -> a deny is an ``isError`` result whose text is ``denied [code]: sentence`` per reason;
an allow is forwarded to the upstream and its result returned unchanged, after a ``tool_result``
audit entry (result digest, duration). An unknown tool is JSON-RPC error -32602.

With a plan bound to the session (``writ__writ_plan_begin``), ``plan`` is the plan's id, state,
planner and expiry, and which step this call is (``governance.choose_step``); before choosing,
a call that could be a step lists its upstream's tools again, so a definition changed since
approval (a rug pull) shows up as another digest and matches no step. An allow with the
obligation ``plan_required`` runs only as a claimed step: ``PlanStore.claim_step`` once, before
the upstream sees the call (a refused claim is a ``denied [code]`` result), then
``PlanStore.record_result`` with the result's digest. ``writ__*`` tools are Writ's own
(``governance``), decided and audited like any other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from pydantic import BaseModel

from writ.engine.core import reasons
from writ.engine.core.errors import AuditError, InputError, WritError
from writ.engine.gateway.config import SEPARATOR, GatewayConfig, Principal
from writ.engine.gateway.governance import (
    SERVER,
    BoundPlan,
    Governance,
    SessionBinding,
    StepChoice,
    choose_step,
    is_candidate,
)
from writ.engine.gateway.passthrough import Exchange, expose_uri, split_name, split_uri
from writ.engine.gateway.upstream import (
    SamplingResult,
    Upstream,
    UpstreamManager,
    UpstreamTool,
    UpstreamUnavailable,
    all_pages,
    describe,
)
from writ.engine.policy.models import (
    Decision,
    Method,
    PlanContext,
    PolicyInput,
    Session,
    Tool,
    ToolAnnotations,
)
from writ.engine.policy.pdp import DecisionPoint
from writ.engine.wiring.services import Services
from writ.plans.canonical import digest

log = logging.getLogger(__name__)
R = TypeVar("R")

META = "writ/"  # prefix of the gateway's _meta keys
# A tool is left out of tools/list only when its role alone denies it: the role can never
# call it, whatever the arguments or plan. Planners still see write tools: a plan names them
# and pins their digest, and calling one is denied (planner_cannot_write) at call time.
HIDDEN_WHEN_ONLY = frozenset({"role_not_permitted", "role_cannot_write"})
# Obligations the gateway knows how to meet. plan_required is met only by claiming the plan
# step the call is (and only for upstream tools); any other obligation means: fail closed.
FULFILLABLE = frozenset({"lock_session", "plan_required"})

# Reason codes the gateway itself produces (the policy's are in docs/policies.md).
GATEWAY_REASONS: dict[str, str] = {
    "upstream_unavailable": "the upstream server is not running or its connection is gone",
    "upstream_timeout": "the upstream server did not answer within its call timeout",
    "gateway_error": "the gateway failed while handling the call",
    "obligation_unfulfilled": "the policy allowed the call on a condition the gateway cannot meet",
    "step_already_claimed": "the plan step this call is already ran (or is running): a step runs at most once",
}

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
LOG_LEVELS: tuple[types.LoggingLevel, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert",
                                              "emergency")
NOTIFY = NotificationOptions(tools_changed=True, prompts_changed=True, resources_changed=True)


class WritServer(Server[Any]):
    """The SDK's low-level server, announcing the list-changed notifications the gateway relays
    (the HTTP session manager asks for initialization options without any)."""

    def create_initialization_options(self, notification_options: NotificationOptions | None = None,
                                      *args: Any, **kwargs: Any) -> Any:
        return super().create_initialization_options(notification_options or NOTIFY, *args, **kwargs)


def build_server(gateway_of: Callable[[ServerRequestContext[Any, Any]], Gateway]) -> WritServer:
    """The MCP server: every request goes to the ``Gateway`` of its session (``gateway_of``)."""
    try:
        ver = version("writ")
    except PackageNotFoundError:
        ver = "0"

    def route(method: str) -> Any:
        async def handler(ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
            return await getattr(gateway_of(ctx), method)(ctx, params)
        return handler

    return WritServer(
        "writ", version=ver, instructions=INSTRUCTIONS,
        on_list_tools=route("list_tools"), on_call_tool=route("call_tool"),
        on_list_resources=route("list_resources"), on_list_resource_templates=route("list_resource_templates"),
        on_read_resource=route("read_resource"), on_subscribe_resource=route("subscribe_resource"),
        on_unsubscribe_resource=route("unsubscribe_resource"),
        on_list_prompts=route("list_prompts"), on_get_prompt=route("get_prompt"),
        on_completion=route("complete"), on_set_logging_level=route("set_logging_level"),
    )


@dataclass
class SessionState:
    """One client session of the gateway. ``locked`` is set when a decision obliges it, and stays set."""

    id: str
    locked: bool = False
    binding: SessionBinding = field(default_factory=SessionBinding)

    @property
    def plan(self) -> BoundPlan | None:
        return self.binding.plan


@dataclass(frozen=True)
class StepRun:
    """A claimed plan step whose call is being forwarded: its result is recorded against it."""

    plan_id: str
    index: int


class Gateway:
    def __init__(self, pdp: DecisionPoint, config: GatewayConfig, principal: Principal, stores: Services,
                 *, session_id: str | None = None, key_file: Path | None = None,
                 upstreams: UpstreamManager | None = None) -> None:
        self.pdp = pdp
        self.principal = principal
        self.stores = stores
        # Shared (``upstreams``) by the sessions of the HTTP transport, which starts and stops it; else our own.
        self.upstreams = upstreams or UpstreamManager(config, on_tools_changed=self._tools_changed,
                                                      audit=self._audit)
        self.session = SessionState(session_id or f"s-{uuid.uuid4().hex}")
        self.governance = Governance(
            stores, principal, self.upstreams, relist=self._relist, is_write=self._is_write, audit=self._audit,
            session_id=self.session.id, binding=self.session.binding, key_file=key_file,
        )
        self.client: ServerSession | None = None  # the agent's side, once it sent a request
        self.log_level: types.LoggingLevel | None = None  # set by logging/setLevel
        self.upstreams.router.attach(self)

    # --- serving ------------------------------------------------------------------------

    def server(self) -> Server[Any]:
        return build_server(lambda ctx: self)

    async def serve_stdio(self) -> None:
        """Start the upstreams, serve MCP on stdin/stdout until the client leaves, stop the upstreams."""
        async with anyio.create_task_group() as tg:
            await self.upstreams.start(tg)
            self._audit("gateway_started", {
                "session_id": self.session.id,
                "principal": self.principal.name, "role": self.principal.role, "groups": list(self.principal.groups),
                "upstreams": self.upstreams.status(), "tools": self._digests(),
            })
            server = self.server()
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
            self.end_session()
            self.upstreams.stop()
            tg.cancel_scope.cancel()

    def end_session(self) -> list[tuple[str, str]]:
        """The agent left: forget its session, and record a plan still bound to it (it stays executing).
        Returns the resource subscriptions nobody holds any more (the caller unsubscribes upstream)."""
        orphaned = self.upstreams.router.detach(self)
        self._session_ended()
        return orphaned

    def _session_ended(self) -> None:
        bound = self.session.plan
        if bound is None:
            return
        try:
            state = self.stores.plans.get(bound.id).state.value
        except WritError as e:
            state = f"unknown ({e.code})"
        self._audit("session_plan", {"session_id": self.session.id, "principal": self.principal.name,
                                     "plan_id": bound.id, "event": "session_ended", "state": state})

    # --- tools/list ---------------------------------------------------------------------

    async def list_tools(self, ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        self.client = ctx.session
        entries = list(self.governance.tools.values()) + self.upstreams.tools()
        return types.ListToolsResult(tools=[self._exposed(t) for t in entries if self._visible(t)])

    def _dry_run(self, entry: UpstreamTool) -> Decision:
        """The engine alone, not logged: a hint for the listing, never an enforcement."""
        return self.pdp.engine.decide(self._input(entry, {}, Session(id=self.session.id)))

    def _visible(self, entry: UpstreamTool) -> bool:
        dry = self._dry_run(entry)
        return dry.allow or not dry.reasons or not set(dry.reason_codes) <= HIDDEN_WHEN_ONLY

    def _is_write(self, entry: UpstreamTool) -> bool:
        """Does policy treat this tool as a write (a call that may run only as a plan step)?"""
        return self._dry_run(entry).has_obligation("plan_required")

    @staticmethod
    def _exposed(entry: UpstreamTool) -> types.Tool:
        meta = dict(entry.tool.meta or {})
        meta.update({f"{META}server": entry.server, f"{META}tool": entry.tool.name,
                     f"{META}definition_digest": entry.digest})
        return entry.tool.model_copy(update={"name": entry.exposed_name, "meta": meta})

    # --- tools/call ---------------------------------------------------------------------

    async def call_tool(self, ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        self.client = ctx.session
        name, args = params.name, params.arguments or {}
        if name.partition(SEPARATOR)[0] == SERVER:
            return await self._call_governance(name, args)
        entry = self._known(name)
        if isinstance(entry, types.CallToolResult):
            return entry
        try:
            entry, plan, choice = await self._plan_context(entry, args)
        except _Unknown:
            return self._unknown(name)
        except WritError as e:  # the plan store or the upstream listing failed: no way to tell the step
            log.warning("cannot tie %s to the bound plan: %s", name, e.message)
            return deny_result(self.pdp.refuse_input(InputError(
                f"the call to {name} could not be checked against this session's plan: {e.message}", code=e.code)))
        except Exception as e:  # never a traceback to the agent
            log.exception("cannot tie %s to the bound plan", name)
            return deny_result(self.pdp.refuse_input(InputError(
                f"the call to {name} could not be checked against this session's plan ({type(e).__name__})",
                code=reasons.GATEWAY_ERROR)))
        decision = self._decide(entry, args, plan)
        if decision is None:
            return deny_result(self.pdp.refuse_input(InputError(
                f"the call to {name} could not be turned into a policy input", code=reasons.GATEWAY_ERROR)))
        if not decision.allow:
            note = choice.reason if choice is not None and "step_not_in_plan" in decision.reason_codes else ""
            return deny_result(decision, note=note)
        unmet = sorted({o.code for o in decision.obligations} - FULFILLABLE)
        if unmet:
            return self._unfulfilled(decision, entry, unmet)
        step: StepRun | None = None
        if decision.has_obligation("plan_required"):
            bound = self.session.plan
            if bound is None or choice is None or not choice.matches or choice.index is None:
                # The policy allowed a write the gateway cannot tie to a step of a bound plan: fail closed.
                return self._unfulfilled(decision, entry, ["plan_required"])
            refused = self._claim(decision, entry, args, bound, choice.index)
            if refused is not None:
                return refused
            step = StepRun(bound.id, choice.index)
        return await self._forward(decision, entry, args, step, ctx)

    def _known(self, name: str) -> UpstreamTool | types.CallToolResult:
        entry = self.upstreams.tool(name)
        if entry is not None:
            return entry
        upstream = self.upstreams.upstream_of(name)
        if upstream is None or upstream.state == "ready" or upstream.tools:
            return self._unknown(name)
        # Its upstream never listed its tools: the tool cannot be known, nor called.
        return deny_result(self.pdp.refuse_input(InputError(
            f"tool {name!r}: upstream {upstream.name!r} is not available ({upstream.problem or upstream.state})",
            code=reasons.UPSTREAM_UNAVAILABLE)))

    def _unknown(self, name: str) -> NoReturn:
        self._audit("tool_unknown", {"session_id": self.session.id, "principal": self.principal.name,
                                     "tool": name[:200]})
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")

    def _decide(self, entry: UpstreamTool, args: dict[str, Any], plan: PlanContext | None) -> Decision | None:
        """Decide (and log) the call; lock the session if the decision says so. None: no input could be built."""
        return self._decide_input(lambda: self._input(entry, args, self._session_now(), plan), entry.exposed_name)

    def _decide_input(self, build: Callable[[], PolicyInput], what: str) -> Decision | None:
        try:
            inp = build()
        except Exception as e:  # noqa: BLE001 - e.g. arguments that are not an object: a logged deny
            log.warning("cannot build the policy input for %s: %s", what, e)
            return None
        decision = self.pdp.decide(inp)
        if decision.has_obligation("lock_session"):
            self.session.locked = True
        return decision

    def _session_now(self) -> Session:
        return Session(id=self.session.id, locked=self.session.locked)

    def _unfulfilled(self, decision: Decision, entry: UpstreamTool, unmet: list[str]) -> types.CallToolResult:
        message = f"the policy allowed the call on obligations the gateway cannot meet: {', '.join(unmet)}"
        self._record(decision, entry, "obligation_unfulfilled", 0, error={"message": message})
        return error_result(reasons.OBLIGATION_UNFULFILLED, message, decision)

    # --- plans ---------------------------------------------------------------------------

    async def _plan_context(self, entry: UpstreamTool, args: dict[str, Any]
                            ) -> tuple[UpstreamTool, PlanContext | None, StepChoice | None]:
        """The bound plan as policy sees it for this call, and which step the call is (None: no plan bound)."""
        bound = self.session.plan
        if bound is None:
            return entry, None, None
        plans = self.stores.plans
        record = plans.get(bound.id)
        claimed = {c.step_index for c in plans.claims(bound.id)}
        if is_candidate(bound.plan, entry.server, entry.tool.name):
            await self._relist(entry.server)  # the definition as the upstream declares it now
            fresh = self.upstreams.tool(entry.exposed_name)
            if fresh is None:
                raise _Unknown
            entry = fresh
        choice = choose_step(bound.plan, claimed, server=entry.server, tool=entry.tool.name,
                             definition_digest=entry.digest, args=args, limits=plans.limits)
        context = PlanContext(id=record.id, state=cast(Any, record.state.value), planner=record.planner,
                              expires_at=bound.plan.expires_at, step_matches=choice.matches, step_index=choice.index)
        return entry, context, choice

    def _bound_context(self) -> PlanContext | None:
        """The bound plan for a governance call: no step is being run."""
        bound = self.session.plan
        if bound is None:
            return None
        record = self.stores.plans.get(bound.id)
        return PlanContext(id=record.id, state=cast(Any, record.state.value), planner=record.planner,
                           expires_at=bound.plan.expires_at, step_matches=False, step_index=None)

    async def _relist(self, server: str) -> None:
        """List ``server``'s tools now and wait for the answer (``UpstreamUnavailable`` if it is down).

        Uses the upstream's session directly: ``Upstream.request_refresh`` only schedules a listing.
        """
        upstream = self.upstreams.upstreams.get(server)
        if upstream is None:
            return
        session = upstream._session  # private: an awaitable refresh belongs on Upstream
        if session is None:
            raise UpstreamUnavailable(f"upstream {server!r} is {upstream.state}: its tool definitions cannot be "
                                      "checked now, so the call was not made")
        try:
            with anyio.fail_after(upstream.start_timeout_s):
                changed = await upstream._list_tools(session)
        except Exception as e:  # noqa: BLE001 - an unlisted definition cannot be trusted: fail closed
            raise UpstreamUnavailable(f"listing the tools of upstream {server!r} failed "
                                      f"({describe(e, upstream.start_timeout_s)}); the call was not made") from None
        if changed:
            await self._tools_changed()

    def _claim(self, decision: Decision, entry: UpstreamTool, args: dict[str, Any], bound: BoundPlan,
               index: int) -> types.CallToolResult | None:
        """Claim step ``index`` for this call; a refusal (already logged by the store) as a denied result."""
        where = {"plan_id": bound.id, "step_index": index}
        try:
            self.stores.plans.claim_step(bound.id, index, self.principal.name, server=entry.server,
                                         tool=entry.tool.name, definition_digest=entry.digest, args=args)
        except WritError as e:  # StepAlreadyClaimed, ClaimRefused, PermissionDenied, StoreError, AuditError
            self._record(decision, entry, e.code, 0, error={"message": e.message, **where})
            return refused_result(e.code, e.message, decision)
        except Exception as e:  # a failed claim is no claim: the call does not run
            log.exception("claiming step %d of %s failed", index, bound.id)
            self._record(decision, entry, "gateway_error", 0, error={"message": f"{type(e).__name__}", **where})
            return error_result(reasons.GATEWAY_ERROR, f"claiming the plan step failed ({type(e).__name__}); "
                                "the call was not made", decision)
        return None

    def _step_done(self, step: StepRun | None, outcome: str, result_sha256: str | None) -> None:
        """Record how a claimed step ended. If that fails, the call already happened: log it loudly."""
        if step is None:
            return
        try:
            self.stores.plans.record_result(step.plan_id, step.index, result_sha256,
                                            "succeeded" if outcome == "ok" else "failed")
        except WritError as e:
            log.error("the result of step %d of plan %s (%s) was not recorded: %s",
                      step.index, step.plan_id, outcome, e.message)

    # --- governance tools ------------------------------------------------------------------

    async def _call_governance(self, name: str, args: dict[str, Any]) -> types.CallToolResult:
        entry = self.governance.tools.get(name)
        if entry is None:
            return self._unknown(name)
        try:
            plan = self._bound_context()
        except WritError as e:
            return deny_result(self.pdp.refuse_input(InputError(
                f"the plan bound to this session cannot be read: {e.message}", code=e.code)))
        decision = self._decide(entry, args, plan)
        if decision is None:
            return deny_result(self.pdp.refuse_input(InputError(
                f"the call to {name} could not be turned into a policy input", code=reasons.GATEWAY_ERROR)))
        if not decision.allow:
            return deny_result(decision)
        unmet = sorted({o.code for o in decision.obligations} - {"lock_session"})
        if unmet:  # e.g. plan_required: Writ's own tools never run as plan steps
            return self._unfulfilled(decision, entry, unmet)
        start = time.perf_counter_ns()
        try:
            answer = await self.governance.call(entry.tool.name, args)
        except WritError as e:
            self._record(decision, entry, e.code, (time.perf_counter_ns() - start) // 1000,
                         error={"message": e.message[:500]})
            return error_result(e.code, e.message, decision)
        except Exception as e:  # never a traceback to the agent
            log.exception("%s failed", name)
            self._record(decision, entry, "gateway_error", (time.perf_counter_ns() - start) // 1000,
                         error={"message": f"{type(e).__name__}: {e}"[:500]})
            return error_result(reasons.GATEWAY_ERROR, f"{name} failed ({type(e).__name__})", decision)
        result = types.CallToolResult(content=[types.TextContent(type="text", text=answer.text)],
                                      structured_content=answer.data)
        self._record(decision, entry, "ok", (time.perf_counter_ns() - start) // 1000, result=result)
        return result

    # --- forwarding ------------------------------------------------------------------------

    async def _forward(self, decision: Decision, entry: UpstreamTool, args: dict[str, Any],
                       step: StepRun | None = None,
                       ctx: ServerRequestContext[Any, Any] | None = None) -> types.CallToolResult:
        start = time.perf_counter_ns()

        def done(outcome: str, result: types.CallToolResult | None = None,
                 error: dict[str, Any] | None = None) -> None:
            duration_us = (time.perf_counter_ns() - start) // 1000
            sha = result_digest(result) if result is not None else None
            self._record(decision, entry, outcome, duration_us, result_sha256=sha, error=error, step=step)
            self._step_done(step, outcome, sha)

        result = await self._upstream(entry.server, ctx, lambda: self.upstreams.call(entry, args, self._progress(ctx)),
                                      done, "the call")
        if isinstance(result, _Failed):
            return error_result(result.code, result.message, decision)
        done("tool_error" if result.is_error else "ok", result)
        return result

    async def _upstream(self, server: str, ctx: ServerRequestContext[Any, Any] | None,
                        call: Callable[[], Awaitable[R]], done: Callable[..., None], what: str) -> R | _Failed:
        """Run ``call`` as this session's request on ``server``; ``done(outcome, error=...)`` records a failure.

        The upstream's own JSON-RPC errors (recorded as ``upstream_error``) and cancellation propagate;
        any other failure is recorded and returned as ``_Failed``, never a traceback to the agent.
        """
        try:
            with self._exchange(server, ctx):
                return await call()
        except MCPError as e:
            done("upstream_error", error={"code": e.code, "message": e.message[:500]})
            raise
        except WritError as e:  # upstream_unavailable, upstream_timeout
            done(e.code, error={"message": e.message})
            return _Failed(e.code, e.message)
        except anyio.get_cancelled_exc_class():
            done("cancelled")
            raise
        except Exception as e:  # never a traceback to the agent: logged here and in the audit log
            log.exception("forwarding %s to %s failed", what, server)
            done("gateway_error", error={"message": f"{type(e).__name__}: {e}"[:500]})
            return _Failed("gateway_error", f"forwarding {what} failed ({type(e).__name__}); "
                           "it may or may not have reached the server")

    def _input(self, entry: UpstreamTool, args: dict[str, Any], session: Session,
               plan: PlanContext | None = None) -> PolicyInput:
        hints = entry.tool.annotations
        annotations = ToolAnnotations(
            read_only=hints.read_only_hint, destructive=hints.destructive_hint,
            idempotent=hints.idempotent_hint, open_world=hints.open_world_hint,
        ) if hints else ToolAnnotations()
        tool = Tool(server=entry.server, name=entry.tool.name, annotations=annotations, definition_digest=entry.digest)
        return self._policy_input("tools/call", tool, args, session, plan)

    def _policy_input(self, method: Method, tool: Tool, args: dict[str, Any], session: Session,
                      plan: PlanContext | None) -> PolicyInput:
        return PolicyInput(
            principal=self.principal.name, role=self.principal.role, groups=list(self.principal.groups),
            session=session, method=method, tool=tool, args=args, plan=plan, now=datetime.now(UTC),
        )

    # --- resources, prompts, completions, logging: passed through, reads decided by policy ----

    async def list_resources(self, ctx: ServerRequestContext[Any, Any],
                             params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        self.client = ctx.session
        out: list[types.Resource] = []
        for upstream in self.upstreams.ready("resources"):
            for r in await self._gather(upstream, "resources",
                                        lambda s, c: s.list_resources(params=c), lambda page: page.resources):
                if self._may("resources/read", upstream.name, r.uri):
                    out.append(r.model_copy(update={"uri": expose_uri(upstream.name, r.uri)}))
        return types.ListResourcesResult(resources=out)

    async def list_resource_templates(self, ctx: ServerRequestContext[Any, Any],
                                      params: types.PaginatedRequestParams | None
                                      ) -> types.ListResourceTemplatesResult:
        self.client = ctx.session
        out: list[types.ResourceTemplate] = []
        for upstream in self.upstreams.ready("resources"):
            for t in await self._gather(upstream, "resource templates", lambda s, c: s.list_resource_templates(
                    params=c), lambda page: page.resource_templates):
                if self._may("resources/read", upstream.name, t.uri_template):
                    out.append(t.model_copy(update={"uri_template": expose_uri(upstream.name, t.uri_template)}))
        return types.ListResourceTemplatesResult(resource_templates=out)

    async def read_resource(self, ctx: ServerRequestContext[Any, Any],
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        server, uri = self._resource(params.uri)
        result = await self._pass(ctx, "resources/read", server, uri, {},
                                  lambda s: s.read_resource(uri))
        if not isinstance(result, types.ReadResourceResult):
            raise MCPError(types.INTERNAL_ERROR, f"upstream {server!r} answered resources/read with something else")
        return result.model_copy(update={"contents": [
            c.model_copy(update={"uri": expose_uri(server, c.uri)}) for c in result.contents]})

    async def subscribe_resource(self, ctx: ServerRequestContext[Any, Any],
                                 params: types.SubscribeRequestParams) -> types.EmptyResult:
        server, uri = self._resource(params.uri)
        router = self.upstreams.router
        if router.subscribe(server, uri, self):
            try:
                await self._pass(ctx, "resources/subscribe", server, uri, {}, lambda s: s.subscribe_resource(uri))
            except BaseException:
                router.unsubscribe(server, uri, self)
                raise
        else:  # the upstream already sends updates for it: policy still decides for this session
            self._require("resources/subscribe", server, uri, {})
        return types.EmptyResult()

    async def unsubscribe_resource(self, ctx: ServerRequestContext[Any, Any],
                                   params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        self.client = ctx.session
        server, uri = self._resource(params.uri)
        if self.upstreams.router.unsubscribe(server, uri, self):
            await self.upstreams.unsubscribe(server, uri)
        return types.EmptyResult()

    async def list_prompts(self, ctx: ServerRequestContext[Any, Any],
                           params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        self.client = ctx.session
        out: list[types.Prompt] = []
        for upstream in self.upstreams.ready("prompts"):
            for prompt in await self._gather(upstream, "prompts", lambda s, c: s.list_prompts(params=c),
                                             lambda page: page.prompts):
                if self._may("prompts/get", upstream.name, prompt.name):
                    out.append(prompt.model_copy(update={"name": f"{upstream.name}{SEPARATOR}{prompt.name}"}))
        return types.ListPromptsResult(prompts=out)

    async def get_prompt(self, ctx: ServerRequestContext[Any, Any],
                         params: types.GetPromptRequestParams) -> types.GetPromptResult:
        server, name = self._prompt(params.name)
        args = dict(params.arguments or {})
        result = await self._pass(ctx, "prompts/get", server, name, args, lambda s: s.get_prompt(name, args))
        if not isinstance(result, types.GetPromptResult):
            raise MCPError(types.INTERNAL_ERROR, f"upstream {server!r} answered prompts/get with something else")
        return result

    async def complete(self, ctx: ServerRequestContext[Any, Any],
                       params: types.CompleteRequestParams) -> types.CompleteResult:
        ref = params.ref
        ref_up: types.PromptReference | types.ResourceTemplateReference
        if isinstance(ref, types.PromptReference):
            server, name = self._prompt(ref.name)
            ref_up = ref.model_copy(update={"name": name})
        else:
            server, name = self._resource(ref.uri)
            ref_up = ref.model_copy(update={"uri": name})
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = dict(params.context.arguments or {}) if params.context else None
        args: dict[str, Any] = {"argument": argument, "context": context or {}}
        return await self._pass(ctx, "completion/complete", server, name, args,
                                lambda s: s.complete(ref_up, argument, context))

    async def set_logging_level(self, ctx: ServerRequestContext[Any, Any],
                                params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Messages below ``level`` are no longer sent to this session; each upstream that logs is asked
        for the lowest level any session wants."""
        self.client = ctx.session
        self.log_level = params.level
        levels = [g.log_level for g in self.upstreams.router.gateways if g.log_level is not None]
        lowest = min(levels, key=LOG_LEVELS.index) if levels else params.level
        for upstream in self.upstreams.ready("logging"):
            try:
                await upstream.request(lambda s: s.set_logging_level(lowest))
            except (WritError, MCPError) as e:
                log.warning("upstream %s: logging/setLevel failed: %s", upstream.name, describe(e, 0))
        return types.EmptyResult()

    # --- what an upstream sends of its own accord (routed here by passthrough.Router) -------

    async def ask(self, server: str, method: Method, params: Any, target: Exchange
                  ) -> SamplingResult | types.ElicitResult | types.ErrorData:
        """An upstream's sampling or elicitation request: decided by policy for this session's principal,
        then put to the agent's client on the request it belongs to."""
        session = target.session
        capability = (types.ClientCapabilities(sampling=types.SamplingCapability())
                      if method == "sampling/createMessage" else
                      types.ClientCapabilities(elicitation=types.ElicitationCapability()))
        if session is None or not session.check_client_capability(capability):
            return self.upstreams.router.refuse(server, method, "client_unsupported",
                                                f"the agent's client does not support {method}",
                                                session_id=self.session.id, principal=self.principal.name)
        try:
            decision = self._require(method, server, method, {})
        except MCPError as e:
            return types.ErrorData(code=e.code, message=e.message)
        start = time.perf_counter_ns()
        request: types.CreateMessageRequest | types.ElicitRequest
        result_type: type[BaseModel]
        if method == "sampling/createMessage":
            request = types.CreateMessageRequest(params=params)
            wants_tools = params.tools is not None or params.tool_choice is not None
            result_type = types.CreateMessageResultWithTools if wants_tools else types.CreateMessageResult
        else:
            request = types.ElicitRequest(params=params)
            result_type = types.ElicitResult
        try:
            answer = await session.send_request(
                request, result_type, metadata=ServerMessageMetadata(related_request_id=target.request_id))
        except MCPError as e:
            self._record_request(decision, method, server, method, "client_error", start,
                                 error={"code": e.code, "message": e.message[:500]})
            return types.ErrorData(code=e.code, message=e.message, data=e.data)
        except Exception as e:  # noqa: BLE001 - the client went away, or answered nonsense
            self._record_request(decision, method, server, method, "gateway_error", start,
                                 error={"message": f"{type(e).__name__}: {e}"[:500]})
            return types.ErrorData(code=types.INTERNAL_ERROR, message=f"the agent's client did not answer {method} "
                                   f"({type(e).__name__})")
        self._record_request(decision, method, server, method, "ok", start, result=answer)
        return cast(SamplingResult | types.ElicitResult, answer)

    async def relay_log(self, server: str, params: types.LoggingMessageNotificationParams, target: Exchange) -> None:
        """An upstream's log message, to this session when its level is wanted; the logger names the server."""
        if self.log_level is not None and LOG_LEVELS.index(params.level) < LOG_LEVELS.index(self.log_level):
            return
        logger = f"{server}.{params.logger}" if params.logger else server
        session = target.session or self.client
        if session is None:
            return
        try:
            await session.send_log_message(params.level, params.data, logger=logger,
                                           related_request_id=target.request_id)
        except Exception as e:  # noqa: BLE001 - the client may be gone
            log.info("could not pass a log message of %s on: %s", server, e)

    async def notify(self, send: Callable[[ServerSession], Awaitable[None]]) -> None:
        """A notification to this session's client, if it is (still) there."""
        if self.client is None:
            return
        try:
            await send(self.client)
        except Exception as e:  # noqa: BLE001 - the client may be gone or not take notifications
            log.info("could not notify the client: %s", e)

    # --- pass-through helpers ------------------------------------------------------------

    def _resource(self, exposed: str) -> tuple[str, str]:
        parts = split_uri(str(exposed))
        if parts is None or parts[0] not in self.upstreams.upstreams:
            raise MCPError(types.INVALID_PARAMS, f"Unknown resource: {exposed} (Writ's resource URIs look like "
                           "writ://<server>/<uri>: list them with resources/list)")
        return parts

    def _prompt(self, exposed: str) -> tuple[str, str]:
        parts = split_name(exposed)
        if parts is None or parts[0] not in self.upstreams.upstreams:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {exposed} (Writ's prompts are named "
                           "<server>__<prompt>: list them with prompts/list)")
        return parts

    async def _gather(self, upstream: Upstream, what: str, fetch: Callable[[ClientSession, Any], Awaitable[Any]],
                      items: Callable[[Any], list[R]]) -> list[R]:
        """Every page of one upstream's list; an upstream that fails is left out (and logged), not fatal."""
        try:
            return await all_pages(lambda params: upstream.request(lambda s: fetch(s, params)), items)
        except (WritError, MCPError) as e:
            log.warning("upstream %s: listing %s failed: %s", upstream.name, what, describe(e, 0))
            return []

    def _may(self, method: Method, server: str, name: str) -> bool:
        """A listing hint (the engine alone, not logged), like ``_visible`` for tools."""
        try:
            dry = self.pdp.engine.decide(self._policy_input(method, Tool(server=server, name=name), {},
                                                            self._session_now(), None))
        except Exception:  # noqa: BLE001 - e.g. an empty name: listed, and decided when used
            return True
        return dry.allow or not dry.reasons or not set(dry.reason_codes) <= HIDDEN_WHEN_ONLY

    def _require(self, method: Method, server: str, name: str, args: dict[str, Any]) -> Decision:
        """Decide (and log) a request that is not a tool call; a denial is a JSON-RPC error naming the reason."""
        try:
            plan = self._bound_context()
        except WritError as e:
            decided: Decision | None = self.pdp.refuse_input(InputError(
                f"{method} of {server}: the plan bound to this session cannot be read: {e.message}", code=e.code))
        else:
            decided = self._decide_input(lambda: self._policy_input(
                method, Tool(server=server, name=name), args, self._session_now(), plan), f"{method} of {server}")
        decision = decided or self.pdp.refuse_input(InputError(
            f"{method} of {server} could not be turned into a policy input", code=reasons.GATEWAY_ERROR))
        if not decision.allow:
            raise MCPError(types.INVALID_REQUEST, deny_text(decision), data=decision_meta(decision))
        unmet = sorted({o.code for o in decision.obligations} - {"lock_session"})
        if unmet:  # e.g. plan_required: only tool calls can be plan steps
            message = f"the policy allowed {method} on obligations the gateway cannot meet: {', '.join(unmet)}"
            self._record_request(decision, method, server, name, "obligation_unfulfilled", time.perf_counter_ns(),
                                 error={"message": message})
            raise MCPError(types.INVALID_REQUEST, f"error [obligation_unfulfilled]: {message}",
                           data=decision_meta(decision, "obligation_unfulfilled"))
        return decision

    async def _pass(self, ctx: ServerRequestContext[Any, Any], method: Method, server: str, name: str,
                    args: dict[str, Any], send: Callable[[ClientSession], Awaitable[R]]) -> R:
        """Decide, forward to ``server``, record: the life of every request that is not a tool call."""
        self.client = ctx.session
        decision = self._require(method, server, name, args)
        upstream = self.upstreams.upstreams[server]
        start = time.perf_counter_ns()

        def done(outcome: str, result: BaseModel | None = None, error: dict[str, Any] | None = None) -> None:
            self._record_request(decision, method, server, name, outcome, start, result=result, error=error)

        result = await self._upstream(server, ctx, lambda: upstream.request(send), done, method)
        if isinstance(result, _Failed):
            raise MCPError(types.INTERNAL_ERROR, f"error [{result.code}]: {result.message}",
                           data=decision_meta(decision, result.code))
        done("ok", result if isinstance(result, BaseModel) else None)
        return result

    def _exchange(self, server: str, ctx: ServerRequestContext[Any, Any] | None) -> Any:
        return self.upstreams.router.exchange(server, self, ctx.session if ctx else self.client,
                                              ctx.request_id if ctx else None)

    @staticmethod
    def _progress(ctx: ServerRequestContext[Any, Any] | None) -> ProgressFnT | None:
        """Progress of the upstream's work, passed on under the agent's own progress token."""
        meta: Any = ctx.meta if ctx is not None else None
        token = (meta.get("progress_token", meta.get("progressToken")) if isinstance(meta, dict) else None)
        if ctx is None or token is None:
            return None
        session, request_id = ctx.session, ctx.request_id

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            try:
                await session.send_progress_notification(token, progress, total, message,
                                                         related_request_id=str(request_id))
            except Exception as e:  # noqa: BLE001 - the client may be gone
                log.info("could not pass progress on: %s", e)

        return relay

    # --- audit ---------------------------------------------------------------------------

    def _record(self, decision: Decision, entry: UpstreamTool, outcome: str, duration_us: int, *,
                result: types.CallToolResult | None = None, result_sha256: str | None = None,
                error: dict[str, Any] | None = None, step: StepRun | None = None) -> None:
        """The ``tool_result`` entry of an allowed call. If it cannot be written, the call already happened:
        the result still goes back, and the process log says the entry is missing."""
        if result is not None and result_sha256 is None:
            result_sha256 = result_digest(result)
        payload: dict[str, Any] = {
            "decision_id": decision.decision_id, "session_id": self.session.id, "principal": self.principal.name,
            "server": entry.server, "tool": entry.tool.name, "definition_digest": entry.digest,
            "outcome": outcome, "duration_us": duration_us, "result_sha256": result_sha256,
        }
        if step is not None:
            payload.update({"plan_id": step.plan_id, "step_index": step.index})
        if error:
            payload["error"] = error
        self._audit("tool_result", payload)

    def _record_request(self, decision: Decision, method: str, server: str, name: str, outcome: str,
                        start_ns: int, *, result: BaseModel | None = None, error: dict[str, Any] | None = None
                        ) -> None:
        """The ``request_result`` entry of an allowed request that is not a tool call (cf. ``_record``)."""
        payload: dict[str, Any] = {
            "decision_id": decision.decision_id, "session_id": self.session.id, "principal": self.principal.name,
            "method": method, "server": server, "name": name[:1000], "outcome": outcome,
            "duration_us": max(0, (time.perf_counter_ns() - start_ns) // 1000),
            "result_sha256": result_digest(result) if result is not None else None,
        }
        if error:
            payload["error"] = error
        self._audit("request_result", payload)

    def _audit(self, kind: str, payload: dict[str, Any]) -> None:
        try:
            self.pdp.audit.append(kind, payload)
        except AuditError as e:
            log.error("audit entry %s not written (%s): %s", kind, e.message, json.dumps(payload, default=str)[:1000])

    def _digests(self) -> dict[str, str]:
        return {t.exposed_name: t.digest for t in self.upstreams.tools()}

    async def _tools_changed(self) -> None:
        self._audit("tools_changed", {"session_id": self.session.id, "tools": self._digests()})
        await self.notify(lambda client: client.send_tool_list_changed())


@dataclass(frozen=True)
class _Failed:
    """A forwarded request that failed in a way the gateway reports itself (with a reason code)."""

    code: str
    message: str


class _Unknown(Exception):
    """The tool vanished from its upstream's listing."""


def deny_text(decision: Decision, *, note: str = "") -> str:
    lines = [f"denied [{r.code}]: {r.message}" for r in decision.reasons]
    if note:
        lines.append(f"plan: {note}")
    lines += [f"obligation [{o.code}]: {o.message}" for o in decision.obligations if o.code == "lock_session"]
    return "\n".join(lines)


def deny_result(decision: Decision, *, note: str = "") -> types.CallToolResult:
    return _result(deny_text(decision, note=note), decision)


def refused_result(code: str, message: str, decision: Decision) -> types.CallToolResult:
    """Allowed by policy, refused by the plan store (the claim): a denial the agent reads like any other."""
    return _result(f"denied [{code}]: {message}", decision, code=code)


def error_result(code: str, message: str, decision: Decision) -> types.CallToolResult:
    return _result(f"error [{code}]: {message}", decision, code=code)


def decision_meta(decision: Decision, code: str | None = None) -> dict[str, Any]:
    """``{"writ/decision": ...}``: the decision id, outcome and reasons, for the agent and its operator."""
    meta: dict[str, Any] = {
        "decision_id": decision.decision_id, "allow": decision.allow,
        "reasons": [r.model_dump() for r in decision.reasons], "policy_revision": decision.policy_revision,
    }
    if code:
        meta["error"] = code
    return {f"{META}decision": meta}


def _result(text: str, decision: Decision, *, code: str | None = None) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True,
                                meta=decision_meta(decision, code))


def result_digest(result: BaseModel) -> str:
    """``sha256:`` of the result as JSON: RFC 8785 when it has a canonical form, else sorted-key JSON text."""
    doc = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        return digest(doc)
    except InputError:
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
