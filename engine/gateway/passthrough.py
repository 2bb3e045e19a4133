"""Everything but tools, passed through: resources, prompts, completions, logging, and what upstreams ask the agent.

    result = await gateway.passthrough.read_resource(ctx, types.ReadResourceRequestParams(uri="writ://fs/file:///a"))
    answer = await gateway.passthrough.ask("fs", "sampling/createMessage", params, target)   # from the Router

Each request is decided by policy for the session's principal like a tool call (``method`` is
``resources/read``, ``prompts/get``, ``completion/complete``, ...; ``tool.server`` the upstream
and ``tool.name`` the URI, prompt or method), forwarded to the one upstream its name says
(``writ.engine.gateway.names``), and recorded as a ``request_result`` entry. A denial is a
JSON-RPC error naming the reason. Listings leave out what the role alone could never read.
Sampling and elicitation requests of an upstream reach this session through the ``Router``
(``writ.engine.gateway.routing``) and are decided the same way before the agent's client sees them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from pydantic import BaseModel

from writ.engine.core import reasons
from writ.engine.core.errors import InputError, WritError
from writ.engine.gateway.config import SEPARATOR
from writ.engine.gateway.listing import all_pages
from writ.engine.gateway.names import expose_uri, split_name, split_uri
from writ.engine.gateway.results import (
    Failed,
    decision_meta,
    deny_text,
    listable,
    oversize,
    result_digest,
    result_size,
)
from writ.engine.gateway.routing import Exchange, SamplingResult
from writ.engine.gateway.upstream import Upstream, describe
from writ.engine.policy.models import Decision, Method, Tool

if TYPE_CHECKING:
    from writ.engine.gateway.server import Gateway

log = logging.getLogger(__name__)
R = TypeVar("R")

LOG_LEVELS: tuple[types.LoggingLevel, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert",
                                              "emergency")
SAMPLING: Method = "sampling/createMessage"


class PassThrough:
    """The handlers of every request but ``tools/call`` for one gateway session (``gateway.passthrough``).

        prompts = await gateway.passthrough.list_prompts(ctx, None)      # <server>__<prompt>, readable ones
        await gateway.passthrough.subscribe_resource(ctx, params)        # forwarded once per resource
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    # --- resources ------------------------------------------------------------------------

    async def list_resources(self, ctx: ServerRequestContext[Any, Any],
                             params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        """Every ready upstream's resources the role may read, as ``writ://<server>/<uri>``."""
        self._admit("resources/list")
        out: list[types.Resource] = []
        for upstream in self.gateway.upstreams.ready("resources"):
            for r in await self._gather(upstream, "resources",
                                        lambda s, c: s.list_resources(params=c), lambda page: page.resources):
                if self._may("resources/read", upstream.name, r.uri):
                    out.append(r.model_copy(update={"uri": expose_uri(upstream.name, r.uri)}))
        return types.ListResourcesResult(resources=out)

    async def list_resource_templates(self, ctx: ServerRequestContext[Any, Any],
                                      params: types.PaginatedRequestParams | None
                                      ) -> types.ListResourceTemplatesResult:
        """Every ready upstream's resource templates the role may read, as ``writ://<server>/<template>``."""
        self._admit("resources/templates/list")
        out: list[types.ResourceTemplate] = []
        for upstream in self.gateway.upstreams.ready("resources"):
            for t in await self._gather(upstream, "resource templates", lambda s, c: s.list_resource_templates(
                    params=c), lambda page: page.resource_templates):
                if self._may("resources/read", upstream.name, t.uri_template):
                    out.append(t.model_copy(update={"uri_template": expose_uri(upstream.name, t.uri_template)}))
        return types.ListResourceTemplatesResult(resource_templates=out)

    async def read_resource(self, ctx: ServerRequestContext[Any, Any],
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        """Decided, read from the URI's upstream, its contents' URIs exposed again."""
        server, uri = self._resource(params.uri)
        result = await self._pass(ctx, "resources/read", server, uri, {},
                                  lambda s: s.read_resource(uri))
        if not isinstance(result, types.ReadResourceResult):
            raise MCPError(types.INTERNAL_ERROR, f"upstream {server!r} answered resources/read with something else")
        return result.model_copy(update={"contents": [
            c.model_copy(update={"uri": expose_uri(server, c.uri)}) for c in result.contents]})

    async def subscribe_resource(self, ctx: ServerRequestContext[Any, Any],
                                 params: types.SubscribeRequestParams) -> types.EmptyResult:
        """Decided for this session; forwarded upstream only for the first subscriber of the resource."""
        server, uri = self._resource(params.uri)
        router = self.gateway.upstreams.router
        if router.subscribe(server, uri, self.gateway):
            try:
                await self._pass(ctx, "resources/subscribe", server, uri, {}, lambda s: s.subscribe_resource(uri))
            except BaseException:
                router.unsubscribe(server, uri, self.gateway)
                raise
        else:  # the upstream already sends updates for it: policy still decides for this session
            self.require("resources/subscribe", server, uri, {})
        return types.EmptyResult()

    async def unsubscribe_resource(self, ctx: ServerRequestContext[Any, Any],
                                   params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        """Forgotten for this session; forwarded upstream when nobody holds the resource any more."""
        self._admit("resources/unsubscribe")
        server, uri = self._resource(params.uri)
        if self.gateway.upstreams.router.unsubscribe(server, uri, self.gateway):
            await self.gateway.upstreams.unsubscribe(server, uri)
        return types.EmptyResult()

    # --- prompts and completions ------------------------------------------------------------

    async def list_prompts(self, ctx: ServerRequestContext[Any, Any],
                           params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        """Every ready upstream's prompts the role may get, as ``<server>__<prompt>``."""
        self._admit("prompts/list")
        out: list[types.Prompt] = []
        for upstream in self.gateway.upstreams.ready("prompts"):
            for prompt in await self._gather(upstream, "prompts", lambda s, c: s.list_prompts(params=c),
                                             lambda page: page.prompts):
                if self._may("prompts/get", upstream.name, prompt.name):
                    out.append(prompt.model_copy(update={"name": f"{upstream.name}{SEPARATOR}{prompt.name}"}))
        return types.ListPromptsResult(prompts=out)

    async def get_prompt(self, ctx: ServerRequestContext[Any, Any],
                         params: types.GetPromptRequestParams) -> types.GetPromptResult:
        """Decided with the prompt's arguments, got from its upstream."""
        server, name = self._prompt(params.name)
        args = dict(params.arguments or {})
        result = await self._pass(ctx, "prompts/get", server, name, args, lambda s: s.get_prompt(name, args))
        if not isinstance(result, types.GetPromptResult):
            raise MCPError(types.INTERNAL_ERROR, f"upstream {server!r} answered prompts/get with something else")
        return result

    async def complete(self, ctx: ServerRequestContext[Any, Any],
                       params: types.CompleteRequestParams) -> types.CompleteResult:
        """Completion of a prompt's or a resource template's argument, from the upstream it names."""
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

    # --- logging ----------------------------------------------------------------------------

    async def set_logging_level(self, ctx: ServerRequestContext[Any, Any],
                                params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Messages below ``level`` are no longer sent to this session.

        Each upstream that logs is asked for the lowest level any session wants.
        """
        self._admit("logging/setLevel")
        self.gateway.log_level = params.level
        levels = [g.log_level for g in self.gateway.upstreams.router.gateways if g.log_level is not None]
        lowest = min(levels, key=LOG_LEVELS.index) if levels else params.level
        for upstream in self.gateway.upstreams.ready("logging"):
            try:
                await upstream.request(lambda s: s.set_logging_level(lowest))
            except (WritError, MCPError) as e:
                log.warning("upstream %s: logging/setLevel failed: %s", upstream.name, describe(e, 0))
        return types.EmptyResult()

    async def relay_log(self, server: str, params: types.LoggingMessageNotificationParams, target: Exchange) -> None:
        """An upstream's log message, to this session when its level is wanted; the logger names the server.

        A message over ``limits.max_result_bytes`` is dropped (the process log says so).
        """
        level = self.gateway.log_level
        if level is not None and LOG_LEVELS.index(params.level) < LOG_LEVELS.index(level):
            return
        limit = self.gateway.stores.settings.limits.max_result_bytes
        if result_size(params, limit) > limit:  # bounded like a result: an upstream cannot flood the agent with one
            log.warning("upstream %s: a %s log message over limits.max_result_bytes (%d) was not passed on",
                        server, params.level, limit)
            return
        logger = f"{server}.{params.logger}" if params.logger else server
        session = target.session or self.gateway.client
        if session is None:
            return
        try:
            await session.send_log_message(params.level, params.data, logger=logger,
                                           related_request_id=target.request_id)
        except Exception as e:  # noqa: BLE001 - the client may be gone
            log.info("could not pass a log message of %s on: %s", server, e)

    # --- what an upstream asks of the agent (routed here by routing.Router) -------------------

    async def ask(self, server: str, method: Method, params: Any, target: Exchange
                  ) -> SamplingResult | types.ElicitResult | types.ErrorData:
        """An upstream's sampling or elicitation request, decided by policy for this session's principal.

        Allowed, it is put to the agent's client on the request it belongs to.
        """
        gw = self.gateway
        session = target.session
        capability = (types.ClientCapabilities(sampling=types.SamplingCapability()) if method == SAMPLING else
                      types.ClientCapabilities(elicitation=types.ElicitationCapability()))
        if session is None or not session.check_client_capability(capability):
            return gw.upstreams.router.refuse(server, method, reasons.CLIENT_UNSUPPORTED,
                                              f"the agent's client does not support {method}",
                                              session_id=gw.session.id, principal=gw.principal.name)
        try:
            decision = self.require(method, server, method, {})
        except MCPError as e:
            return types.ErrorData(code=e.code, message=e.message)
        start = time.perf_counter_ns()
        request, result_type = _client_request(method, params)
        try:
            answer = await session.send_request(
                request, result_type, metadata=ServerMessageMetadata(related_request_id=target.request_id))
        except MCPError as e:
            self._record(decision, method, server, method, "client_error", start,
                         error={"code": e.code, "message": e.message[:500]})
            return types.ErrorData(code=e.code, message=e.message, data=e.data)
        except Exception as e:  # noqa: BLE001 - the client went away, or answered nonsense
            self._record(decision, method, server, method, reasons.GATEWAY_ERROR, start,
                         error={"message": f"{type(e).__name__}: {e}"[:500]})
            return types.ErrorData(code=types.INTERNAL_ERROR, message=f"the agent's client did not answer {method} "
                                   f"({type(e).__name__})")
        self._record(decision, method, server, method, "ok", start, result=answer)
        return cast(SamplingResult | types.ElicitResult, answer)

    # --- deciding, forwarding, recording ----------------------------------------------------------

    def _admit(self, method: str) -> None:
        """A locked or disabled principal reaches no upstream at all: not to list, unsubscribe or set a log level.

        Requests that are decided (reads, prompts, completions) meet the lock in ``Gateway.decide``; these are
        not decided by policy, so the lock is checked here. Refused with a JSON-RPC error, audited.
        """
        gw = self.gateway
        refused = gw.guard.refusal()
        if refused is None:
            return
        code, message = refused
        gw.audit("request_refused", {"session_id": gw.session.id, "principal": gw.principal.name,
                                     "method": method, "code": code, "message": message})
        raise MCPError(types.INVALID_REQUEST, f"denied [{code}]: {message}", data={"code": code})


    def require(self, method: Method, server: str, name: str, args: dict[str, Any]) -> Decision:
        """Decide (and log) a request that is not a tool call; a denial is a JSON-RPC error naming the reason."""
        gw = self.gateway
        try:
            plan = gw.bound_context()
        except WritError as e:
            decided: Decision | None = gw.pdp.refuse_input(InputError(
                f"{method} of {server}: the plan bound to this session cannot be read: {e.message}", code=e.code))
        else:
            decided = gw.decide(lambda: gw.policy_input(
                method, Tool(server=server, name=name), args, gw.session_now(), plan), f"{method} of {server}")
        decision = decided or gw.pdp.refuse_input(InputError(
            f"{method} of {server} could not be turned into a policy input", code=reasons.GATEWAY_ERROR))
        if not decision.allow:
            raise MCPError(types.INVALID_REQUEST, deny_text(decision), data=decision_meta(decision))
        unmet = sorted({o.code for o in decision.obligations} - {reasons.LOCK_SESSION})
        if unmet:  # e.g. plan_required: only tool calls can be plan steps
            message = f"the policy allowed {method} on obligations the gateway cannot meet: {', '.join(unmet)}"
            self._record(decision, method, server, name, reasons.OBLIGATION_UNFULFILLED, time.perf_counter_ns(),
                         error={"message": message})
            raise MCPError(types.INVALID_REQUEST, f"error [{reasons.OBLIGATION_UNFULFILLED}]: {message}",
                           data=decision_meta(decision, reasons.OBLIGATION_UNFULFILLED))
        return decision

    async def _pass(self, ctx: ServerRequestContext[Any, Any], method: Method, server: str, name: str,
                    args: dict[str, Any], send: Callable[[ClientSession], Awaitable[R]]) -> R:
        """Decide, forward to ``server``, record: the life of every request that is not a tool call."""
        decision = self.require(method, server, name, args)
        upstream = self.gateway.upstreams.upstreams[server]
        start = time.perf_counter_ns()

        def done(outcome: str, result: BaseModel | None = None, error: dict[str, Any] | None = None) -> None:
            self._record(decision, method, server, name, outcome, start, result=result, error=error)

        result = await self.gateway.run_upstream(server, ctx, lambda: upstream.request(send), done, method)
        if isinstance(result, Failed):
            raise MCPError(types.INTERNAL_ERROR, f"error [{result.code}]: {result.message}",
                           data=decision_meta(decision, result.code))
        limit = self.gateway.stores.settings.limits.max_result_bytes
        too_large = oversize(result, limit) if isinstance(result, BaseModel) else None
        if too_large is not None:  # as a tool result's (ToolCalls)
            size = too_large[0]
            message = (f"the {method} result from {server!r} is about {size} bytes, more than "
                       f"limits.max_result_bytes ({limit}): it was not passed on (its sha256 is in the audit log)")
            self._record(decision, method, server, name, reasons.RESULT_TOO_LARGE, start, error={"message": message},
                         refused=too_large)
            raise MCPError(types.INVALID_REQUEST, f"error [{reasons.RESULT_TOO_LARGE}]: {message}",
                           data=decision_meta(decision, reasons.RESULT_TOO_LARGE))
        done("ok", result if isinstance(result, BaseModel) else None)
        return result

    def _record(self, decision: Decision, method: str, server: str, name: str, outcome: str,
                start_ns: int, *, result: BaseModel | None = None, error: dict[str, Any] | None = None,
                refused: tuple[int, str] | None = None) -> None:
        """The ``request_result`` entry of an allowed request that is not a tool call (cf. ``ToolCalls.record``).

        ``refused``: the size and sha256 of a result too large to pass on (nothing else of it is logged).
        """
        payload: dict[str, Any] = {
            "decision_id": decision.decision_id, "session_id": self.gateway.session.id,
            "principal": self.gateway.principal.name,
            "method": method, "server": server, "name": name[:1000], "outcome": outcome,
            "duration_us": max(0, (time.perf_counter_ns() - start_ns) // 1000),
            "result_sha256": result_digest(result) if result is not None else None,
        }
        if refused is not None:
            payload["result_bytes"], payload["result_sha256"] = refused
        if error:
            payload["error"] = error
        self.gateway.audit("request_result", payload)

    def _may(self, method: Method, server: str, name: str) -> bool:
        """A listing hint (the engine alone, not logged), like the gateway's for tools."""
        gw = self.gateway
        try:
            dry = gw.pdp.engine.decide(gw.policy_input(method, Tool(server=server, name=name), {},
                                                       gw.session_now(), None))
        except Exception:  # noqa: BLE001 - e.g. an empty name: listed, and decided when used
            return True
        return listable(dry)

    async def _gather(self, upstream: Upstream, what: str, fetch: Callable[[ClientSession, Any], Awaitable[Any]],
                      items: Callable[[Any], list[R]]) -> list[R]:
        """Every page of one upstream's list; an upstream that fails is left out (and logged), not fatal."""
        try:
            return await all_pages(lambda params: upstream.request(lambda s: fetch(s, params)), items)
        except (WritError, MCPError) as e:
            log.warning("upstream %s: listing %s failed: %s", upstream.name, what, describe(e, 0))
            return []

    def _resource(self, exposed: str) -> tuple[str, str]:
        parts = split_uri(str(exposed))
        if parts is None or parts[0] not in self.gateway.upstreams.upstreams:
            raise MCPError(types.INVALID_PARAMS, f"Unknown resource: {exposed} (Writ's resource URIs look like "
                           "writ://<server>/<uri>: list them with resources/list)")
        return parts

    def _prompt(self, exposed: str) -> tuple[str, str]:
        parts = split_name(exposed)
        if parts is None or parts[0] not in self.gateway.upstreams.upstreams:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {exposed} (Writ's prompts are named "
                           "<server>__<prompt>: list them with prompts/list)")
        return parts


def _client_request(method: Method, params: Any
                    ) -> tuple[types.CreateMessageRequest | types.ElicitRequest, type[BaseModel]]:
    """The request to put to the agent's client for an upstream's ``method``, and the result type to expect."""
    if method == SAMPLING:
        wants_tools = params.tools is not None or params.tool_choice is not None
        return (types.CreateMessageRequest(params=params),
                types.CreateMessageResultWithTools if wants_tools else types.CreateMessageResult)
    return types.ElicitRequest(params=params), types.ElicitResult
