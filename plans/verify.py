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
``ApprovalRequirement`` has the shape of its ``requirement``. The requirement and the
result types are in ``writ.plans.approval_result``; plan ids in messages come from
``writ.plans.models.short_plan_id``.

One TTL rule: ``ttl_violation`` (and its raising twin ``check_ttl``, which the plan
store calls on submit) refuses a plan that stays valid longer than the requirement's
``max_ttl_seconds`` (code ``plan_ttl_too_long``).

Envelopes given as bytes are verified once per (exact bytes, trusted keys, limits):
``writ.plans.verify_cache`` keeps what the signatures and the strict parse found, and
every check that depends on the time, the plan or the groups runs on each call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from writ.engine.core import reasons
from writ.engine.core.errors import ApprovalError, InputError, PlanExpired, SignatureError, WritError
from writ.engine.core.timeutil import aware
from writ.plans import dsse
from writ.plans.approval_result import (
    ApprovalRequirement,
    ApprovalResult,
    CountedDecision,
    IgnoredApproval,
    IgnoreReason,
)
from writ.plans.keys import PublicKey, short_key_id
from writ.plans.models import Plan, PlanLimits, short_plan_id
from writ.plans.statements import IN_TOTO_PAYLOAD_TYPE, PLAN_PAYLOAD_TYPE, ApprovalStatement
from writ.plans.trust import Role, TrustedKey, TrustSet
from writ.plans.verify_cache import APPROVALS, PLANS, EnvelopeKey

__all__ = ["check_ttl", "evaluate_approvals", "require_approved", "ttl_violation", "verify_plan_envelope"]


def _a(role: str) -> str:
    return ("an " if role[:1] in "aeiou" else "a ") + role


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
    aware(now, "'now'")
    key = EnvelopeKey.of(envelope, trust, limits)
    found = PLANS.get(key)
    if found is None:
        # 1. a well-formed envelope within limits
        env = _plan_envelope(envelope, limits)
        # 2. signed by some trusted planner key (any principal, for now), and of the plan payload type
        accepted = _planner_signatures(env, trust)
        # 3. only now parse the signed bytes
        found = (Plan.from_payload(env.payload, limits), accepted)
        PLANS.put(key, found)
    plan, accepted = found
    # 4. the signer is the planner the plan names, 5. with a key valid now
    _check_own_valid_key(plan, [tk for kid in accepted if (tk := trust.key(kid)) is not None], now)
    return plan


def _plan_envelope(envelope: dsse.Envelope | bytes, limits: PlanLimits) -> dsse.Envelope:
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
    return env


def _planner_signatures(env: dsse.Envelope, trust: TrustSet) -> tuple[str, ...]:
    """The ids of the trusted planner keys whose signatures verify; ``SignatureError`` if there are none."""
    if not env.signatures:
        raise SignatureError("plan envelope has no signatures")
    try:
        return dsse.verify(env, _keys(trust, "planner"), 1, payload_type=PLAN_PAYLOAD_TYPE)
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


def _check_own_valid_key(plan: Plan, signers: list[TrustedKey], now: datetime) -> None:
    own = [tk for tk in signers if tk.principal == plan.planner]
    if not own:
        other = signers[0]
        raise SignatureError(
            f"plan names planner {plan.planner!r} but is signed by key {short_key_id(other.key_id)} "
            f"of principal {other.principal!r}"
        )
    why = [(tk, tk.invalid_reason(now)) for tk in own]
    if all(reason is not None for _, reason in why):
        tk, reason = why[0]
        raise SignatureError(
            f"plan signed by key {short_key_id(tk.key_id)} of principal {tk.principal!r}, which was {reason}",
            code=reasons.KEY_INVALID,
        )


class _Ignored(Exception):
    """One failed step of ``_check_one``: the approval does not count, for ``reason``."""

    def __init__(self, reason: IgnoreReason, detail: str, key: TrustedKey | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.key = reason, detail, key


def _check_one(
    index: int,
    item: dsse.Envelope | bytes,
    plan: Plan,
    trust: TrustSet,
    now: datetime,
    requirement: ApprovalRequirement,
    limits: PlanLimits,
) -> CountedDecision | IgnoredApproval:
    """One approval envelope, checked in the policy's order; each step can ignore it for one reason."""
    try:
        key = EnvelopeKey.of(item, trust, limits)
        found = APPROVALS.get(key)
        if found is None:
            # 1. an envelope of an in-toto statement with exactly one signature
            env = _statement_envelope(item, limits)
            # 2. signed by a trusted approver key
            tk = _approver_key(env, plan, trust)
            # 3. only now parse the signed statement; the approver it names is the key's principal
            found = (tk, _statement_of(env, tk, limits))
            APPROVALS.put(key, found)
        tk, statement = found
        # 4. the rest in the policy's precedence: self approval, wrong plan, key validity, groups
        _check_eligible(statement, tk, plan, trust, now, requirement)
    except _Ignored as e:
        return IgnoredApproval(
            index=index,
            reason=e.reason,
            detail=e.detail,
            principal=e.key.principal if e.key else None,
            key_id=e.key.key_id if e.key else None,
        )
    p = statement.predicate
    return CountedDecision(
        index=index, principal=p.approver, key_id=tk.key_id, decision=p.decision, comment=p.comment, at=p.at
    )


def _statement_envelope(item: dsse.Envelope | bytes, limits: PlanLimits) -> dsse.Envelope:
    try:
        env = _envelope(item, limits)
    except WritError as e:
        raise _Ignored(IgnoreReason.MALFORMED, str(e)) from None
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise _Ignored(IgnoreReason.MALFORMED, f"payload type {env.payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}")
    if len(env.signatures) != 1:
        raise _Ignored(IgnoreReason.MALFORMED, f"an approval has exactly one signature, this has {len(env.signatures)}")
    return env


def _approver_key(env: dsse.Envelope, plan: Plan, trust: TrustSet) -> TrustedKey:
    """The trusted approver key that signed (the key id only picks which one to try first).

    A key of another role never counts, and is named only when the signature's key id points at it.
    """
    accepted = dsse.accepted_keys(env, _keys(trust, "approver"))
    if accepted:
        tk = trust.key(next(iter(accepted)))
        if tk is not None:  # accepted keys are the trust set's own
            return tk
    other = _signed_by_hinted_key(env, trust)
    if other is None:
        hint = short_key_id(env.signatures[0].keyid)
        raise _Ignored(IgnoreReason.BAD_SIGNATURE, f"does not verify under any trusted approver key (key id {hint})")
    if other.principal == plan.planner:
        raise _Ignored(IgnoreReason.SELF_APPROVAL, f"{other.principal!r} wrote the plan and cannot decide on it", other)
    raise _Ignored(
        IgnoreReason.NOT_AN_APPROVER,
        f"signed by key {short_key_id(other.key_id)} of principal {other.principal!r} "
        f"({_a(other.role)} key), expected a key of an approver",
        other,
    )


def _statement_of(env: dsse.Envelope, tk: TrustedKey, limits: PlanLimits) -> ApprovalStatement:
    try:
        statement = ApprovalStatement.from_payload(env.payload, limits)
    except WritError as e:
        raise _Ignored(IgnoreReason.MALFORMED, str(e), tk) from None
    approver = statement.predicate.approver
    if approver != tk.principal:
        raise _Ignored(
            IgnoreReason.FOREIGN_KEY,
            f"names approver {approver!r} but is signed by key {short_key_id(tk.key_id)} of {tk.principal!r}",
            tk,
        )
    return statement


def _check_eligible(
    statement: ApprovalStatement,
    tk: TrustedKey,
    plan: Plan,
    trust: TrustSet,
    now: datetime,
    requirement: ApprovalRequirement,
) -> None:
    approver = statement.predicate.approver
    # 4a. not the planner
    if approver == plan.planner:
        raise _Ignored(IgnoreReason.SELF_APPROVAL, f"{approver!r} wrote the plan and cannot decide on it", tk)
    # 4b. about this plan
    if statement.plan_id != plan.id:
        raise _Ignored(
            IgnoreReason.WRONG_PLAN,
            f"is about plan {short_plan_id(statement.plan_id)}, not {short_plan_id(plan.id)}",
            tk,
        )
    # 4c. with a key valid now
    invalid = tk.invalid_reason(now)
    if invalid is not None:
        raise _Ignored(IgnoreReason.KEY_INVALID, f"key {short_key_id(tk.key_id)} of {tk.principal!r} was {invalid}", tk)
    # 4d. by a member of a required group, if groups are required
    if requirement.required_groups and not trust.groups_of(approver) & set(requirement.required_groups):
        raise _Ignored(
            IgnoreReason.NOT_IN_REQUIRED_GROUP,
            f"{approver!r} is in none of the required groups {list(requirement.required_groups)}",
            tk,
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
    aware(now, "'now'")
    counted, ignored = _count(approvals, plan, trust, now, requirement, limits)
    approvals_out = tuple(c for c in counted if c.decision == "approve")
    covered = {g for a in approvals_out for g in trust.groups_of(a.principal)}
    violation = ttl_violation(plan, requirement)
    return ApprovalResult(
        plan_id=plan.id,
        requirement=requirement,
        approvals=approvals_out,
        rejections=tuple(c for c in counted if c.decision != "approve"),
        ignored=tuple(ignored),
        missing_groups=tuple(g for g in requirement.required_groups if g not in covered),
        violations=(violation,) if violation else (),
        expires_at=plan.expires_at,
        expired=plan.is_expired(now),
    )


def _count(
    approvals: Sequence[dsse.Envelope | bytes],
    plan: Plan,
    trust: TrustSet,
    now: datetime,
    requirement: ApprovalRequirement,
    limits: PlanLimits,
) -> tuple[list[CountedDecision], list[IgnoredApproval]]:
    """The first decision of each principal that counts, in order, and every approval ignored."""
    counted: list[CountedDecision] = []
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
            counted.append(c)
    return counted, ignored


def ttl_violation(plan: Plan, requirement: ApprovalRequirement) -> str | None:
    """The one TTL rule: what is wrong if ``plan`` stays valid longer than ``max_ttl_seconds``, else None.

        ttl_violation(plan, ApprovalRequirement(quorum=1, max_ttl_seconds=86400))
        # 'stays valid for 172800 seconds, longer than the allowed 86400: sign it again with an earlier expires_at'
    """
    ttl = int((plan.expires_at - plan.created_at).total_seconds())
    if requirement.max_ttl_seconds is None or ttl <= requirement.max_ttl_seconds:
        return None
    return (
        f"stays valid for {ttl} seconds, longer than the allowed {requirement.max_ttl_seconds}: "
        "sign it again with an earlier expires_at"
    )


def check_ttl(plan: Plan, requirement: ApprovalRequirement) -> None:
    """``ttl_violation``, raising ``ApprovalError`` (``plan_ttl_too_long``) when there is one."""
    violation = ttl_violation(plan, requirement)
    if violation is not None:
        raise ApprovalError(f"plan {short_plan_id(plan.id)} {violation}", code=reasons.PLAN_TTL_TOO_LONG)


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
        raise PlanExpired(result.summary())
    if result.rejected:
        raise ApprovalError(result.summary(), code=reasons.PLAN_REJECTED)
    if not result.approved:
        raise ApprovalError(result.summary())
    return result
