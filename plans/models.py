"""Plans: the exact tool calls a planner proposes, and the limits on reading one.

    plan = Plan.new(
        title="Fix the typo in README", rationale="Reported in #12", planner="alice",
        steps=[PlanStep(server="fs", tool="write_file", definition_digest=tool_digest,
                        args={"path": "/repo/README.md", "content": "..."})],
        ttl=timedelta(hours=4),
    )
    plan.id                          # 'sha256:...' of plan.canonical_bytes()
    Plan.from_payload(raw, limits)   # strict parse of signed bytes; refuses non-canonical payloads

A step pins its arguments exactly (``args``) by default. An argument may
instead be left to ``constraints`` that an approver can read (``path_glob``,
``content_sha256``, ``one_of``); every argument of the call is then either
pinned or constrained, and every constraint must hold. Matching a call to a
step is ``writ.plans.matching.matches``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from writ.engine.core import reasons
from writ.engine.core.errors import InputError
from writ.engine.core.settings import PlanLimits as PlanLimits  # noqa: PLC0414 - re-export; limits live in Settings
from writ.engine.core.timeutil import utc_now
from writ.plans.canonical import canonical_bytes, parse_strict, sha256_digest
from writ.plans.paths import PathRefused, check_glob, check_root
from writ.plans.trust import Principal

DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
Digest = Annotated[str, Field(pattern=DIGEST_PATTERN)]
ArgName = Annotated[str, Field(min_length=1)]
Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PathGlob(_Strict):
    """``arg`` is a path under ``root`` whose root-relative form matches ``glob`` (see ``writ.plans.paths``)."""

    kind: Literal["path_glob"] = "path_glob"
    arg: ArgName
    root: str
    glob: str

    @field_validator("root")
    @classmethod
    def _root(cls, v: str) -> str:
        try:
            return check_root(v)
        except PathRefused as e:
            raise ValueError(str(e)) from None

    @field_validator("glob")
    @classmethod
    def _glob(cls, v: str) -> str:
        try:
            return check_glob(v)
        except PathRefused as e:
            raise ValueError(str(e)) from None


class ContentSha256(_Strict):
    """``arg`` is a string whose UTF-8 bytes have this SHA-256 (lowercase hex)."""

    kind: Literal["content_sha256"] = "content_sha256"
    arg: ArgName
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class OneOf(_Strict):
    """``arg`` is one of these JSON scalars (compared as canonical JSON: ``true`` is not ``1``)."""

    kind: Literal["one_of"] = "one_of"
    arg: ArgName
    values: tuple[Scalar, ...] = Field(min_length=1)


Constraint = Annotated[PathGlob | ContentSha256 | OneOf, Field(discriminator="kind")]


class PlanStep(_Strict):
    """One tool call: which server, which tool (pinned by its definition digest), which arguments."""

    server: str = Field(min_length=1)
    tool: str = Field(min_length=1)
    definition_digest: Digest
    args: dict[str, JsonValue] = Field(default_factory=dict, description="Arguments pinned exactly.")
    constraints: tuple[Constraint, ...] = Field((), description="Rules for the arguments not pinned; all must hold.")

    @model_validator(mode="after")
    def _pinned_or_constrained(self) -> PlanStep:
        both = sorted({c.arg for c in self.constraints} & set(self.args))
        if both:
            raise ValueError(f"arguments {both} are both pinned and constrained; choose one")
        return self

    def constrained_args(self) -> frozenset[str]:
        return frozenset(c.arg for c in self.constraints)


def short_plan_id(plan_id: str) -> str:
    """``sha256:`` and the first 12 hex digits of a plan id, then ``..``: how messages name a plan."""
    return plan_id[: len("sha256:") + 12] + ".."


def _utc_seconds(v: datetime) -> datetime:
    return v.astimezone(UTC).replace(microsecond=0)


class Plan(_Strict):
    """A unit of work to sign. ``id`` is the digest of its canonical bytes: any change makes another plan."""

    title: str = Field(min_length=1)
    rationale: str
    planner: Principal
    created_at: AwareDatetime
    expires_at: AwareDatetime
    nonce: Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){16,64}$", description="Random, 16-64 bytes, hex.")]
    steps: tuple[PlanStep, ...] = Field(min_length=1)
    ordered: bool = True

    @field_validator("created_at", "expires_at", mode="after")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return _utc_seconds(v)

    @field_serializer("created_at", "expires_at")
    def _ser_time(self, v: datetime) -> str:
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")  # signed bytes: always whole seconds, never timeutil.iso

    @model_validator(mode="after")
    def _window(self) -> Plan:
        if self.expires_at <= self.created_at:
            raise ValueError("expires_at must be later than created_at")
        return self

    @classmethod
    def new(
        cls,
        *,
        title: str,
        rationale: str,
        planner: str,
        steps: list[PlanStep],
        ttl: timedelta,
        now: datetime | None = None,
        ordered: bool = True,
    ) -> Plan:
        """A plan with a fresh random nonce, created ``now`` (UTC, whole seconds), expiring after ``ttl``."""
        created = _utc_seconds(now or utc_now())
        return cls(
            title=title,
            rationale=rationale,
            planner=planner,
            created_at=created,
            expires_at=created + ttl,
            nonce=secrets.token_hex(16),
            steps=tuple(steps),
            ordered=ordered,
        )

    def signable(self) -> dict[str, Any]:
        """The JSON object that is signed: every field, defaults included."""
        return self.model_dump(mode="json")

    def canonical_bytes(self) -> bytes:
        return canonical_bytes(self.signable())

    @property
    def id(self) -> str:
        """``sha256:<hex>`` of the canonical bytes; computed on each use, never cached."""
        return sha256_digest(self.canonical_bytes())

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def check_limits(self, limits: PlanLimits) -> None:
        if len(self.steps) > limits.max_steps:
            raise InputError(
                f"plan has {len(self.steps)} steps, the limit is {limits.max_steps} (max_steps)",
                code=reasons.INPUT_TOO_LARGE,
            )
        for i, step in enumerate(self.steps):
            size = len(canonical_bytes(step.args))
            if size > limits.max_args_bytes:
                raise InputError(
                    f"step {i} has {size} bytes of arguments, the limit is {limits.max_args_bytes} (max_args_bytes)",
                    code=reasons.INPUT_TOO_LARGE,
                )

    @classmethod
    def from_payload(cls, payload: bytes, limits: PlanLimits | None = None) -> Plan:
        """Parse signed plan bytes: strict JSON, a valid plan, exactly canonical, within limits."""
        limits = limits or PlanLimits()
        obj = parse_strict(payload, max_bytes=limits.max_plan_bytes, max_depth=limits.max_json_depth)
        try:
            plan = cls.model_validate(obj)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise InputError(f"not a valid plan: {loc}: {err['msg']}", code=reasons.PLAN_INVALID) from None
        if plan.canonical_bytes() != bytes(payload):
            raise InputError(
                "plan payload is not canonical (RFC 8785; times as YYYY-MM-DDTHH:MM:SSZ; every field present)",
                code=reasons.PLAN_NOT_CANONICAL,
            )
        plan.check_limits(limits)
        return plan
