"""Assess a plan's approvals twice: by the verifier, and by the ``writ.approval`` policy; both must say yes.

Ask the policy what a plan needs, and whether verified approvals satisfy it:

    requirement = requirement_for(engine, plan, now)          # ApprovalRequirement, or ApprovalPolicyError
    python = evaluate_approvals(plan, envelopes, trust, now=now, requirement=requirement)
    policy = policy_result(engine, plan, verified_approvals(plan, envelopes, trust, now=now), now)
    approved = python.approved and policy.satisfied          # both must say yes (ADR 0008)
    assessment = assess(engine, plan, envelopes, trust, now=now)   # all of the above, and the differences

The verifier in ``writ.plans.verify`` does what only code can: signatures, key
validity, the statement's subject. ``verified_approvals`` turns the approvals that
passed those checks into the facts the policy reads (approver, role, groups,
decision, plan_id, at, key_valid); the ones that failed them (Python-only reasons:
malformed, bad_signature, foreign_key, over_limit) never reach the policy. Indexes
stay those of the envelope list, so the two results can be compared item by item.

Any failure of the policy (undefined, an engine error, an answer of the wrong
shape) is an ``ApprovalPolicyError``: no requirement, no approval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from writ.engine.core.errors import ApprovalPolicyError, WritError
from writ.engine.core.timeutil import aware, iso
from writ.plans import dsse
from writ.plans.approval_result import ApprovalRequirement, ApprovalResult, IgnoreReason
from writ.plans.keys import PublicKey
from writ.plans.models import Plan, PlanLimits, short_plan_id
from writ.plans.statements import IN_TOTO_PAYLOAD_TYPE, ApprovalStatement, Decision
from writ.plans.trust import TrustedKey, TrustSet
from writ.plans.verify import evaluate_approvals

__all__ = [
    "PYTHON_ONLY_REASONS",
    "REQUIREMENT_PATH",
    "RESULT_PATH",
    "RETRY_PATH",
    "Assessment",
    "PolicyApprovalResult",
    "PolicyEvaluator",
    "VerifiedApproval",
    "assess",
    "disagreements",
    "policy_input",
    "policy_result",
    "requirement_for",
    "retry_allowed",
    "verified_approvals",
]

REQUIREMENT_PATH = "writ.approval.requirement"
RESULT_PATH = "writ.approval.result"
RETRY_PATH = "writ.approval.retry_failed_step"
PYTHON_ONLY_REASONS = frozenset(
    {IgnoreReason.MALFORMED, IgnoreReason.BAD_SIGNATURE, IgnoreReason.FOREIGN_KEY, IgnoreReason.OVER_LIMIT}
)
"""Reasons only the verifier can find; approvals ignored for them are not shown to the policy."""


class PolicyEvaluator(Protocol):
    """Anything that evaluates a policy document: ``EmbeddedEngine``, ``OpaSidecarEngine``."""

    def evaluate(self, path: str, input_doc: dict[str, Any] | None = None) -> Any: ...


class VerifiedApproval(BaseModel):
    """An approval whose signature verified under a trusted key: the facts the policy decides on."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(description="Position in the list of envelopes it came from.")
    approver: str = Field(description="The principal of the key that verified (never the statement's claim alone).")
    role: str
    groups: tuple[str, ...]
    decision: Decision
    plan_id: str
    at: datetime
    key_id: str
    key_valid: bool

    def to_input(self) -> dict[str, Any]:
        """The approval as the policy reads it in ``input.approvals[]``."""
        return {
            "approver": self.approver,
            "role": self.role,
            "groups": sorted(self.groups),
            "decision": self.decision,
            "plan_id": self.plan_id,
            "at": iso(self.at),
            "key_valid": self.key_valid,
        }


class PolicyIgnored(BaseModel):
    """An approval the policy did not count, and its reason code (the same codes as ``IgnoreReason``).

        [(i.approver, i.reason) for i in policy_result(engine, plan, approvals, now).ignored]
        # [('alice', 'self_approval')]
    """

    model_config = ConfigDict(frozen=True)

    index: int = Field(description="Index in the envelope list (mapped back from the policy's input list).")
    approver: str
    reason: str


class PolicyViolation(BaseModel):
    """Something wrong with the plan itself that the policy found, whatever the approvals.

        [v.code for v in result.violations]      # ['plan_ttl_too_long']
    """

    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class PolicyMissing(BaseModel):
    """What the policy still needs: a number of approvals and the required groups not yet covered.

        result.missing.approvals, result.missing.groups      # 1 ('code-owners',)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    approvals: int = Field(ge=0)
    groups: tuple[str, ...]


class PolicyApprovalResult(BaseModel):
    """``data.writ.approval.result``, checked for shape.

        verdict = policy_result(engine, plan, verified_approvals(plan, envelopes, trust, now=now), now)
        verdict.satisfied, verdict.counted, verdict.missing.approvals     # False ('bob',) 1
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    satisfied: bool
    rejected: bool
    expired: bool
    counted: tuple[str, ...]
    missing: PolicyMissing
    ignored: tuple[PolicyIgnored, ...]
    violations: tuple[PolicyViolation, ...]


def _plan_doc(plan: Plan) -> dict[str, Any]:
    signable = plan.signable()
    return {
        "id": plan.id,
        "planner": plan.planner,
        "created_at": signable["created_at"],
        "expires_at": signable["expires_at"],
        "steps": [{"server": s.server, "tool": s.tool} for s in plan.steps],
    }


def policy_input(plan: Plan, approvals: Sequence[VerifiedApproval], now: datetime) -> dict[str, Any]:
    """The input document of ``writ.approval`` (see ``policies/writ/approval.rego``)."""
    return {"plan": _plan_doc(plan), "approvals": [a.to_input() for a in approvals], "now": iso(aware(now, "'now'"))}


def _evaluate(engine: PolicyEvaluator, path: str, doc: dict[str, Any], plan: Plan) -> Any:
    try:
        return engine.evaluate(path, doc)
    except WritError as e:
        raise ApprovalPolicyError(
            f"cannot evaluate data.{path} for plan {short_plan_id(plan.id)} ({e.code}: {e.message}); "
            "no policy answer, no approval (fail closed)"
        ) from None


def _shape_error(path: str, plan: Plan, e: ValidationError) -> ApprovalPolicyError:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(root)"
    return ApprovalPolicyError(
        f"data.{path} for plan {short_plan_id(plan.id)} has the wrong shape ({loc}: {err['msg']}); "
        "fix the approval policy; until then nothing is approved (fail closed)"
    )


def requirement_for(engine: PolicyEvaluator, plan: Plan, now: datetime) -> ApprovalRequirement:
    """What approval ``plan`` needs, according to the policy. ``ApprovalPolicyError`` if it cannot say."""
    raw = _evaluate(engine, REQUIREMENT_PATH, policy_input(plan, [], now), plan)
    try:
        return ApprovalRequirement.model_validate(raw)
    except ValidationError as e:
        raise _shape_error(REQUIREMENT_PATH, plan, e) from None


def retry_allowed(engine: PolicyEvaluator, plan: Plan, step_index: int, attempt: int, now: datetime, *,
                  raise_errors: bool = False) -> bool:
    """May step ``step_index``, failed after ``attempt`` claims, be claimed again? Only a policy ``true`` says yes.

    Any failure of the policy is a no (fail closed: the plan fails with its step); with
    ``raise_errors``, the engine's error is raised instead, so a claim is refused for it without
    the plan being failed on the word of a policy that did not answer.
    """
    doc = {"plan": _plan_doc(plan), "step_index": step_index, "attempt": attempt, "now": iso(aware(now, "'now'"))}
    try:
        return engine.evaluate(RETRY_PATH, doc) is True
    except WritError:
        if raise_errors:
            raise
        return False


def policy_result(
    engine: PolicyEvaluator, plan: Plan, approvals: Sequence[VerifiedApproval], now: datetime
) -> PolicyApprovalResult:
    """The policy's verdict on the verified approvals; ``ignored[].index`` refers to the envelope list."""
    raw = _evaluate(engine, RESULT_PATH, policy_input(plan, approvals, now), plan)
    try:
        result = PolicyApprovalResult.model_validate(raw)
    except ValidationError as e:
        raise _shape_error(RESULT_PATH, plan, e) from None
    positions = [a.index for a in approvals]
    ignored = []
    for item in result.ignored:
        if not 0 <= item.index < len(positions):
            raise ApprovalPolicyError(
                f"data.{RESULT_PATH} for plan {short_plan_id(plan.id)} ignores approval {item.index}, "
                f"but was given {len(positions)}; fix the approval policy (fail closed)"
            )
        ignored.append(item.model_copy(update={"index": positions[item.index]}))
    return result.model_copy(update={"ignored": tuple(ignored)})


def _signer(env: dsse.Envelope, trust: TrustSet) -> TrustedKey | None:
    """The trusted key whose signature verifies, as ``writ.plans.verify`` finds it.

    Approver keys first (any of them, whatever the key id says); failing that, the
    key of another role that the signature's key id names, if it really signed.
    """
    approvers: dict[str, PublicKey] = {kid: tk.public_key for kid, tk in trust.keys_for("approver").items()}
    accepted = dsse.accepted_keys(env, approvers)
    if accepted:
        return trust.key(next(iter(accepted)))
    for s in env.signatures:
        tk = trust.key(s.keyid)
        if tk is not None and dsse.accepted_keys(env, {tk.key_id: tk.public_key}):
            return tk
    return None


def verified_approvals(
    plan: Plan,
    envelopes: Sequence[dsse.Envelope | bytes],
    trust: TrustSet,
    *,
    now: datetime,
    limits: PlanLimits | None = None,
) -> list[VerifiedApproval]:
    """The approvals that pass the cryptographic checks, as policy facts, in envelope order.

    Left out, as ``evaluate_approvals`` ignores them: beyond ``max_approvals``, not an
    envelope of one in-toto statement with one signature, signed by no trusted key,
    a statement that does not parse, or naming another approver than its signer.
    (One corner differs in wording only: a key of another role signing a statement
    that does not parse is ``not_an_approver`` to the verifier and left out here;
    it counts for neither.)
    """
    limits = limits or PlanLimits()
    found = (_verified_one(i, item, trust, now, limits) for i, item in enumerate(envelopes[: limits.max_approvals]))
    return [v for v in found if v is not None]


def _verified_one(
    index: int, item: dsse.Envelope | bytes, trust: TrustSet, now: datetime, limits: PlanLimits
) -> VerifiedApproval | None:
    try:
        env = (
            item
            if isinstance(item, dsse.Envelope)
            else dsse.Envelope.from_json(item, max_bytes=limits.max_envelope_bytes, max_signatures=limits.max_signatures)
        )
    except WritError:
        return None
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE or len(env.signatures) != 1:
        return None
    tk = _signer(env, trust)
    if tk is None:
        return None
    try:
        statement = ApprovalStatement.from_payload(env.payload, limits)
    except WritError:
        return None
    p = statement.predicate
    if tk.role == "approver" and p.approver != tk.principal:
        return None  # foreign_key: the verifier's reason alone
    return VerifiedApproval(
        index=index,
        approver=tk.principal,
        role=tk.role,
        groups=tuple(sorted(trust.groups_of(tk.principal))),
        decision=p.decision,
        plan_id=statement.plan_id,
        at=p.at,
        key_id=tk.key_id,
        key_valid=tk.invalid_reason(now) is None,
    )


def disagreements(result: ApprovalResult, verdict: PolicyApprovalResult) -> list[str]:
    """Where the verifier's count and the policy's differ (empty when they agree on everything).

    Compared: satisfied, rejected, expired, who counted, what is missing, and why each
    approval the policy saw was ignored (reasons only the verifier can find are left out).
    """
    out: list[str] = []

    def differ(what: str, verifier: object, policy: object) -> None:
        if verifier != policy:
            out.append(f"{what}: verifier {verifier}, policy {policy}")

    differ("satisfied", result.approved, verdict.satisfied)
    differ("rejected", result.rejected, verdict.rejected)
    differ("expired", result.expired, verdict.expired)
    differ("counted", sorted(result.approvers), sorted(verdict.counted))
    differ("missing approvals", result.missing_approvals, verdict.missing.approvals)
    differ("missing groups", sorted(result.missing_groups), sorted(verdict.missing.groups))
    python_ignored = {i.index: i.reason.value for i in result.ignored if i.reason not in PYTHON_ONLY_REASONS}
    policy_ignored = {i.index: i.reason for i in verdict.ignored}
    differ("ignored", dict(sorted(python_ignored.items())), dict(sorted(policy_ignored.items())))
    return out


@dataclass(frozen=True)
class Assessment:
    """Approvals counted twice, by the verifier and by the policy (ADR 0008).

    ``result.approved`` already includes the gate: when the verifier approves and the
    policy does not, a violation saying so is added, so ``approved`` is false.
    """

    result: ApprovalResult
    policy: PolicyApprovalResult
    disagreements: tuple[str, ...]
    verifier_approved: bool  # the verifier's own verdict, before the gate

    @property
    def approved(self) -> bool:
        return self.result.approved and self.policy.satisfied


def assess(
    engine: PolicyEvaluator,
    plan: Plan,
    envelopes: Sequence[dsse.Envelope | bytes],
    trust: TrustSet,
    *,
    now: datetime,
    limits: PlanLimits | None = None,
) -> Assessment:
    """Count ``envelopes`` for ``plan`` now: requirement from the policy, then the verifier, then the policy."""
    requirement = requirement_for(engine, plan, now)
    result = evaluate_approvals(plan, envelopes, trust, now=now, requirement=requirement, limits=limits)
    verdict = policy_result(engine, plan, verified_approvals(plan, envelopes, trust, now=now, limits=limits), now)
    differ = tuple(disagreements(result, verdict))
    verifier_approved = result.approved
    if result.approved and not verdict.satisfied:
        reason = "; ".join(differ) or "policy not satisfied"
        result = result.model_copy(
            update={
                "violations": (
                    *result.violations,
                    f"is approved by the verifier but not by the writ.approval policy ({reason}): denied",
                )
            }
        )
    return Assessment(result, verdict, differ, verifier_approved)
