"""The handlers of Writ's plan tools, and who a gateway session acts for.

    who = resolve_principal(stores.trust, "exec-bot")    # role from the trust store, groups from policy data
    governance = Governance(stores, who, upstreams, relist=..., is_write=..., audit=..., session_id=s,
                            binding=SessionBinding())
    answer = await governance.call("writ_plan_status", {"plan_id": "3f2a9c"})
    answer.text, answer.data                               # for the agent: text, and structured content

The tools' definitions and argument models are in ``plan_tools``; which step of the bound plan
a call is, in ``steps``. ``writ_plan_propose`` lists the steps' upstreams again before it pins
their definition digests; ``writ_plan_begin`` keeps the verified plan in the session's
``SessionBinding``, with the real path of each constrained root pinned (and audited), which the
tool-call path (``calls``) reads to choose and claim steps. Once a proposed plan is stored and its
workflow started, ``capture`` (``writ.engine.gateway.capture``) reads what its file writes replace,
for the approval page's diffs.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast, get_args

from pydantic import ValidationError

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, ConflictError, InputError, WritError
from writ.engine.core.timeutil import iso, utc_now
from writ.engine.gateway.approvals import ApprovalLink
from writ.engine.gateway.config import SEPARATOR, Principal
from writ.engine.gateway.listing import UpstreamTool
from writ.engine.gateway.plan_tools import (
    SERVER,
    BeginArgs,
    FinishArgs,
    ProposeArgs,
    ProposeStep,
    StatusArgs,
    governance_tools,
    parse_args,
)
from writ.engine.gateway.steps import BoundPlan, SessionBinding, exposed_name, pin_roots
from writ.engine.gateway.upstream import UpstreamManager
from writ.engine.wiring.services import Services, find_signing_key
from writ.plans.contents import CapturedContent
from writ.plans.lifecycle import TERMINAL, PlanState
from writ.plans.models import Plan, PlanStep
from writ.plans.records import ClaimRecord, PlanStatus
from writ.plans.statements import sign_plan
from writ.plans.trust import Role
from writ.plans.trust_store import TrustStore

DEFAULT_TTL = timedelta(hours=4)
Capture = Callable[[str, Plan], Awaitable[list[CapturedContent]]]
"""Reads and keeps what a stored plan's file writes replace (``ContentCapture.plan``); never raises."""

# --- who ----------------------------------------------------------------------------------


def resolve_principal(trust: TrustStore, name: str) -> Principal:
    """``name`` as the trust store has it (``principal_not_found`` if absent), with its groups (store and policy data)."""
    record = trust.principal(name)
    if record.role not in get_args(Role):
        raise ConfigError(f"principal {name!r} has role {record.role!r}, which Writ does not know", code=reasons.ROLE_INVALID)
    return Principal(name=record.name, role=cast(Role, record.role), groups=record.groups)


# --- the handlers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolAnswer:
    """What a governance tool answers: text for the agent, and the same as structured content."""

    text: str
    data: dict[str, Any]


class Governance:
    """The handlers of Writ's plan tools (``plan_tools``) for one principal and one session.

        governance = Governance(stores, principal, upstreams, relist=gateway.refresh_tools,
                                is_write=gateway.is_write, audit=gateway.audit, session_id=session.id,
                                binding=session.binding)
        answer = await governance.call("writ_plan_begin", {"plan_id": "3f2a9c"})   # ToolAnswer, or WritError
        answer.text, answer.data["state"]                                           # ..., 'executing'
    """

    def __init__(
        self,
        stores: Services,
        principal: Principal,
        upstreams: UpstreamManager,
        *,
        relist: Callable[[str], Awaitable[None]],
        is_write: Callable[[UpstreamTool], bool],
        audit: Callable[[str, dict[str, Any]], None],
        session_id: str,
        binding: SessionBinding,
        approvals: ApprovalLink,
        key_file: Path | None = None,
        capture: Capture | None = None,
    ) -> None:
        self.stores = stores
        self.principal = principal
        self.upstreams = upstreams
        self._relist = relist
        self._is_write = is_write
        self._audit = audit
        self.session_id = session_id
        self.binding = binding
        self.approvals = approvals
        self.key_file = key_file
        self.capture = capture
        self.tools = {t.exposed_name: t for t in governance_tools()}

    async def call(self, name: str, args: Mapping[str, Any]) -> ToolAnswer:
        """Run Writ's tool ``name`` (without the ``writ__`` prefix); a ``WritError`` says why it failed."""
        handlers = {
            "writ_plan_propose": self.propose,
            "writ_plan_status": self.status,
            "writ_plan_begin": self.begin,
            "writ_plan_finish": self.finish,
        }
        return await handlers[name](args)

    # -- propose -------------------------------------------------------------------------

    async def propose(self, raw: Mapping[str, Any]) -> ToolAnswer:
        """``writ_plan_propose``: pin the steps' current definitions, sign as the planner, submit."""
        a = parse_args(ProposeArgs, "writ_plan_propose", raw)
        servers = {s.tool.partition(SEPARATOR)[0] for s in a.steps}
        for server in sorted(servers & set(self.upstreams.upstreams)):
            await self._relist(server)  # pin the definitions the upstreams declare now
        steps = [self._step(i, s) for i, s in enumerate(a.steps)]
        ttl = timedelta(seconds=a.expires_in_s) if a.expires_in_s else DEFAULT_TTL
        try:
            plan = Plan.new(title=a.title, rationale=a.rationale, planner=self.principal.name, steps=steps, ttl=ttl,
                            ordered=a.ordered)
        except ValidationError as e:
            raise InputError(f"not a valid plan: {e.errors()[0]['msg']}", code=reasons.PLAN_INVALID) from None
        plan.check_limits(self.stores.plans.limits)
        key, _ = find_signing_key(self.stores.settings, self.stores.trust, self.principal.name, key_file=self.key_file)
        record = await self.approvals.submit(sign_plan(plan, key).to_json())
        diffs = await self.capture(record.id, plan) if self.capture is not None else []
        status = self.stores.plans.status(record.id)
        short = record.id.removeprefix("sha256:")[:12]
        home = self.stores.settings.home
        approve = f"writ approve {short} --key <approver key file> --data-dir {home}"
        req = status.result.requirement
        groups = f" including one from each of: {', '.join(req.required_groups)}" if req.required_groups else ""
        lines = [
            f"plan {record.id} is {record.state.value}: {plan.title}",
            (f"it needs {req.quorum} approval{'s' if req.quorum != 1 else ''}{groups}; "
             f"missing: {', '.join(status.result.missing) or 'nothing'}"),
            f"expires at {iso(plan.expires_at)}; signed by {self.principal.name} with key {key.key_id[7:19]}",
            f"approvers review it with `writ plan show {short} --data-dir {home}` and approve with `{approve}`",
            "once it is approved, an executor runs it: writ_plan_begin, then each step in order",
            *_step_lines(plan),
            *_diff_lines(diffs),
        ]
        return ToolAnswer("\n".join(lines), {
            "plan_id": record.id, "state": record.state.value, "title": plan.title,
            "expires_at": iso(plan.expires_at), "ordered": plan.ordered,
            "diffs": [{"index": d.step_index, "status": d.status, "reason": d.reason} for d in diffs],
            "requirement": {"quorum": req.quorum, "required_groups": list(req.required_groups)},
            "missing": list(status.result.missing), "approve_command": approve,
            "steps": [_step_data(i, s, None) for i, s in enumerate(plan.steps)],
        })

    def _step(self, i: int, s: ProposeStep) -> PlanStep:
        server, sep, _ = s.tool.partition(SEPARATOR)
        if sep and server == SERVER:
            raise InputError(f"step {i}: {s.tool} is one of Writ's own tools; a plan's steps are upstream calls",
                             code=reasons.PLAN_INVALID)
        entry = self.upstreams.tool(s.tool)
        if entry is None:
            raise InputError(f"step {i}: there is no tool {s.tool!r}; name it as tools/list does, "
                             "<server>__<tool> (e.g. git__git_commit)", code=reasons.TOOL_UNKNOWN)
        if not self._is_write(entry):
            raise InputError(f"step {i}: {s.tool} only reads, and reads need no plan: list only the calls that "
                             "change something", code=reasons.STEP_NOT_A_WRITE)
        try:
            return PlanStep(server=entry.server, tool=entry.tool.name, definition_digest=entry.digest, args=s.args,
                            constraints=tuple(s.constraints))
        except ValidationError as e:
            raise InputError(f"step {i}: {e.errors()[0]['msg']}", code=reasons.PLAN_INVALID) from None

    # -- status --------------------------------------------------------------------------

    async def status(self, raw: Mapping[str, Any]) -> ToolAnswer:
        """``writ_plan_status``: a plan's state, approvals and steps (the bound plan without ``plan_id``)."""
        a = parse_args(StatusArgs, "writ_plan_status", raw)
        if a.plan_id is not None:
            plan_id = self.stores.plans.resolve(a.plan_id)
        elif self.binding.plan is not None:
            plan_id = self.binding.plan.id
        else:
            raise InputError("no plan is bound to this session: give plan_id", code=reasons.NO_PLAN_BOUND)
        status = self.stores.plans.status(plan_id)
        claims = {c.step_index: c for c in self.stores.plans.claims(plan_id)}
        return _status_answer(status, claims, bound=self.binding.plan is not None and self.binding.plan.id == plan_id)

    # -- begin / finish ------------------------------------------------------------------

    async def begin(self, raw: Mapping[str, Any]) -> ToolAnswer:
        """``writ_plan_begin``: the plan is executing, by this principal, bound to this session."""
        a = parse_args(BeginArgs, "writ_plan_begin", raw)
        plans = self.stores.plans
        current = self.binding.plan
        if current is not None and plans.get(current.id).state is PlanState.EXECUTING:
            raise ConflictError(
                f"this session is running plan {current.id}: end it with writ_plan_finish before beginning another",
                code=reasons.PLAN_ALREADY_BOUND,
            )
        plan_id = plans.resolve(a.plan_id)
        record = plans.begin(plan_id, self.principal.name)
        try:  # begin verified these very bytes a moment ago; keep the verified plan for choosing steps
            plan = plans.verified_plan(record, self.stores.trust.trust_set(), utc_now())
        except WritError as e:  # changed since (a key revoked just now?): do not leave it executing unbound
            plans.finish(plan_id, "aborted", reason=f"it stopped verifying as it began: {e.message}")
            self.approvals.finished(plan_id, "aborted", by=self.principal.name)
            raise
        roots = pin_roots(plan)  # a root replaced from now on refuses its steps (path_root_changed)
        self.binding.plan = BoundPlan(record.id, plan, roots)
        self._audit("session_plan", {"session_id": self.session_id, "principal": self.principal.name,
                                     "plan_id": record.id, "event": "bound", "roots": roots})
        lines = [
            f"plan {record.id} is {record.state.value} in this session: {plan.title}",
            (f"run its steps {'in this order' if plan.ordered else 'in any order'}, each exactly as shown, once; "
             f"it expires at {iso(plan.expires_at)}; end with writ_plan_finish"),
            *_step_lines(plan),
            *(f"path root {root} is pinned to its real path {real}" for root, real in roots.items()),
        ]
        return ToolAnswer("\n".join(lines), {
            "plan_id": record.id, "state": record.state.value, "title": plan.title, "ordered": plan.ordered,
            "expires_at": iso(plan.expires_at), "steps": [_step_data(i, s, None) for i, s in enumerate(plan.steps)],
            "roots": roots,
        })

    async def finish(self, raw: Mapping[str, Any]) -> ToolAnswer:
        """``writ_plan_finish``: end the bound plan (or let go of one that ended elsewhere)."""
        a = parse_args(FinishArgs, "writ_plan_finish", raw)
        bound = self.binding.plan
        if bound is None:
            raise InputError("no plan is bound to this session: there is nothing to finish", code=reasons.NO_PLAN_BOUND)
        current = self.stores.plans.get(bound.id).state
        if current in TERMINAL:  # ended elsewhere (an operator aborted it, say): just let it go
            self.binding.plan = None
            self.approvals.finished(bound.id, current.value, by=self.principal.name)
            self._audit("session_plan", {"session_id": self.session_id, "principal": self.principal.name,
                                         "plan_id": bound.id, "event": "released", "state": current.value})
            return ToolAnswer(f"plan {bound.id} had already ended ({current.value}); this session may begin "
                              "another plan", {"plan_id": bound.id, "state": current.value})
        state = self.stores.plans.finish(bound.id, a.outcome, reason=a.reason)
        self.approvals.finished(bound.id, state.value, by=self.principal.name)
        self.binding.plan = None
        self._audit("session_plan", {"session_id": self.session_id, "principal": self.principal.name,
                                     "plan_id": bound.id, "event": "released", "state": state.value})
        return ToolAnswer(f"plan {bound.id} is {state.value}; this session may begin another plan",
                          {"plan_id": bound.id, "state": state.value})


# --- rendering ---------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _claim_text(claim: ClaimRecord | None) -> str:
    if claim is None:
        return "not run"
    if claim.outcome is None:
        return f"claimed by {claim.executor} at {iso(claim.claimed_at)}, running"
    return f"{claim.outcome} (claimed by {claim.executor} at {iso(claim.claimed_at)})"


def _step_lines(plan: Plan, claims: Mapping[int, ClaimRecord] | None = None) -> list[str]:
    out = []
    for i, s in enumerate(plan.steps):
        line = f"  [{i}] {exposed_name(s)} {_json(s.args)}"
        if s.constraints:
            line += " constraints " + _json([c.model_dump(mode="json") for c in s.constraints])
        if claims is not None:
            line += f": {_claim_text(claims.get(i))}"
        out.append(line)
    return out


def _diff_lines(diffs: list[CapturedContent]) -> list[str]:
    """What approvers will see as each step's diff base, for the planner (nothing when none was captured)."""
    if not diffs:
        return []
    said = {"captured": "its current content was captured", "absent": "a new file"}
    return ["for the approvers' diffs:", *(f"  [{d.step_index}] {said.get(d.status) or f'no diff: {d.reason}'}"
                                          for d in diffs)]


def _step_data(i: int, s: PlanStep, claim: ClaimRecord | None) -> dict[str, Any]:
    data: dict[str, Any] = {"index": i, "tool": exposed_name(s), "args": s.args,
                            "constraints": [c.model_dump(mode="json") for c in s.constraints],
                            "definition_digest": s.definition_digest}
    data["claim"] = None if claim is None else {
        "executor": claim.executor, "claimed_at": iso(claim.claimed_at), "outcome": claim.outcome}
    return data


def _status_answer(status: PlanStatus, claims: Mapping[int, ClaimRecord], *, bound: bool) -> ToolAnswer:
    record, plan, result = status.record, status.plan, status.result
    req = result.requirement
    counted = f"{len(result.approvals)}/{req.quorum}" + (f" ({', '.join(result.approvers)})" if result.approvers else "")
    lines = [
        f"plan {record.id}: {plan.title}",
        f"state {record.state.value}" + (f" (executor {record.executor})" if record.executor else "")
        + (", bound to this session" if bound else "")
        + f"; planner {plan.planner}; expires {iso(plan.expires_at)}",
        f"approvals {counted}; missing: {', '.join(result.missing) or 'nothing'}"
        + (f"; rejected by {', '.join(r.principal for r in result.rejections)}" if result.rejected else ""),
        f"steps ({'in order' if plan.ordered else 'any order'}):",
        *_step_lines(plan, claims),
    ]
    return ToolAnswer("\n".join(lines), {
        "plan_id": record.id, "title": plan.title, "state": record.state.value, "planner": plan.planner,
        "executor": record.executor, "bound_to_this_session": bound, "expires_at": iso(plan.expires_at),
        "ordered": plan.ordered,
        "approvals": {"counted": list(result.approvers), "quorum": req.quorum,
                      "required_groups": list(req.required_groups), "missing": list(result.missing),
                      "approved": result.approved, "rejected_by": [r.principal for r in result.rejections]},
        "steps": [_step_data(i, s, claims.get(i)) for i, s in enumerate(plan.steps)],
    })
