"""Writ's own tools on the gateway (server ``writ``): their definitions and their argument models.

    [t.exposed_name for t in governance_tools()]     # ['writ__writ_plan_propose', 'writ__writ_plan_status', ...]
    args = parse_args(BeginArgs, "writ_plan_begin", {"plan_id": "3f2a9c"})   # InputError if wrong

The tools (exposed as ``writ__<name>``, each decided by policy like any other tool; their
classes are in ``policies/writ/tools.json``; their handlers are ``governance.Governance``):

- ``writ_plan_propose`` (planner): the exact write calls an executor will make. The gateway
  fills in each step's server, tool and *current* definition digest from the upstream
  listing, signs the plan with the planner's key and submits it.
- ``writ_plan_status`` (planner, executor): state, approvals counted and missing, steps and
  whether each has run.
- ``writ_plan_begin`` (executor): ``PlanStore.begin`` and bind the plan to this session.
- ``writ_plan_finish`` (executor): completed, failed or aborted; the session is free again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from writ.engine.core import reasons
from writ.engine.core.errors import InputError
from writ.engine.gateway.listing import UpstreamTool, definition_digest
from writ.plans.models import Constraint

SERVER = "writ"  # the server part of Writ's own tools: writ__writ_plan_begin

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

TOOLS: list[types.Tool] = [
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
    return [UpstreamTool(SERVER, tool, definition_digest(tool)) for tool in TOOLS]


class _Args(BaseModel):
    """The arguments of one of Writ's tools: strict (unknown keys are refused) and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProposeStep(_Args):
    """One step of ``writ_plan_propose``: the tool as tools/list names it, its exact arguments, constraints."""

    tool: str = Field(min_length=1)
    args: dict[str, JsonValue]
    constraints: list[Constraint] = Field(default_factory=list)


class ProposeArgs(_Args):
    """The arguments of ``writ_plan_propose``.

        parse_args(ProposeArgs, "writ_plan_propose", {"title": "t", "rationale": "r", "steps": [...]})
    """

    title: str = Field(min_length=1)
    rationale: str
    steps: list[ProposeStep] = Field(min_length=1)
    expires_in_s: int | None = Field(None, ge=1)
    ordered: bool = True


class StatusArgs(_Args):
    """The arguments of ``writ_plan_status``: a plan id or prefix, or none for the bound plan."""

    plan_id: str | None = None


class BeginArgs(_Args):
    """The arguments of ``writ_plan_begin``: the plan id or a prefix of it."""

    plan_id: str = Field(min_length=1)


class FinishArgs(_Args):
    """The arguments of ``writ_plan_finish``: how the plan ended, and optionally why."""

    outcome: Literal["completed", "failed", "aborted"]
    reason: str = ""


A = TypeVar("A", bound=_Args)


def parse_args(model: type[A], tool: str, args: Mapping[str, Any]) -> A:
    """``args`` as ``model``; ``InputError`` (``arguments_invalid``) naming the first bad argument."""
    try:
        return model.model_validate(dict(args))
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        raise InputError(f"{tool}: {loc}: {err['msg']}", code=reasons.ARGUMENTS_INVALID) from None
