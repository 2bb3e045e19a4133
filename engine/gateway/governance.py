"""Writ's own tools on the gateway (server ``writ``), and how a tool call is tied to a step of a bound plan.

    who = resolve_principal(stores.trust, "exec-bot")    # role from the trust store, groups from policy data
    choice = choose_step(plan, claimed={0}, server="git", tool="git_commit", definition_digest=d, args=a)
    choice.index, choice.matches, choice.claimed, choice.reason

The tools (exposed as ``writ__<name>``, each decided by policy like any other tool; their
classes are in ``policies/writ/tools.json``):

- ``writ_plan_propose`` (planner): the exact write calls an executor will make. The gateway
  fills in each step's server, tool and *current* definition digest from the upstream
  listing, signs the plan with the planner's key and submits it.
- ``writ_plan_status`` (planner, executor): state, approvals counted and missing, steps and
  whether each has run.
- ``writ_plan_begin`` (executor): ``PlanStore.begin`` and bind the plan to this session.
- ``writ_plan_finish`` (executor): completed, failed or aborted; the session is free again.

Step choice (``choose_step``): an ordered plan's candidate is its next unclaimed step; an
unordered plan's is the first unclaimed step the call matches. A call that matches a step
that already ran is reported as that step with ``claimed=True``: policy sees it as the
step, and the plan store's claim refuses it (``step_already_claimed``), once and for all.
Path constraints are checked twice: lexically by ``writ.plans.matching`` and then on the
real path (symbolic links resolved), which must still be under the root and match the glob.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, ConflictError, InputError, WritError
from writ.engine.gateway.config import SEPARATOR, Principal
from writ.engine.gateway.upstream import UpstreamManager, UpstreamTool, definition_digest
from writ.engine.wiring.services import Services, find_signing_key
from writ.plans.lifecycle import TERMINAL, PlanState
from writ.plans.matching import MATCH, MatchResult, matches
from writ.plans.models import Constraint, PathGlob, Plan, PlanLimits, PlanStep
from writ.plans.paths import PathRefused, glob_matches, under_root
from writ.plans.statements import sign_plan
from writ.plans.store import ClaimRecord, PlanStatus
from writ.plans.trust import Role
from writ.plans.trust_store import TrustStore
from writ.plans.verify import short_plan_id

SERVER = "writ"
DEFAULT_TTL = timedelta(hours=4)

# --- who ----------------------------------------------------------------------------------


def resolve_principal(trust: TrustStore, name: str) -> Principal:
    """``name`` as the trust store has it (``principal_not_found`` if absent), with its groups from policy data."""
    record = trust.principal(name)
    if record.role not in get_args(Role):
        raise ConfigError(f"principal {name!r} has role {record.role!r}, which Writ does not know", code=reasons.ROLE_INVALID)
    return Principal(name=record.name, role=cast(Role, record.role), groups=record.groups)


# --- the tools -----------------------------------------------------------------------------

_CONSTRAINT_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "object", "description": "The argument is an absolute path under root whose root-relative form "
                                          "matches glob (* within a segment, ** across segments).",
         "properties": {"kind": {"const": "path_glob"}, "arg": {"type": "string"}, "root": {"type": "string"},
                        "glob": {"type": "string"}},
         "required": ["kind", "arg", "root", "glob"], "additionalProperties": False},
        {"type": "object", "description": "The argument is a string whose UTF-8 bytes have this SHA-256 (hex).",
         "properties": {"kind": {"const": "content_sha256"}, "arg": {"type": "string"},
                        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
         "required": ["kind", "arg", "sha256"], "additionalProperties": False},
        {"type": "object", "description": "The argument is one of these JSON scalars.",
         "properties": {"kind": {"const": "one_of"}, "arg": {"type": "string"},
                        "values": {"type": "array", "minItems": 1}},
         "required": ["kind", "arg", "values"], "additionalProperties": False},
    ]
}

_TOOLS: list[types.Tool] = [
    types.Tool(
        name="writ_plan_propose",
        description=(
            "Propose a plan: the exact write calls (steps) an executor will make once approvers approve them. "
            "Name each step's tool as tools/list shows it (e.g. git__git_commit) and give the exact arguments. "
            "Writ pins each tool's current definition, signs the plan with your key and stores it pending "
            "approval; it answers with the plan id, the approval it needs and the command approvers run. "
            "Reads need no plan: list only calls that change something. Planners only."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 1, "description": "One line: what the change does."},
                "rationale": {"type": "string", "description": "Why the change is needed; approvers read it."},
                "steps": {
                    "type": "array", "minItems": 1,
                    "description": "The write calls, in the order they run.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "tool": {"type": "string", "description": "Tool name as in tools/list: <server>__<tool>."},
                            "args": {"type": "object", "description": "The arguments, exactly as they will be passed."},
                            "constraints": {
                                "type": "array", "items": _CONSTRAINT_SCHEMA,
                                "description": "Optional rules for arguments not given in args (each argument is "
                                               "either pinned in args or constrained here).",
                            },
                        },
                        "required": ["tool", "args"],
                        "additionalProperties": False,
                    },
                },
                "expires_in_s": {"type": "integer", "minimum": 1,
                                 "description": "Seconds until the plan expires (default 14400; the approval "
                                                "policy sets the maximum)."},
                "ordered": {"type": "boolean", "default": True,
                            "description": "True (default): the steps run in this order. False: in any order."},
            },
            "required": ["title", "rationale", "steps"],
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                          open_world_hint=False),
    ),
    types.Tool(
        name="writ_plan_status",
        description=(
            "Show a plan: its state, the approvals counted and still missing, and each step with whether it has "
            "run. Without plan_id: the plan bound to this session."
        ),
        input_schema={
            "type": "object",
            "properties": {"plan_id": {"type": "string", "description": "sha256:<hex>, or at least 4 hex digits of it."}},
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                          open_world_hint=False),
    ),
    types.Tool(
        name="writ_plan_begin",
        description=(
            "Start executing an approved plan in this session (executors only). From then on every write call must "
            "be the plan's next step exactly as approved: same tool, same tool definition, same arguments. Each step "
            "runs once. A call outside the plan is denied and locks the session. End with writ_plan_finish."
        ),
        input_schema={
            "type": "object",
            "properties": {"plan_id": {"type": "string", "description": "sha256:<hex>, or at least 4 hex digits of it."}},
            "required": ["plan_id"],
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                          open_world_hint=False),
    ),
    types.Tool(
        name="writ_plan_finish",
        description=(
            "End the plan bound to this session: completed (every step succeeded), failed (a step failed) or "
            "aborted (stop before the end). The session may then begin another plan."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "outcome": {"type": "string", "enum": ["completed", "failed", "aborted"]},
                "reason": {"type": "string", "description": "Optional: why, for the audit log."},
            },
            "required": ["outcome"],
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                          open_world_hint=False),
    ),
]


def governance_tools() -> list[UpstreamTool]:
    """Writ's tools as the gateway lists them (server ``writ``), each with its definition digest."""
    return [UpstreamTool(SERVER, tool, definition_digest(tool)) for tool in _TOOLS]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProposeStep(_Args):
    tool: str = Field(min_length=1)
    args: dict[str, JsonValue]
    constraints: list[Constraint] = Field(default_factory=list)


class ProposeArgs(_Args):
    title: str = Field(min_length=1)
    rationale: str
    steps: list[ProposeStep] = Field(min_length=1)
    expires_in_s: int | None = Field(None, ge=1)
    ordered: bool = True


class StatusArgs(_Args):
    plan_id: str | None = None


class BeginArgs(_Args):
    plan_id: str = Field(min_length=1)


class FinishArgs(_Args):
    outcome: Literal["completed", "failed", "aborted"]
    reason: str = ""


A = TypeVar("A", bound=_Args)


def parse_args(model: type[A], tool: str, args: Mapping[str, Any]) -> A:
    try:
        return model.model_validate(dict(args))
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        raise InputError(f"{tool}: {loc}: {err['msg']}", code=reasons.ARGUMENTS_INVALID) from None


# --- steps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoundPlan:
    """The plan this session began, as verified when it began (the store re-verifies at each claim)."""

    id: str
    plan: Plan


@dataclass(frozen=True)
class StepChoice:
    """Which step of the bound plan a call is, if any."""

    index: int | None
    matches: bool
    claimed: bool = False  # the call is a step that already ran: the claim will be refused
    reason: str = ""  # why the call is not the step (empty when it matches)


def real_path_check(c: PathGlob, value: Any) -> MatchResult:
    """The path as the upstream will open it (symbolic links resolved) must still be under the root and match."""
    if not isinstance(value, str):
        return MatchResult(False, f"argument {c.arg!r} must be a path string")
    if not os.path.isabs(value):
        return MatchResult(False, f"argument {c.arg!r}: {value!r} is relative; give an absolute path under "
                                  f"{c.root!r} (the upstream server, not Writ, would decide what it is relative to)")
    real, real_root = os.path.realpath(value), os.path.realpath(c.root)
    try:
        rel = under_root(real, real_root)
    except PathRefused:
        return MatchResult(False, f"argument {c.arg!r}: {value!r} resolves to {real!r} (through a symbolic link), "
                                  f"which is outside the root {c.root!r}")
    if not glob_matches(c.glob, rel):
        return MatchResult(False, f"argument {c.arg!r}: {value!r} resolves to {real!r}, which does not match "
                                  f"{c.glob!r} under {c.root!r}")
    return MATCH


def step_match(step: PlanStep, *, server: str, tool: str, definition_digest: str | None, args: Mapping[str, Any],
               limits: PlanLimits | None = None) -> MatchResult:
    """``writ.plans.matching.matches``, then the real-path check of every path constraint."""
    result = matches(step, server=server, tool=tool, definition_digest=definition_digest, args=args, limits=limits)
    if not result:
        return result
    for c in step.constraints:
        if isinstance(c, PathGlob):
            real = real_path_check(c, args[c.arg])
            if not real:
                return real
    return MATCH


def is_candidate(plan: Plan, server: str, tool: str) -> bool:
    """Could a call of this tool be one of the plan's steps? (Then its definition is listed again first.)"""
    return any(s.server == server and s.tool == tool for s in plan.steps)


def choose_step(plan: Plan, claimed: set[int], *, server: str, tool: str, definition_digest: str | None,
                args: Mapping[str, Any], limits: PlanLimits | None = None) -> StepChoice:
    """The step of ``plan`` this call is (see the module docstring), or why it is none."""
    pid = short_plan_id(plan.id)

    def match(i: int) -> MatchResult:
        return step_match(plan.steps[i], server=server, tool=tool, definition_digest=definition_digest, args=args,
                          limits=limits)

    unclaimed = [i for i in range(len(plan.steps)) if i not in claimed]
    if plan.ordered:
        first = unclaimed[0] if unclaimed else None
        result = match(first) if first is not None else None
        if first is not None and result:
            return StepChoice(first, True)
    else:
        results = {i: match(i) for i in unclaimed}
        hit = next((i for i, r in results.items() if r), None)
        if hit is not None:
            return StepChoice(hit, True)
    for i in sorted(claimed):
        if 0 <= i < len(plan.steps) and match(i):
            return StepChoice(i, True, claimed=True)
    if not unclaimed:
        return StepChoice(None, False, reason=f"every step of plan {pid} has run; this call is not one of them")
    if plan.ordered:
        assert first is not None and result is not None
        return StepChoice(first, False, reason=f"not step {first} of plan {pid}, the next to run: {result.reason}")
    same_tool = [i for i in unclaimed if plan.steps[i].server == server and plan.steps[i].tool == tool]
    if same_tool:
        i = same_tool[0]
        return StepChoice(None, False, reason=f"not step {i} of plan {pid} ({server}/{tool}): {results[i].reason}")
    left = ", ".join(f"{exposed(plan.steps[i])} (step {i})" for i in unclaimed)
    return StepChoice(None, False, reason=f"plan {pid} has no step calling {server}/{tool}; left to run: {left}")


def exposed(step: PlanStep) -> str:
    return f"{step.server}{SEPARATOR}{step.tool}"


# --- the handlers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolAnswer:
    """What a governance tool answers: text for the agent, and the same as structured content."""

    text: str
    data: dict[str, Any]


class SessionBinding:
    """The plan bound to one gateway session (``None`` until ``writ_plan_begin``)."""

    def __init__(self) -> None:
        self.plan: BoundPlan | None = None


class Governance:
    """The handlers of Writ's tools for one principal and one session."""

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
        key_file: Path | None = None,
    ) -> None:
        self.stores = stores
        self.principal = principal
        self.upstreams = upstreams
        self._relist = relist
        self._is_write = is_write
        self._audit = audit
        self.session_id = session_id
        self.binding = binding
        self.key_file = key_file
        self.tools = {t.exposed_name: t for t in governance_tools()}

    async def call(self, name: str, args: Mapping[str, Any]) -> ToolAnswer:
        handlers = {
            "writ_plan_propose": self.propose,
            "writ_plan_status": self.status,
            "writ_plan_begin": self.begin,
            "writ_plan_finish": self.finish,
        }
        return await handlers[name](args)

    # -- propose -------------------------------------------------------------------------

    async def propose(self, raw: Mapping[str, Any]) -> ToolAnswer:
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
        record = self.stores.plans.submit(sign_plan(plan, key).to_json())
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
            f"expires at {_iso(plan.expires_at)}; signed by {self.principal.name} with key {key.key_id[7:19]}",
            f"approvers review it with `writ plan show {short} --data-dir {home}` and approve with `{approve}`",
            "once it is approved, an executor runs it: writ_plan_begin, then each step in order",
            *_step_lines(plan),
        ]
        return ToolAnswer("\n".join(lines), {
            "plan_id": record.id, "state": record.state.value, "title": plan.title,
            "expires_at": _iso(plan.expires_at), "ordered": plan.ordered,
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
            plan = plans.verified_plan(record, self.stores.trust.trust_set(), datetime.now(UTC))
        except WritError as e:  # changed since (a key revoked just now?): do not leave it executing unbound
            plans.finish(plan_id, "aborted", reason=f"it stopped verifying as it began: {e.message}")
            raise
        self.binding.plan = BoundPlan(record.id, plan)
        self._audit("session_plan", {"session_id": self.session_id, "principal": self.principal.name,
                                     "plan_id": record.id, "event": "bound"})
        lines = [
            f"plan {record.id} is {record.state.value} in this session: {plan.title}",
            (f"run its steps {'in this order' if plan.ordered else 'in any order'}, each exactly as shown, once; "
             f"it expires at {_iso(plan.expires_at)}; end with writ_plan_finish"),
            *_step_lines(plan),
        ]
        return ToolAnswer("\n".join(lines), {
            "plan_id": record.id, "state": record.state.value, "title": plan.title, "ordered": plan.ordered,
            "expires_at": _iso(plan.expires_at), "steps": [_step_data(i, s, None) for i, s in enumerate(plan.steps)],
        })

    async def finish(self, raw: Mapping[str, Any]) -> ToolAnswer:
        a = parse_args(FinishArgs, "writ_plan_finish", raw)
        bound = self.binding.plan
        if bound is None:
            raise InputError("no plan is bound to this session: there is nothing to finish", code=reasons.NO_PLAN_BOUND)
        current = self.stores.plans.get(bound.id).state
        if current in TERMINAL:  # ended elsewhere (an operator aborted it, say): just let it go
            self.binding.plan = None
            self._audit("session_plan", {"session_id": self.session_id, "principal": self.principal.name,
                                         "plan_id": bound.id, "event": "released", "state": current.value})
            return ToolAnswer(f"plan {bound.id} had already ended ({current.value}); this session may begin "
                              "another plan", {"plan_id": bound.id, "state": current.value})
        state = self.stores.plans.finish(bound.id, a.outcome, reason=a.reason)
        self.binding.plan = None
        self._audit("session_plan", {"session_id": self.session_id, "principal": self.principal.name,
                                     "plan_id": bound.id, "event": "released", "state": state.value})
        return ToolAnswer(f"plan {bound.id} is {state.value}; this session may begin another plan",
                          {"plan_id": bound.id, "state": state.value})


# --- rendering ---------------------------------------------------------------------------------


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _claim_text(claim: ClaimRecord | None) -> str:
    if claim is None:
        return "not run"
    if claim.outcome is None:
        return f"claimed by {claim.executor} at {_iso(claim.claimed_at)}, running"
    return f"{claim.outcome} (claimed by {claim.executor} at {_iso(claim.claimed_at)})"


def _step_lines(plan: Plan, claims: Mapping[int, ClaimRecord] | None = None) -> list[str]:
    out = []
    for i, s in enumerate(plan.steps):
        line = f"  [{i}] {exposed(s)} {_json(s.args)}"
        if s.constraints:
            line += " constraints " + _json([c.model_dump(mode="json") for c in s.constraints])
        if claims is not None:
            line += f": {_claim_text(claims.get(i))}"
        out.append(line)
    return out


def _step_data(i: int, s: PlanStep, claim: ClaimRecord | None) -> dict[str, Any]:
    data: dict[str, Any] = {"index": i, "tool": exposed(s), "args": s.args,
                            "constraints": [c.model_dump(mode="json") for c in s.constraints],
                            "definition_digest": s.definition_digest}
    data["claim"] = None if claim is None else {
        "executor": claim.executor, "claimed_at": _iso(claim.claimed_at), "outcome": claim.outcome}
    return data


def _status_answer(status: PlanStatus, claims: Mapping[int, ClaimRecord], *, bound: bool) -> ToolAnswer:
    record, plan, result = status.record, status.plan, status.result
    req = result.requirement
    counted = f"{len(result.approvals)}/{req.quorum}" + (f" ({', '.join(result.approvers)})" if result.approvers else "")
    lines = [
        f"plan {record.id}: {plan.title}",
        f"state {record.state.value}" + (f" (executor {record.executor})" if record.executor else "")
        + (", bound to this session" if bound else "")
        + f"; planner {plan.planner}; expires {_iso(plan.expires_at)}",
        f"approvals {counted}; missing: {', '.join(result.missing) or 'nothing'}"
        + (f"; rejected by {', '.join(r.principal for r in result.rejections)}" if result.rejected else ""),
        f"steps ({'in order' if plan.ordered else 'any order'}):",
        *_step_lines(plan, claims),
    ]
    return ToolAnswer("\n".join(lines), {
        "plan_id": record.id, "title": plan.title, "state": record.state.value, "planner": plan.planner,
        "executor": record.executor, "bound_to_this_session": bound, "expires_at": _iso(plan.expires_at),
        "ordered": plan.ordered,
        "approvals": {"counted": list(result.approvers), "quorum": req.quorum,
                      "required_groups": list(req.required_groups), "missing": list(result.missing),
                      "approved": result.approved, "rejected_by": [r.principal for r in result.rejections]},
        "steps": [_step_data(i, s, claims.get(i)) for i, s in enumerate(plan.steps)],
    })
