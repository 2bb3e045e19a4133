"""The policy input and decision shapes: the contract between Writ and the Rego policies.

These models are published as JSON Schema in ``schemas/`` (``writ.engine.policy.schema``
writes them; a test fails when the files drift from the models).

    inp = PolicyInput(
        principal="exec-bot", role="executor", session=Session(id="s1"),
        tool=Tool(server="git", name="git_commit", annotations=ToolAnnotations()),
        args={"message": "fix"}, now=datetime.now(timezone.utc),
    )
    decision = engine.decide(inp)
    decision.allow, [r.code for r in decision.reasons]

    # Another MCP request: the same policy decides it, as a read.
    PolicyInput(
        principal="plan-bot", role="planner", session=Session(id="s1"), method="resources/read",
        tool=Tool(server="fs", name="file:///srv/repo/README.md"), now=datetime.now(timezone.utc),
    )
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from writ.engine.core.timeutil import iso
from writ.plans.lifecycle import PlanState
from writ.plans.trust import Role

Method = Literal[
    "tools/call",
    "resources/read",
    "resources/subscribe",
    "prompts/get",
    "completion/complete",
    "sampling/createMessage",
    "elicitation/create",
]
# The MCP methods that are not tool calls: policy classes each of them as a read.
NON_TOOL_METHODS: frozenset[str] = frozenset(get_args(Method)) - {"tools/call"}
CODE_PATTERN = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolAnnotations(_Strict):
    """MCP tool annotations as the upstream declared them: hints, which policy data overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    read_only: bool | None = Field(None, alias="readOnlyHint")
    destructive: bool | None = Field(None, alias="destructiveHint")
    idempotent: bool | None = Field(None, alias="idempotentHint")
    open_world: bool | None = Field(None, alias="openWorldHint")


class Tool(_Strict):
    """What the request is about.

    For ``tools/call``: the tool. For another method (see
    ``PolicyInput.method``): the upstream server and the resource URI, prompt name or method,
    with no annotations and no definition digest.
    """

    server: str = Field(min_length=1, description="Upstream server name from writ.toml; 'writ' for governance tools.")
    name: str = Field(
        min_length=1,
        description="tools/call: the tool name on that server. resources/read, resources/subscribe: the resource "
        "URI as the upstream knows it. prompts/get: the prompt name. completion/complete: the prompt name or "
        "resource-template URI being completed. sampling/createMessage, elicitation/create: the method itself "
        "(the upstream is asking the agent's client).",
    )
    annotations: ToolAnnotations = Field(
        default_factory=ToolAnnotations, description="The tool's MCP annotations; empty for other methods."
    )
    definition_digest: str | None = Field(
        None,
        description="sha256: of the canonical tool definition (name, description, input schema, annotations); "
        "null for other methods.",
    )
    annotations_trusted: bool = Field(
        False,
        description="True only when the operator's writ.toml entry of this exact upstream sets trust_annotations "
        "(set by the gateway, never by the upstream): only then may readOnlyHint make a tool a read (ADR 0013).",
    )


class Session(_Strict):
    """The MCP session the request came in on, and whether a violation locked it (``input.session``)."""

    id: str = Field(min_length=1)
    locked: bool = Field(False, description="True after a violation locked the session.")


class PlanContext(_Strict):
    """What the plan store knows about the plan bound to the session, for this call."""

    id: str = Field(description="sha256: digest of the canonical plan.")
    state: PlanState
    planner: str
    expires_at: datetime
    step_matches: bool = Field(
        description="True when this exact call is step step_index: the next to run, or one that already ran "
        "(the plan store then refuses the claim)."
    )
    step_index: int | None = None

    @field_serializer("expires_at")
    def _ser_time(self, v: datetime) -> str:
        return iso(v)  # RFC 3339 in UTC with Z: the one time format policies see


class PolicyInput(_Strict):
    """The input document of ``data.writ.authz.decision``.

    ``method`` names the MCP request. Policy classes every method but ``tools/call`` as a
    read; for those, ``tool`` names the server and the resource, prompt or method (see
    ``Tool.name``) and ``args`` holds the prompt's arguments (``prompts/get``), the
    argument being completed (``completion/complete``: ``{"argument": {"name", "value"},
    "context": {...}}``), or nothing.
    """

    principal: str = Field(min_length=1, description="Authenticated principal name (from the trust store).")
    role: Role
    groups: list[str] = Field(default_factory=list, description="Groups of the principal, from the trust store.")
    session: Session
    method: Method = Field(
        "tools/call",
        description="The MCP request being decided. Policy reads an absent or null method as tools/call; every "
        "other method is a read.",
    )
    tool: Tool
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="tools/call: the tool's arguments. prompts/get: the prompt's arguments. completion/complete: "
        '{"argument": {"name", "value"}, "context": {...}}. Other methods: {}.',
    )
    plan: PlanContext | None = None
    now: datetime

    @field_serializer("now")
    def _ser_now(self, v: datetime) -> str:
        return iso(v)  # RFC 3339 in UTC with Z: the one time format policies see


class Reason(_Strict):
    """Why a call was denied (or, rarely, a note on an allow): a stable code and a sentence."""

    code: str = Field(pattern=CODE_PATTERN)
    message: str


class Obligation(_Strict):
    """Something the caller must do with the decision, e.g. ``plan_required`` or ``lock_session``."""

    code: str = Field(pattern=CODE_PATTERN)
    message: str = ""


class PolicyResult(_Strict):
    """The document a policy returns at ``data.writ.authz.decision``; anything else is a deny."""

    allow: bool = Field(strict=True)  # only JSON true allows: no "yes", "true" or 1 coerced to True
    reasons: list[Reason] = Field(default_factory=list)
    obligations: list[Obligation] = Field(default_factory=list)


class Decision(_Strict):
    """One decision by a policy engine, with what a reviewer needs to trust it later."""

    decision_id: str
    allow: bool
    reasons: list[Reason]
    obligations: list[Obligation]
    policy_revision: str | None = Field(description="sha256: digest of the policy set; null if none was loaded.")
    engine: Literal["embedded", "opa"]
    duration_us: int = Field(ge=0)

    @property
    def reason_codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def has_obligation(self, code: str) -> bool:
        return any(o.code == code for o in self.obligations)
