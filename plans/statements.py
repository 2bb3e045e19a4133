"""What gets signed: plans, and approvals or rejections as in-toto Statement v1, each in a DSSE envelope.

    env = sign_plan(plan, planner_key)                     # payloadType application/vnd.writ.plan+json
    ok = sign_approval(plan.id, approver_key, approver="bob", comment="looks right")
    no = sign_approval(plan.id, approver_key, approver="bob", decision="reject", comment="too broad")
    statement = ApprovalStatement.from_payload(ok.payload)

An approval statement (payloadType ``application/vnd.in-toto+json``):

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "plan", "digest": {"sha256": "<plan id hex>"}}],
     "predicateType": "https://writ.dev/approval/v1",
     "predicate": {"decision": "approve", "approver": "bob", "comment": "...", "at": "2026-11-22T10:00:00Z"}}

It binds the approver's key to the plan digest, so a changed plan needs new
approvals. Plan payloads are always canonical (``Plan.from_payload`` refuses
others); statements from other tools need only be strict JSON.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from writ.engine.core import reasons
from writ.engine.core.errors import InputError
from writ.engine.core.timeutil import iso, utc_now
from writ.plans import dsse
from writ.plans.canonical import canonical_bytes, parse_strict
from writ.plans.keys import PrivateKey
from writ.plans.models import DIGEST_PATTERN, Plan, PlanLimits
from writ.plans.trust import Principal

PLAN_PAYLOAD_TYPE = "application/vnd.writ.plan+json"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
StatementType = Literal["https://in-toto.io/Statement/v1"]
ApprovalPredicateType = Literal["https://writ.dev/approval/v1"]
STATEMENT_TYPE: StatementType = "https://in-toto.io/Statement/v1"
APPROVAL_PREDICATE_TYPE: ApprovalPredicateType = "https://writ.dev/approval/v1"
Decision = Literal["approve", "reject"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Subject(_Strict):
    """The plan a statement is about: in-toto's subject, named ``plan``, with the plan id's SHA-256.

        Subject(digest={"sha256": plan.id.removeprefix("sha256:")})
    """

    name: Literal["plan"] = "plan"
    digest: dict[Literal["sha256"], Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]]

    @field_validator("digest")
    @classmethod
    def _sha256(cls, v: dict[str, str]) -> dict[str, str]:
        if set(v) != {"sha256"}:
            raise ValueError("a plan subject has exactly one digest, sha256")
        return v


class ApprovalPredicate(_Strict):
    """What one approver decided about a plan, and when: the predicate of an approval statement.

        statement = ApprovalStatement.from_payload(envelope.payload)
        p = statement.predicate
        p.approver, p.decision, p.comment, p.at     # 'bob', 'approve', 'looks right', datetime(..., tzinfo=UTC)
    """

    decision: Decision
    approver: Principal
    comment: str = ""
    at: AwareDatetime

    @field_validator("at", mode="after")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)

    @field_serializer("at")
    def _ser_at(self, v: datetime) -> str:
        return iso(v)


class ApprovalStatement(BaseModel):
    """An in-toto Statement v1 whose predicate is one approver's decision on one plan."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    type_: StatementType = Field(STATEMENT_TYPE, alias="_type")
    subject: tuple[Subject] = Field(description="Exactly one subject: the plan.")
    predicate_type: ApprovalPredicateType = Field(APPROVAL_PREDICATE_TYPE, alias="predicateType")
    predicate: ApprovalPredicate

    @property
    def plan_id(self) -> str:
        return "sha256:" + self.subject[0].digest["sha256"]

    @classmethod
    def for_plan(
        cls,
        plan_id: str,
        *,
        approver: str,
        decision: Decision,
        comment: str = "",
        at: datetime | None = None,
    ) -> ApprovalStatement:
        if not isinstance(plan_id, str) or not re.fullmatch(DIGEST_PATTERN, plan_id):
            raise InputError(f"plan id {plan_id!r} is not sha256:<64 hex>", code=reasons.PLAN_INVALID)
        return cls.model_validate(
            {
                "subject": [{"name": "plan", "digest": {"sha256": plan_id.removeprefix("sha256:")}}],
                "predicate": {
                    "decision": decision,
                    "approver": approver,
                    "comment": comment,
                    "at": at or utc_now(),
                },
            }
        )

    def payload(self) -> bytes:
        return canonical_bytes(self.model_dump(mode="json"))

    @classmethod
    def from_payload(cls, payload: bytes, limits: PlanLimits | None = None) -> ApprovalStatement:
        limits = limits or PlanLimits()
        obj: Any = parse_strict(payload, max_bytes=limits.max_plan_bytes, max_depth=limits.max_json_depth)
        try:
            return cls.model_validate(obj)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise InputError(f"not a Writ approval statement: {loc}: {err['msg']}", code=reasons.STATEMENT_INVALID) from None


def sign_plan(plan: Plan, key: PrivateKey) -> dsse.Envelope:
    """The plan's canonical bytes in a DSSE envelope, signed by the planner's key."""
    return dsse.sign(dsse.Envelope.create(PLAN_PAYLOAD_TYPE, plan.canonical_bytes()), key)


def sign_statement(statement: ApprovalStatement, key: PrivateKey) -> dsse.Envelope:
    return dsse.sign(dsse.Envelope.create(IN_TOTO_PAYLOAD_TYPE, statement.payload()), key)


def sign_approval(
    plan_id: str,
    key: PrivateKey,
    *,
    approver: str,
    decision: Decision = "approve",
    comment: str = "",
    at: datetime | None = None,
) -> dsse.Envelope:
    """An approver's signed decision on the plan with this id."""
    statement = ApprovalStatement.for_plan(plan_id, approver=approver, decision=decision, comment=comment, at=at)
    return sign_statement(statement, key)


def unverified_statement(raw: bytes, limits: PlanLimits | None = None) -> ApprovalStatement:
    """The approval statement an envelope carries, NOT verified: what it claims, for checks before verification.

    The approval workflow's Update validators use it to refuse what could never count (another
    plan's digest, the planner's own name, an approver who already decided) before anything
    enters history; whether the claim is true is for the verifier (``writ.plans.verify``).
    ``InputError`` (``envelope_invalid``, ``statement_invalid``) for anything else.
    """
    limits = limits or PlanLimits()
    envelope = dsse.Envelope.from_json(raw, max_bytes=limits.max_envelope_bytes, max_signatures=limits.max_signatures)
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise InputError(
            f"payloadType is {envelope.payload_type!r}, an approval is {IN_TOTO_PAYLOAD_TYPE!r}",
            code=reasons.STATEMENT_INVALID,
        )
    return ApprovalStatement.from_payload(envelope.payload, limits)
