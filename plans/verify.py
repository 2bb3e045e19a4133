"""Verify a signed plan and count its approvals: a result object, and a raising twin for the executor.

    plan = verify_plan_envelope(envelope, trust, now=now)      # SignatureError unless a valid planner key signed
    result = evaluate_approvals(plan, approval_envelopes, trust, now=now,
                                requirement=ApprovalRequirement(quorum=2, required_groups=("code-owners",)))
    result.approved, result.approvers, result.missing, [(i.reason, i.detail) for i in result.ignored]
    require_approved(plan, approval_envelopes, trust, now=now, requirement=req)
    # ApprovalError: plan sha256:3f2a9c0d41be.. has 1/2 approvals; missing: code-owners

Key ids in envelopes are hints: a plan signature counts only if it verifies
under a trusted *planner* key of the principal the plan names; an approval
counts only if it verifies under a trusted *approver* key, valid now, of the
principal the statement names, over this plan's digest, by someone other than
the planner (and, if groups are required, by a member of one), and only the
first decision of each principal counts. Every approval that does not count is
listed with a reason code (``IgnoreReason``), never silently dropped. Codes,
precedence and counting follow the shipped policy ``data.writ.approval``, and
``ApprovalRequirement`` has the shape of its ``requirement``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from writ.engine.core import reasons
from writ.engine.core.errors import ApprovalError, InputError, SignatureError, WritError
from writ.plans import dsse
from writ.plans.keys import PublicKey, short_key_id
from writ.plans.models import Plan, PlanLimits
from writ.plans.statements import (
    IN_TOTO_PAYLOAD_TYPE,
    PLAN_PAYLOAD_TYPE,
    ApprovalStatement,
    Decision,
)
from writ.plans.trust import Role, TrustedKey, TrustSet


def _a(role: str) -> str:
    return ("an " if role[:1] in "aeiou" else "a ") + role


def short_plan_id(plan_id: str) -> str:
    return plan_id[: len("sha256:") + 12] + ".."


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise InputError("'now' must be a timezone-aware datetime", code=reasons.INPUT_INVALID)
    return now


def _envelope(item: dsse.Envelope | bytes, limits: PlanLimits) -> dsse.Envelope:
    if isinstance(item, dsse.Envelope):
        return item
    return dsse.Envelope.from_json(item, max_bytes=limits.max_envelope_bytes, max_signatures=limits.max_signatures)


def _signed_by_hinted_key(env: dsse.Envelope, trust: TrustSet) -> TrustedKey | None:
    """For messages only: the trusted key a signature names, if the signature really verifies under it."""
    for s in env.signatures:
        tk = trust.key(s.keyid)
        if tk is not None and dsse.accepted_keys(env, {tk.key_id: tk.public_key}):
            return tk
    return None


def _keys(trust: TrustSet, role: Role) -> dict[str, PublicKey]:
    return {kid: tk.public_key for kid, tk in trust.keys_for(role).items()}


def verify_plan_envelope(
    envelope: dsse.Envelope | bytes,
    trust: TrustSet,
    *,
    now: datetime,
    limits: PlanLimits | None = None,
) -> Plan:
    """The plan inside ``envelope`` if a planner key of the plan's own planner, valid at ``now``, signed it.

    Does not look at expiry or approvals (``require_approved`` does).
    """
    limits = limits or PlanLimits()
    _aware(now)
    # 1. a well-formed envelope within limits
    env = _envelope(envelope, limits)
    if len(env.payload) > limits.max_plan_bytes:
        raise InputError(
            f"plan payload is {len(env.payload)} bytes, the limit is {limits.max_plan_bytes}",
            code=reasons.INPUT_TOO_LARGE,
        )
    if len(env.signatures) > limits.max_signatures:
        raise InputError(
            f"envelope has {len(env.signatures)} signatures, the limit is {limits.max_signatures}",
            code=reasons.INPUT_TOO_LARGE,
        )
    # 2. signed by some trusted planner key (any principal, for now), and of the plan payload type
    if not env.signatures:
        raise SignatureError("plan envelope has no signatures")
    try:
        accepted = dsse.verify(env, _keys(trust, "planner"), 1, payload_type=PLAN_PAYLOAD_TYPE)
    except SignatureError:
        signer = _signed_by_hinted_key(env, trust)
        if signer is not None:
            raise SignatureError(
                f"plan signed by key {short_key_id(signer.key_id)} of principal {signer.principal!r} "
                f"({_a(signer.role)} key), expected a key of a planner"
            ) from None
        hints = ", ".join(short_key_id(s.keyid) for s in env.signatures)
        raise SignatureError(
            f"plan signature does not verify under any trusted planner key (signature key ids: {hints})"
        ) from None
    # 3. only now parse the signed bytes
    plan = Plan.from_payload(env.payload, limits)
    # 4. the signer is the planner the plan names
    signers = [tk for kid in accepted if (tk := trust.key(kid)) is not None]
    own = [tk for tk in signers if tk.principal == plan.planner]
    if not own:
        other = signers[0]
        raise SignatureError(
            f"plan names planner {plan.planner!r} but is signed by key {short_key_id(other.key_id)} "
            f"of principal {other.principal!r}"
        )
    # 5. with a key valid now
    why = [(tk, tk.invalid_reason(now)) for tk in own]
    if all(reason is not None for _, reason in why):
        tk, reason = why[0]
        raise SignatureError(
            f"plan signed by key {short_key_id(tk.key_id)} of principal {tk.principal!r}, which was {reason}",
            code=reasons.KEY_INVALID,
        )
    return plan


class IgnoreReason(StrEnum):
    """Why an approval does not count. The same codes, in the same precedence, as ``data.writ.approval``."""

    MALFORMED = "malformed"  # not an envelope or not an approval statement, or not exactly one signature
    BAD_SIGNATURE = "bad_signature"  # verifies under no trusted key of an approver (nor the one it names)
    FOREIGN_KEY = "foreign_key"  # names one approver, signed by another principal's key
    SELF_APPROVAL = "self_approval"  # signed by the plan's own planner (with any of their keys)
    NOT_AN_APPROVER = "not_an_approver"  # signed by a trusted key of another role
    WRONG_PLAN = "wrong_plan"  # about another plan digest
    KEY_INVALID = "key_invalid"  # revoked, expired or not yet valid at `now`
    NOT_IN_REQUIRED_GROUP = "not_in_required_group"  # groups are required and the approver is in none
    DUPLICATE_APPROVER = "duplicate_approver"  # this principal already decided; the first decision counts
    OVER_LIMIT = "over_limit"  # beyond limits.max_approvals, not even checked


class ApprovalRequirement(BaseModel):
    """What policy requires: the shape of ``data.writ.approval.requirement``. Never satisfied by nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quorum: int = Field(ge=1, description="Distinct approvers needed (never 0: an empty 'all of' is an error).")
    required_groups: tuple[str, ...] = Field(
        (),
        description="Each group needs one counted approver; if any, only members of these groups count.",
    )
    max_ttl_seconds: int | None = Field(None, gt=0, description="Longest allowed expires_at - created_at.")
    no_self_approval: Literal[True] = Field(True, description="Always true: it cannot be switched off.")


class CountedDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    principal: str
    key_id: str
    decision: Decision
    comment: str
    at: datetime


class IgnoredApproval(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    reason: IgnoreReason
    detail: str
    principal: str | None = None
    key_id: str | None = None


class ApprovalResult(BaseModel):
    """Where a plan stands: who counted, what is missing, what was ignored and why."""

    model_config = ConfigDict(frozen=True)

    plan_id: str
    requirement: ApprovalRequirement
    approvals: tuple[CountedDecision, ...]
    rejections: tuple[CountedDecision, ...]
    ignored: tuple[IgnoredApproval, ...]
    missing_groups: tuple[str, ...]
    violations: tuple[str, ...] = Field(description="What is wrong with the plan itself, whatever the approvals.")
    expires_at: datetime
    expired: bool

    @computed_field  # type: ignore[prop-decorator]
    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(a.principal for a in self.approvals)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rejected(self) -> bool:
        return bool(self.rejections)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missing_approvals(self) -> int:
        return max(0, self.requirement.quorum - len(self.approvals))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missing(self) -> tuple[str, ...]:
        """Required groups not covered, then how many more approvals beyond those groups."""
        extra = self.missing_approvals - len(self.missing_groups)
        more = (f"{extra} more approval{'s' if extra > 1 else ''}",) if extra > 0 else ()
        return self.missing_groups + more

    @computed_field  # type: ignore[prop-decorator]
    @property
    def approved(self) -> bool:
        return (
            self.missing_approvals == 0
            and not self.missing_groups
            and not self.rejected
            and not self.expired
            and not self.violations
        )

    def summary(self) -> str:
        pid = short_plan_id(self.plan_id)
        if self.violations:
            return f"plan {pid} {'; '.join(self.violations)}"
        if self.expired:
            return f"plan {pid} expired at {self.expires_at.isoformat().replace('+00:00', 'Z')}"
        if self.rejected:
            by = ", ".join(f"{r.principal} ({r.comment})" if r.comment else r.principal for r in self.rejections)
            return f"plan {pid} was rejected by {by}"
        text = f"plan {pid} has {len(self.approvals)}/{self.requirement.quorum} approvals"
        if self.missing:
            text += "; missing: " + ", ".join(self.missing)
        if self.ignored:
            text += "; ignored: " + ", ".join(f"{i.principal or f'#{i.index}'} ({i.reason})" for i in self.ignored)
        return text


def _check_one(
    index: int,
    item: dsse.Envelope | bytes,
    plan: Plan,
    trust: TrustSet,
    now: datetime,
    requirement: ApprovalRequirement,
    limits: PlanLimits,
) -> CountedDecision | IgnoredApproval:
    def ignore(reason: IgnoreReason, detail: str, tk: TrustedKey | None = None) -> IgnoredApproval:
        return IgnoredApproval(
            index=index,
            reason=reason,
            detail=detail,
            principal=tk.principal if tk else None,
            key_id=tk.key_id if tk else None,
        )

    # 1. an envelope of an in-toto statement with exactly one signature
    try:
        env = _envelope(item, limits)
    except WritError as e:
        return ignore(IgnoreReason.MALFORMED, str(e))
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE:
        return ignore(
            IgnoreReason.MALFORMED,
            f"payload type {env.payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}",
        )
    if len(env.signatures) != 1:
        return ignore(
            IgnoreReason.MALFORMED,
            f"an approval has exactly one signature, this has {len(env.signatures)}",
        )
    # 2. signed by a trusted approver key (the key id only picks which one to try first); a key of
    #    another role never counts, and is named only when the signature's key id points at it
    accepted = dsse.accepted_keys(env, _keys(trust, "approver"))
    if not accepted:
        other = _signed_by_hinted_key(env, trust)
        if other is None:
            hint = short_key_id(env.signatures[0].keyid)
            return ignore(
                IgnoreReason.BAD_SIGNATURE,
                f"does not verify under any trusted approver key (key id {hint})",
            )
        if other.principal == plan.planner:
            return ignore(
                IgnoreReason.SELF_APPROVAL,
                f"{other.principal!r} wrote the plan and cannot decide on it",
                other,
            )
        return ignore(
            IgnoreReason.NOT_AN_APPROVER,
            f"signed by key {short_key_id(other.key_id)} of principal {other.principal!r} "
            f"({_a(other.role)} key), expected a key of an approver",
            other,
        )
    tk = trust.key(next(iter(accepted)))
    assert tk is not None
    # 3. only now parse the signed statement; the approver it names is the key's principal
    try:
        statement = ApprovalStatement.from_payload(env.payload, limits)
    except WritError as e:
        return ignore(IgnoreReason.MALFORMED, str(e), tk)
    p = statement.predicate
    if p.approver != tk.principal:
        return ignore(
            IgnoreReason.FOREIGN_KEY,
            f"names approver {p.approver!r} but is signed by key {short_key_id(tk.key_id)} of {tk.principal!r}",
            tk,
        )
    # 4. the rest in the policy's precedence: self approval, wrong plan, key validity, groups
    if p.approver == plan.planner:
        return ignore(IgnoreReason.SELF_APPROVAL, f"{p.approver!r} wrote the plan and cannot decide on it", tk)
    if statement.plan_id != plan.id:
        return ignore(
            IgnoreReason.WRONG_PLAN,
            f"is about plan {short_plan_id(statement.plan_id)}, not {short_plan_id(plan.id)}",
            tk,
        )
    invalid = tk.invalid_reason(now)
    if invalid is not None:
        return ignore(
            IgnoreReason.KEY_INVALID,
            f"key {short_key_id(tk.key_id)} of {tk.principal!r} was {invalid}",
            tk,
        )
    if requirement.required_groups and not trust.groups_of(p.approver) & set(requirement.required_groups):
        return ignore(
            IgnoreReason.NOT_IN_REQUIRED_GROUP,
            f"{p.approver!r} is in none of the required groups {list(requirement.required_groups)}",
            tk,
        )
    return CountedDecision(
        index=index,
        principal=p.approver,
        key_id=tk.key_id,
        decision=p.decision,
        comment=p.comment,
        at=p.at,
    )


def evaluate_approvals(
    plan: Plan,
    approvals: Sequence[dsse.Envelope | bytes],
    trust: TrustSet,
    *,
    now: datetime,
    requirement: ApprovalRequirement,
    limits: PlanLimits | None = None,
) -> ApprovalResult:
    """Check each approval or rejection envelope against ``plan``; count each principal's first decision."""
    limits = limits or PlanLimits()
    _aware(now)
    approvals_out: list[CountedDecision] = []
    rejections_out: list[CountedDecision] = []
    ignored: list[IgnoredApproval] = []
    decided: set[str] = set()
    for i, item in enumerate(approvals):
        if i >= limits.max_approvals:
            ignored.append(
                IgnoredApproval(index=i, reason=IgnoreReason.OVER_LIMIT, detail=f"beyond {limits.max_approvals}")
            )
            continue
        c = _check_one(i, item, plan, trust, now, requirement, limits)
        if isinstance(c, IgnoredApproval):
            ignored.append(c)
        elif c.principal in decided:
            ignored.append(
                IgnoredApproval(
                    index=c.index,
                    reason=IgnoreReason.DUPLICATE_APPROVER,
                    principal=c.principal,
                    key_id=c.key_id,
                    detail=f"{c.principal!r} already decided; a principal's first decision counts",
                )
            )
        else:
            decided.add(c.principal)
            (approvals_out if c.decision == "approve" else rejections_out).append(c)

    covered = {g for a in approvals_out for g in trust.groups_of(a.principal)}
    violations: list[str] = []
    ttl = int((plan.expires_at - plan.created_at).total_seconds())
    if requirement.max_ttl_seconds is not None and ttl > requirement.max_ttl_seconds:
        violations.append(
            f"stays valid for {ttl} seconds, longer than the allowed {requirement.max_ttl_seconds}: "
            "propose it again with an earlier expires_at"
        )
    return ApprovalResult(
        plan_id=plan.id,
        requirement=requirement,
        approvals=tuple(approvals_out),
        rejections=tuple(rejections_out),
        ignored=tuple(ignored),
        missing_groups=tuple(g for g in requirement.required_groups if g not in covered),
        violations=tuple(violations),
        expires_at=plan.expires_at,
        expired=plan.is_expired(now),
    )


def require_approved(
    plan: Plan,
    approvals: Sequence[dsse.Envelope | bytes],
    trust: TrustSet,
    *,
    now: datetime,
    requirement: ApprovalRequirement,
    limits: PlanLimits | None = None,
) -> ApprovalResult:
    """``evaluate_approvals``, raising ``ApprovalError`` unless approved.

    Codes: plan_ttl_too_long, plan_expired, plan_rejected, plan_not_approved (in that order).
    """
    result = evaluate_approvals(plan, approvals, trust, now=now, requirement=requirement, limits=limits)
    if result.violations:
        raise ApprovalError(result.summary(), code=reasons.PLAN_TTL_TOO_LONG)
    if result.expired:
        raise ApprovalError(result.summary(), code=reasons.PLAN_EXPIRED)
    if result.rejected:
        raise ApprovalError(result.summary(), code=reasons.PLAN_REJECTED)
    if not result.approved:
        raise ApprovalError(result.summary())
    return result
