"""Plans: the exact tool calls a planner proposes, and the limits on reading one.

    plan = Plan.new(
        title="Fix the typo in README", rationale="Reported in #12", planner="alice",
        steps=[PlanStep(server="fs", tool="write_file", definition_digest=tool_digest,
                        args={"path": "/repo/README.md", "content": "..."})],
        ttl=timedelta(hours=4),
    )
    plan.id                          # 'sha256:...' of plan.canonical_bytes() (computed once per plan)
    Plan.from_payload(raw, limits)   # strict parse of signed bytes; refuses non-canonical payloads

A step pins its arguments exactly (``args``) by default. An argument may
instead be left to ``constraints`` that an approver can read (``path_glob``,
``content_sha256``, ``one_of``); every argument of the call is then either
pinned or constrained, and every constraint must hold. Matching a call to a
step is ``writ.plans.matching.matches``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
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
from writ.plans.canonical import (
    SAFE_INT,
    canonical_bytes,
    parse_strict,
    plain_key,
    sha256_digest,
    unchecked_canonical_bytes,
)
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
        """RFC 8785 bytes of ``signable()``, computed once: a plan is immutable (``model_copy`` forgets them)."""
        cached: bytes | None = self.__dict__.get(_CANONICAL)
        if cached is None:
            doc = self.signable()
            fast = unchecked_canonical_bytes(doc) if self._free_form_plain() else None
            cached = fast if fast is not None else canonical_bytes(doc)
            self.__dict__[_CANONICAL] = cached  # not a field: equality, dumps and reprs ignore it
        return cached

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Plan:
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop(_CANONICAL, None)  # an updated copy is another plan: encode it again
        copied.__dict__.pop(_ID, None)
        return copied

    @property
    def id(self) -> str:
        """``sha256:<hex>`` of the canonical bytes, computed once per plan."""
        cached: str | None = self.__dict__.get(_ID)
        if cached is None:
            cached = self.__dict__[_ID] = sha256_digest(self.canonical_bytes())
        return cached

    def _free_form_plain(self, max_depth: int | None = None) -> bool:
        """``is_plain`` for the whole plan, looking only at what can vary: arguments and ``one_of`` values.

        Every other part is a string, a bool or an ASCII field name. With ``max_depth``, also
        whether the plan's JSON nests no deeper than that (the strict parser's depth rule:
        plan 1, steps 2, a step 3, its args and constraints 4, a constraint 5, its values 6).
        """
        deepest = 4
        for step in self.steps:
            args = step.args
            for name, value in args.items():
                if type(value) is not str or not name.isascii():
                    depth = _plain_depth(args, 4)
                    if depth is None:
                        return False
                    deepest = max(deepest, depth)
                    break
            for c in step.constraints:
                deepest = max(deepest, 5)
                if isinstance(c, OneOf):
                    deepest = 6
                    if not all(_plain_scalar(v) for v in c.values):
                        return False
        return max_depth is None or deepest <= max_depth

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def check_limits(self, limits: PlanLimits, *, canonical_size: int | None = None) -> None:
        """Steps and each step's arguments within ``limits``.

        ``canonical_size``: the length of the plan's canonical bytes, when known. Each step's
        canonical arguments are part of those bytes, so a plan no longer than ``max_args_bytes``
        cannot have a step over it, and is not encoded step by step.
        """
        if len(self.steps) > limits.max_steps:
            raise InputError(
                f"plan has {len(self.steps)} steps, the limit is {limits.max_steps} (max_steps)",
                code=reasons.INPUT_TOO_LARGE,
            )
        if canonical_size is not None and canonical_size <= limits.max_args_bytes:
            return
        for i, step in enumerate(self.steps):
            size = len(canonical_bytes(step.args))
            if size > limits.max_args_bytes:
                raise InputError(
                    f"step {i} has {size} bytes of arguments, the limit is {limits.max_args_bytes} (max_args_bytes)",
                    code=reasons.INPUT_TOO_LARGE,
                )

    @classmethod
    def from_payload(cls, payload: bytes, limits: PlanLimits | None = None) -> Plan:
        """Parse signed plan bytes: strict JSON, a valid plan, exactly canonical, within limits.

        A payload that is exactly the canonical bytes of the plan it holds is recognised without
        the strict parser (``_from_canonical_payload``); any other goes through it, and gets its
        error: what the fast path accepts, the strict path accepts too, as the same plan.
        """
        limits = limits or PlanLimits()
        plan = cls._from_canonical_payload(payload, limits)
        if plan is None:
            plan = cls._from_payload_strict(payload, limits)
        plan.check_limits(limits, canonical_size=len(payload))
        return plan

    @classmethod
    def _from_canonical_payload(cls, payload: bytes, limits: PlanLimits) -> Plan | None:
        """The plan if ``payload`` is byte for byte its canonical form, plain and within the depth limit; else None."""
        if type(payload) is not bytes or len(payload) > limits.max_plan_bytes:
            return None
        try:
            plan = cls.model_validate(json.loads(payload))
        except (ValueError, TypeError, RecursionError):  # not JSON, not UTF-8, not a plan: the strict path says why
            return None
        if not plan._free_form_plain(limits.max_json_depth):
            return None  # floats, huge integers, keys beyond U+FFFF or too deep: only the strict path decides
        encoded = unchecked_canonical_bytes(plan.signable())
        if encoded != payload:
            return None  # duplicate keys, whitespace, another order or spelling: the strict path names it
        plan.__dict__[_CANONICAL] = encoded
        return plan

    @classmethod
    def _from_payload_strict(cls, payload: bytes, limits: PlanLimits) -> Plan:
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
        return plan


_CANONICAL = "_canonical_bytes"
"""Where a plan keeps its canonical bytes once computed: its ``__dict__``, outside its fields."""
_ID = "_plan_id"


def _plain_scalar(value: Any) -> bool:
    kind = type(value)
    return kind is str or kind is bool or value is None or (kind is int and -SAFE_INT <= value <= SAFE_INT)


def _plain_depth(args: dict[str, Any], level: int) -> int | None:
    """The deepest nesting level in ``args`` (itself at ``level``) if it ``is_plain``; None if it is not."""
    deepest = level
    stack: list[tuple[Any, int]] = [(args, level)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict:
            if not all(plain_key(k) for k in node):
                return None
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node.values())
        elif kind is list or kind is tuple:
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node)
        elif not _plain_scalar(node):
            return None
    return deepest
