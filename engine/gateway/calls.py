"""One ``tools/call`` through the gateway: decide, tie it to a step of the bound plan and claim it, forward, record.

    result = await gateway.calls.call_tool(ctx, types.CallToolRequestParams(name="git__git_commit", arguments=a))

``tools/call`` for ``git__git_commit``: policy input (principal, role, groups, session, tool with
the upstream's annotations and definition digest, args, plan, now) -> ``DecisionPoint.decide``
(logged) -> a deny is an ``isError`` result whose text is ``denied [code]: sentence`` per reason;
an allow is forwarded to the upstream and its result returned unchanged, after a ``tool_result``
audit entry (result digest, duration). An unknown tool is JSON-RPC error -32602.

With a plan bound to the session (``writ__writ_plan_begin``), ``plan`` is the plan's id, state,
planner and expiry, and which step this call is (``steps.choose_step``); before choosing, a
call that could be a step lists its upstream's tools again, so a definition changed since
approval (a rug pull) shows up as another digest and matches no step. An allow with the
obligation ``plan_required`` runs only as a claimed step: ``PlanStore.claim_step`` once, before
the upstream sees the call (a refused claim, or a claim whose audit entry could not be written,
is a ``denied [code]`` result and the call is not made), then ``PlanStore.record_result`` with
the result's digest. ``writ__*`` tools are Writ's own (``governance``), decided and audited
like any other.

Bounds on the call path: a constrained root that no longer resolves to the real path pinned at
``writ_plan_begin`` refuses the call before any step is chosen (``path_root_changed``); a
result larger than ``limits.max_result_bytes`` is never passed on (``result_too_large``): the
agent gets a denial and the ``tool_result`` entry its size and sha256 (a plan step is recorded
as failed).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, cast

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from writ.engine.core import reasons
from writ.engine.core.errors import InputError, WritError
from writ.engine.gateway.config import SEPARATOR
from writ.engine.gateway.listing import UpstreamTool
from writ.engine.gateway.plan_tools import SERVER
from writ.engine.gateway.results import (
    Failed,
    deny_result,
    error_result,
    oversize,
    refused_result,
    result_digest,
)
from writ.engine.gateway.sessions import request_state
from writ.engine.gateway.steps import BoundPlan, PathRootChanged, StepChoice, check_roots, choose_step, is_candidate
from writ.engine.policy.models import Decision, PlanContext
from writ.plans.lifecycle import PlanState

if TYPE_CHECKING:
    from writ.engine.gateway.server import Gateway

log = logging.getLogger(__name__)

# Obligations the gateway knows how to meet. plan_required is met only by claiming the plan
# step the call is (and only for upstream tools); any other obligation means: fail closed.
FULFILLABLE = frozenset({reasons.LOCK_SESSION, reasons.PLAN_REQUIRED})
ENDS_PLAN = frozenset({reasons.PLAN_NOT_BACKED, reasons.STEP_ALREADY_CLAIMED})
"""Claim refusals that may have ended the plan (aborted unbacked, failed on a withdrawn retry)."""


@dataclass(frozen=True)
class StepRun:
    """A claimed plan step whose call is being forwarded: its result is recorded against it."""

    plan_id: str
    index: int


class _Unknown(Exception):
    """The tool vanished from its upstream's listing."""


def _elapsed_us(start_ns: int) -> int:
    return max(0, (time.perf_counter_ns() - start_ns) // 1000)


class ToolCalls:
    """The ``tools/call`` handler of one gateway session (``gateway.calls``).

        result = await gateway.calls.call_tool(ctx, params)   # the upstream's result, or an isError denial
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def call_tool(self, ctx: ServerRequestContext[Any, Any] | None,
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        """Decide the call, and forward it only when allowed (as a claimed plan step when it is a write).

        ``ctx`` None: a call the gateway makes itself for this session (``capture``'s reads), decided
        and audited the same way.
        """
        name, args = params.name, params.arguments or {}
        if name.partition(SEPARATOR)[0] == SERVER:
            return await self._call_governance(name, args)
        entry = self._known(name)
        if isinstance(entry, types.CallToolResult):
            return entry
        try:
            entry, plan, choice = await self._plan_context(entry, args)
        except _Unknown:
            return self.unknown(name)
        except PathRootChanged as e:  # the approved directory was swapped: a logged deny, the call not made
            return self._refuse(e.message, e.code)
        except WritError as e:  # the plan store or the upstream listing failed: no way to tell the step
            log.warning("cannot tie %s to the bound plan: %s", name, e.message)
            return self._refuse(f"the call to {name} could not be checked against this session's plan: {e.message}",
                                e.code)
        except Exception as e:  # never a traceback to the agent
            log.exception("cannot tie %s to the bound plan", name)
            return self._refuse(f"the call to {name} could not be checked against this session's plan "
                                f"({type(e).__name__})", reasons.GATEWAY_ERROR)
        # No plan bound: no step to claim, the decision may be fsynced after the upstream sees the call; a
        # decision that obliges a plan step is durable anyway (DecisionPoint.decide, ADR 0021).
        decision = self._decide(entry, args, plan, ctx, durable=plan is not None)
        if decision is None:
            return self._refuse(f"the call to {name} could not be turned into a policy input", reasons.GATEWAY_ERROR)
        if not decision.allow:
            note = choice.reason if choice is not None and reasons.STEP_NOT_IN_PLAN in decision.reason_codes else ""
            return deny_result(decision, note=note)
        return await self._run_allowed(ctx, decision, entry, args, choice)

    async def _run_allowed(self, ctx: ServerRequestContext[Any, Any] | None, decision: Decision, entry: UpstreamTool,
                           args: dict[str, Any], choice: StepChoice | None) -> types.CallToolResult:
        """An allowed call: its obligations met (a write claimed as its plan step), then forwarded."""
        unmet = sorted({o.code for o in decision.obligations} - FULFILLABLE)
        if unmet:
            return self._unfulfilled(decision, entry, unmet)
        step: StepRun | None = None
        if decision.has_obligation(reasons.PLAN_REQUIRED):
            bound = self.gateway.session.plan
            if bound is None or choice is None or not choice.matches or choice.index is None:
                # The policy allowed a write the gateway cannot tie to a step of a bound plan: fail closed.
                return self._unfulfilled(decision, entry, [reasons.PLAN_REQUIRED])
            refused = self._claim(decision, entry, args, bound, choice.index)
            if refused is not None:
                return refused
            step = StepRun(bound.id, choice.index)
        return await self._forward(decision, entry, args, step, ctx)

    def _known(self, name: str) -> UpstreamTool | types.CallToolResult:
        upstreams = self.gateway.upstreams
        entry = upstreams.tool(name)
        if entry is not None:
            return entry
        upstream = upstreams.upstream_of(name)
        if upstream is None or upstream.state == "ready" or upstream.tools:
            return self.unknown(name)
        # Its upstream never listed its tools: the tool cannot be known, nor called.
        return self._refuse(f"tool {name!r}: upstream {upstream.name!r} is not available "
                            f"({upstream.problem or upstream.state})", reasons.UPSTREAM_UNAVAILABLE)

    def unknown(self, name: str) -> NoReturn:
        """No such tool: audited, and JSON-RPC error -32602 (what MCP clients and the conformance suite expect)."""
        self.gateway.audit("tool_unknown", {"session_id": self.gateway.session.id,
                                            "principal": self.gateway.principal.name, "tool": name[:200]})
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")

    def _refuse(self, message: str, code: str) -> types.CallToolResult:
        """A call that could not be decided: a logged denial with ``code``."""
        return deny_result(self.gateway.pdp.refuse_input(InputError(message, code=code)))

    def _decide(self, entry: UpstreamTool, args: dict[str, Any], plan: PlanContext | None,
                ctx: ServerRequestContext[Any, Any] | None = None, *, durable: bool = True) -> Decision | None:
        """Decide (and log) the call; lock the session if the decision says so. None: no input could be built."""
        gw = self.gateway
        return gw.decide(lambda: gw.tool_input(entry, args, gw.session_now(), plan), entry.exposed_name,
                         request_state(ctx), durable=durable)

    def _unfulfilled(self, decision: Decision, entry: UpstreamTool, unmet: list[str]) -> types.CallToolResult:
        message = f"the policy allowed the call on obligations the gateway cannot meet: {', '.join(unmet)}"
        self.record(decision, entry, reasons.OBLIGATION_UNFULFILLED, 0, error={"message": message})
        return error_result(reasons.OBLIGATION_UNFULFILLED, message, decision)

    # --- plans ---------------------------------------------------------------------------

    async def _plan_context(self, entry: UpstreamTool, args: dict[str, Any]
                            ) -> tuple[UpstreamTool, PlanContext | None, StepChoice | None]:
        """The bound plan as policy sees it for this call, and which step the call is (None: no plan bound)."""
        bound = self.gateway.session.plan
        if bound is None:
            return entry, None, None
        plans = self.gateway.stores.plans
        record = plans.get(bound.id)
        claimed = {c.step_index for c in plans.claims(bound.id)}
        if is_candidate(bound.plan, entry.server, entry.tool.name):
            check_roots(bound, entry.server, entry.tool.name)  # PathRootChanged
            await self.gateway.refresh_tools(entry.server)  # the definition as the upstream declares it now
            fresh = self.gateway.upstreams.tool(entry.exposed_name)
            if fresh is None:
                raise _Unknown
            entry = fresh
        choice = choose_step(bound.plan, claimed, server=entry.server, tool=entry.tool.name,
                             definition_digest=entry.digest, args=args, limits=plans.limits, roots=bound.roots)
        context = PlanContext(id=record.id, state=cast(Any, record.state.value), planner=record.planner,
                              expires_at=bound.plan.expires_at, step_matches=choice.matches, step_index=choice.index)
        return entry, context, choice

    def _claim(self, decision: Decision, entry: UpstreamTool, args: dict[str, Any], bound: BoundPlan,
               index: int) -> types.CallToolResult | None:
        """Claim step ``index`` for this call; None when claimed, else the refusal the agent gets.

        Any failure means the call does not run: a refused claim (already logged by the store), and
        also a claim the store committed but whose ``step_claim`` audit entry it could not write
        (``AuditError``, ``audit_unavailable``): a step must not run without its evidence.
        """
        where = {"plan_id": bound.id, "step_index": index}
        try:
            self.gateway.stores.plans.claim_step(bound.id, index, self.gateway.principal.name, server=entry.server,
                                                 tool=entry.tool.name, definition_digest=entry.digest, args=args)
        except WritError as e:  # StepAlreadyClaimed, ClaimRefused, PermissionDenied, StoreError, AuditError
            self.record(decision, entry, e.code, 0, error={"message": e.message, **where})
            if e.code in ENDS_PLAN:
                self._tell_if_ended(bound.id)
            return refused_result(e.code, e.message, decision)
        except Exception as e:  # a failed claim is no claim: the call does not run
            log.exception("claiming step %d of %s failed", index, bound.id)
            self.record(decision, entry, reasons.GATEWAY_ERROR, 0, error={"message": f"{type(e).__name__}", **where})
            return error_result(reasons.GATEWAY_ERROR, f"claiming the plan step failed ({type(e).__name__}); "
                                "the call was not made", decision)
        return None

    def _tell_if_ended(self, plan_id: str) -> None:
        """A refused claim ended the plan (its backing gone, a withdrawn retry): tell its workflow now."""
        try:
            state = self.gateway.stores.plans.get(plan_id).state
        except WritError as e:
            log.error("could not read plan %s after a refused claim: %s", plan_id, e.message)
            return
        if state in (PlanState.FAILED, PlanState.ABORTED):
            self.gateway.governance.approvals.finished(plan_id, state.value, by=self.gateway.principal.name)

    def _step_done(self, step: StepRun | None, outcome: str, result_sha256: str | None) -> None:
        """Record how a claimed step ended. If that fails, the call already happened: log it loudly."""
        if step is None:
            return
        try:
            plans = self.gateway.stores.plans
            plans.record_result(step.plan_id, step.index, result_sha256, "succeeded" if outcome == "ok" else "failed")
            if outcome != "ok" and plans.get(step.plan_id).state is PlanState.FAILED:  # the step failed its plan
                self.gateway.governance.approvals.finished(step.plan_id, "failed", by=self.gateway.principal.name)
        except WritError as e:
            log.error("the result of step %d of plan %s (%s) was not recorded: %s",
                      step.index, step.plan_id, outcome, e.message)

    # --- Writ's own tools ---------------------------------------------------------------------

    async def _call_governance(self, name: str, args: dict[str, Any]) -> types.CallToolResult:
        """``writ__writ_plan_*``: decided like any tool, then answered by ``Governance``, never forwarded."""
        gw = self.gateway
        entry = gw.governance.tools.get(name)
        if entry is None:
            return self.unknown(name)
        try:
            plan = gw.bound_context()
        except WritError as e:
            return self._refuse(f"the plan bound to this session cannot be read: {e.message}", e.code)
        decision = self._decide(entry, args, plan)
        if decision is None:
            return self._refuse(f"the call to {name} could not be turned into a policy input", reasons.GATEWAY_ERROR)
        if not decision.allow:
            return deny_result(decision)
        unmet = sorted({o.code for o in decision.obligations} - {reasons.LOCK_SESSION})
        if unmet:  # e.g. plan_required: Writ's own tools never run as plan steps
            return self._unfulfilled(decision, entry, unmet)
        start = time.perf_counter_ns()
        try:
            answer = await gw.governance.call(entry.tool.name, args)
        except WritError as e:
            self.record(decision, entry, e.code, _elapsed_us(start), error={"message": e.message[:500]})
            return error_result(e.code, e.message, decision)
        except Exception as e:  # never a traceback to the agent
            log.exception("%s failed", name)
            self.record(decision, entry, reasons.GATEWAY_ERROR, _elapsed_us(start),
                        error={"message": f"{type(e).__name__}: {e}"[:500]})
            return error_result(reasons.GATEWAY_ERROR, f"{name} failed ({type(e).__name__})", decision)
        result = types.CallToolResult(content=[types.TextContent(type="text", text=answer.text)],
                                      structured_content=answer.data)
        self.record(decision, entry, "ok", _elapsed_us(start), result=result)
        return result

    # --- forwarding ------------------------------------------------------------------------

    async def _forward(self, decision: Decision, entry: UpstreamTool, args: dict[str, Any],
                       step: StepRun | None = None,
                       ctx: ServerRequestContext[Any, Any] | None = None) -> types.CallToolResult:
        start = time.perf_counter_ns()

        def done(outcome: str, result: types.CallToolResult | None = None, error: dict[str, Any] | None = None,
                 *, sha256: str | None = None, size: int | None = None) -> None:
            sha = sha256 or (result_digest(result) if result is not None else None)
            self.record(decision, entry, outcome, _elapsed_us(start), result_sha256=sha, error=error, step=step,
                        result_bytes=size)
            self._step_done(step, outcome, sha)

        upstreams = self.gateway.upstreams
        result = await self.gateway.run_upstream(
            entry.server, ctx, lambda: upstreams.call(entry, args, _progress(ctx)), done, "the call")
        if isinstance(result, Failed):
            return error_result(result.code, result.message, decision)
        limit = self.gateway.stores.settings.limits.max_result_bytes
        if (too_large := oversize(result, limit)) is not None:  # the agent never gets it
            size, sha = too_large
            message = (f"the result of {entry.exposed_name} is about {size} bytes, more than limits.max_result_bytes "
                       f"({limit}): it was not passed on (its sha256 is in the audit log). The call did run "
                       "upstream; ask for less at a time")
            done(reasons.RESULT_TOO_LARGE, error={"message": message}, sha256=sha, size=size)
            return refused_result(reasons.RESULT_TOO_LARGE, message, decision)
        done("tool_error" if result.is_error else "ok", result)
        return result

    def record(self, decision: Decision, entry: UpstreamTool, outcome: str, duration_us: int, *,
               result: types.CallToolResult | None = None, result_sha256: str | None = None,
               error: dict[str, Any] | None = None, step: StepRun | None = None,
               result_bytes: int | None = None) -> None:
        """The ``tool_result`` entry of an allowed call (``result_bytes``: the size of a result too large to pass on).

        If it cannot be written, the call already happened: the result still goes back, and the process log says the entry is missing.
        """
        if result is not None and result_sha256 is None:
            result_sha256 = result_digest(result)
        gw = self.gateway
        payload: dict[str, Any] = {
            "decision_id": decision.decision_id, "session_id": gw.session.id, "principal": gw.principal.name,
            "server": entry.server, "tool": entry.tool.name, "definition_digest": entry.digest,
            "outcome": outcome, "duration_us": duration_us, "result_sha256": result_sha256,
        }
        if result_bytes is not None:
            payload["result_bytes"] = result_bytes
        if step is not None:
            payload.update({"plan_id": step.plan_id, "step_index": step.index})
        if error:
            payload["error"] = error
        gw.audit("tool_result", payload, durable=step is not None)  # a read's result: fsync may follow (ADR 0021)


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
