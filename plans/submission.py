"""The submit and approve side of the plan store: a signed plan comes in, approvals count, the state moves.

    plans = PlanStore(db, trust_store, engine, audit=AuditLog(db))   # PlanStore includes PlanSubmission
    record = plans.submit(envelope_bytes)            # planner signature checked; proposed -> pending
    result = plans.add_approval(record.id, approval_bytes)   # stored once; pending -> approved when satisfied
    result.approved, result.summary()                # True  'plan sha256:3f2a9c0d41be.. has 2/2 approvals'
    plans.evaluate(record.id)                        # count again now; expire or reject when due

A plan is stored only if a trusted planner key of the plan's own planner signed it,
it is not dated ahead of this host's clock (``CLOCK_SKEW``), it has not expired, and it
stays valid no longer than the approval policy allows
(``writ.plans.verify.check_ttl``). An approval is stored only if it would count now:
anything the verifier would ignore is refused with ``approval_<reason>``. Every refused
approval or rejection is audited (``approval_refused``: the code, the reason, the digest
of what was sent and, when a trusted key verified it, who signed it; ADR 0009).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from writ.engine.core import reasons
from writ.engine.core.errors import (
    ApprovalRefused,
    ConflictError,
    EnvelopeError,
    InputError,
    PlanExpired,
    StoreError,
    WritError,
)
from writ.engine.core.timeutil import db_time, iso
from writ.plans import dsse
from writ.plans.approval_result import ApprovalRequirement, ApprovalResult, CountedDecision, IgnoredApproval
from writ.plans.assessment import requirement_for
from writ.plans.canonical import sha256_digest
from writ.plans.lifecycle import PlanEvent, PlanState
from writ.plans.models import Plan, short_plan_id
from writ.plans.records import APPROVALS, PLANS, ApprovalRecord, PlanRecord
from writ.plans.store_base import PlanStoreBase, now_or_utc
from writ.plans.trust import TrustSet
from writ.plans.verify import check_ttl, evaluate_approvals, verify_plan_envelope

__all__ = ["CLOCK_SKEW", "PlanSubmission"]

CLOCK_SKEW = timedelta(minutes=5)
"""How far a submitted plan's ``created_at`` may be ahead of this host's clock (the signer's may run fast)."""


class PlanSubmission(PlanStoreBase):
    """Submit signed plans and take their approvals; ``PlanStore`` is this and ``PlanExecution`` in one.

        record = plans.submit(sign_plan(plan, alice_key).to_json())
        plans.add_approval(record.id, sign_approval(record.id, bob_key, approver="bob").to_json())
    """

    # -- submit ---------------------------------------------------------------------------------

    def submit(self, envelope: bytes | dsse.Envelope, *, now: datetime | None = None) -> PlanRecord:
        """Verify a planner-signed plan envelope, store its exact bytes, and make it pending.

        Submitting the same bytes again returns the stored plan; other bytes for a stored
        plan id (re-signed, re-encoded) are a ``ConflictError``.
        """
        now = now_or_utc(now)
        raw = _as_bytes(envelope)
        trust = self.trust.trust_set()
        plan, requirement = self._check_submission(raw, trust, now)
        new = self._insert_plan(plan, raw, now)
        if new is None:  # stored before, by us or by another process
            stored = self.get(plan.id)
            if stored.envelope != raw:
                raise ConflictError(
                    f"plan {short_plan_id(plan.id)} is already stored with a different envelope "
                    "(signed or encoded differently); the first one stands",
                    code=reasons.PLAN_EXISTS,
                )
            return stored
        self._plan_event(plan.id, PlanEvent.SUBMIT, PlanState.PROPOSED, new, now, {
            "planner": plan.planner,
            "key_id": _planner_key(raw, plan, trust),
            "title": plan.title,
            "steps": len(plan.steps),
            "expires_at": iso(plan.expires_at),
            "envelope_digest": sha256_digest(raw),
            "requirement": requirement.model_dump(mode="json"),
        })
        return self.get(plan.id)

    def _check_submission(self, raw: bytes, trust: TrustSet, now: datetime) -> tuple[Plan, ApprovalRequirement]:
        """The verified plan and what the policy requires of it; a typed error for the first failed check."""
        # 1. within the size limit, before anything is parsed
        if len(raw) > self.limits.max_envelope_bytes:
            raise InputError(
                f"plan envelope is {len(raw)} bytes, the limit is {self.limits.max_envelope_bytes} "
                "(max_envelope_bytes)",
                code=reasons.INPUT_TOO_LARGE,
            )
        # 2. signed by the plan's own planner with a valid key, and within PlanLimits
        plan = verify_plan_envelope(raw, trust, now=now, limits=self.limits)
        # 3. not dated ahead: the policy's TTL counts from created_at, so a plan dated a month ahead
        #    with a 1 h TTL would wait for approvals, and run, for a month
        if plan.created_at > now + CLOCK_SKEW:
            raise InputError(
                f"plan {short_plan_id(plan.id)} is dated {iso(plan.created_at)}, ahead of this host's clock "
                f"({iso(now)}) by more than {CLOCK_SKEW.total_seconds():g} s: a plan is valid from when it is "
                "signed; sign it again (`writ plan sign` dates it now) or fix the signer's clock",
                code=reasons.PLAN_INVALID,
            )
        # 4. not expired
        if plan.is_expired(now):
            raise PlanExpired(
                f"plan {short_plan_id(plan.id)} expired at {iso(plan.expires_at)}; sign it again with a later "
                "expires_at"
            )
        # 5. valid no longer than the approval policy allows
        requirement = requirement_for(self.policy, plan, now)
        check_ttl(plan, requirement)
        return plan, requirement

    def _insert_plan(self, plan: Plan, raw: bytes, now: datetime) -> PlanState | None:
        """Store the plan and make it pending; None if a plan with its id was stored before."""
        stamp = db_time(now)
        row = {
            "id": plan.id,
            "planner": plan.planner,
            "title": plan.title,
            "state": PlanState.PROPOSED.value,
            "envelope": raw,
            "executor": None,
            "created_at": db_time(plan.created_at),
            "expires_at": db_time(plan.expires_at),
            "submitted_at": stamp,
            "updated_at": stamp,
        }
        try:
            with (
                self._db(f"store plan {short_plan_id(plan.id)}"),
                self._store.connect(write=True) as conn,
                conn.begin(),
            ):
                if conn.execute(select(PLANS.c.id).where(PLANS.c.id == plan.id)).first() is not None:
                    return None
                conn.execute(insert(PLANS).values(**row))
                return self._set_state(conn, plan.id, PlanState.PROPOSED, PlanEvent.SUBMIT, now)
        except StoreError as e:
            if not isinstance(e.__cause__, IntegrityError):
                raise
            return None  # another process stored it between our read and our insert

    # -- approvals ------------------------------------------------------------------------------

    def add_approval(
        self,
        plan_id: str,
        envelope: bytes | dsse.Envelope,
        *,
        now: datetime | None = None,
        via: Mapping[str, str] | None = None,
    ) -> ApprovalResult:
        """Store one signed approval or rejection of a pending plan, then ``evaluate`` the plan.

        Refused (``ApprovalRefused``, code ``approval_<reason>``): anything that would not
        count now, for any ``IgnoreReason``: garbage, a bad or untrusted signature, another
        plan's digest, the planner's own, a revoked key, outside the required groups, or a
        second decision by the same approver (the first stands; ADR 0008). The same
        envelope submitted again is stored once. ``via``: where the decision came from (the
        approval workflow's ``workflow_id`` and ``run_id``), recorded in its audit entry.
        """
        now = now_or_utc(now)
        raw = _as_bytes(envelope)
        refused: dict[str, object] = {"plan_id": plan_id, "envelope_sha256": sha256_digest(raw),
                                      "received_at": db_time(now), **(via or {})}
        try:
            envelope_digest = self._approval_digest(raw)
            found = self._counted_decision(plan_id, raw, envelope_digest, now, refused)
        except WritError as e:
            self._audit_refusal("approval_refused", {**refused, "code": e.code, "reason": e.message})
            raise
        if found is None:
            return self.evaluate(plan_id, now=now)  # the same envelope, stored and audited before
        counted, stored_before = found
        if not stored_before and not self._insert_approval(counted, plan_id, raw, envelope_digest, now):
            return self.evaluate(plan_id, now=now)  # another process stored it first (and audits it)
        # Stored, not counted yet: it counts once its entry is written (an AuditError here leaves it
        # uncounted; the same envelope submitted again, as the workflow's retried activity does, completes it).
        self._audit.append(
            "approval",
            {
                "plan_id": plan_id,
                "approver": counted.principal,
                "key_id": counted.key_id,
                "decision": counted.decision,
                "at": iso(counted.at),
                "envelope_digest": envelope_digest,
                "received_at": db_time(now),
                **(via or {}),
            },
        )
        self._mark_audited(plan_id, envelope_digest, now)
        return self.evaluate(plan_id, now=now)

    def _counted_decision(
        self, plan_id: str, raw: bytes, envelope_digest: str, now: datetime, refused: dict[str, object]
    ) -> tuple[CountedDecision, bool] | None:
        """The decision ``raw`` carries if it counts, and whether it is stored already (not yet audited).

        None if this very envelope is stored and audited already. ``ApprovalRefused`` if it does not
        count (who signed it, when a trusted key did, goes into ``refused``).
        """
        record = self.get(plan_id)
        stored = self.approvals(plan_id, unaudited=True)
        same = next((a for a in stored if a.envelope_digest == envelope_digest), None)
        if same is not None and same.audited:
            return None
        # counted after the audited ones only: a decision whose entry was never written is inert
        checked = self._check_approval(record, [a for a in stored if a.audited], raw, now)
        if isinstance(checked, IgnoredApproval):
            refused.update(approver=checked.principal, key_id=checked.key_id)
            raise ApprovalRefused(
                f"approval of plan {short_plan_id(plan_id)} refused ({checked.reason.value}): {checked.detail}",
                code=f"approval_{checked.reason.value}",
            )
        return checked, same is not None

    def _approval_digest(self, raw: bytes) -> str:
        """The digest that identifies an approval envelope: re-encodings of one envelope are one approval."""
        try:
            env = dsse.Envelope.from_json(
                raw, max_bytes=self.limits.max_envelope_bytes, max_signatures=self.limits.max_signatures
            )
        except EnvelopeError as e:
            raise ApprovalRefused(
                f"approval is not a valid envelope: {e.message}", code=reasons.APPROVAL_MALFORMED
            ) from None
        return sha256_digest(env.to_json())

    def _check_approval(
        self, record: PlanRecord, stored: list[ApprovalRecord], raw: bytes, now: datetime
    ) -> CountedDecision | IgnoredApproval:
        """The decision ``raw`` carries if it counts now, after the ones stored, or why it does not count.

        A typed error when the plan takes no decisions (not pending, expired, no longer verifies).
        """
        pid = short_plan_id(record.id)
        # 1. the plan still takes decisions
        if record.state is not PlanState.PENDING:
            raise ConflictError(
                f"plan {pid} is {record.state.value}: approvals and rejections are taken only "
                "while a plan is pending (to stop an approved plan, abort it)",
                code=reasons.PLAN_NOT_PENDING,
            )
        # 2. the stored plan still verifies, and has not expired
        trust = self.trust.trust_set()
        plan = self.verified_plan(record, trust, now)
        if plan.is_expired(now):
            self.evaluate(record.id, now=now)
            raise PlanExpired(f"plan {pid} expired at {iso(plan.expires_at)}")
        # 3. the new envelope counts, after the stored ones, under the requirement the policy gives now
        requirement = requirement_for(self.policy, plan, now)
        envelopes = [a.envelope for a in stored] + [raw]
        result = evaluate_approvals(plan, envelopes, trust, now=now, requirement=requirement, limits=self.limits)
        index = len(stored)
        ignored = [i for i in result.ignored if i.index == index]
        if ignored:
            return ignored[0]
        return next(c for c in (*result.approvals, *result.rejections) if c.index == index)

    def _insert_approval(
        self, counted: CountedDecision, plan_id: str, raw: bytes, envelope_digest: str, now: datetime
    ) -> bool:
        """Store a counted decision; False if the same envelope was stored first."""
        with self._db(f"store an approval of {short_plan_id(plan_id)}"), self._store.connect(write=True) as conn:
            try:
                with conn.begin():
                    conn.execute(
                        insert(APPROVALS).values(
                            plan_id=plan_id,
                            approver=counted.principal,
                            key_id=counted.key_id,
                            decision=counted.decision,
                            envelope=raw,
                            envelope_digest=envelope_digest,
                            received_at=db_time(now),
                        )
                    )
            except IntegrityError:
                return False
        return True

    def _mark_audited(self, plan_id: str, envelope_digest: str, now: datetime) -> None:
        """The stored decision's ``approval`` entry is written: from now on it counts."""
        with self._db(f"record the audit of an approval of {short_plan_id(plan_id)}"), \
                self._store.connect(write=True) as conn, conn.begin():
            conn.execute(update(APPROVALS).where(APPROVALS.c.plan_id == plan_id,
                                                 APPROVALS.c.envelope_digest == envelope_digest)
                         .values(audited_at=db_time(now)))

    def evaluate(self, plan_id: str, *, now: datetime | None = None) -> ApprovalResult:
        """Count the approvals now (verifier and policy) and move a pending plan on.

        pending -> approved when both say satisfied; -> rejected when both count a
        rejection; proposed/pending/approved -> expired once it expired. A disagreement
        is logged (``plan_event`` ``approval_disagreement``) and denies: the result's
        ``approved`` is then false, with the reason among its ``violations``.
        """
        now = now_or_utc(now)
        status = self.status(plan_id, now=now)
        self._log_disagreement(status)
        record, result, verdict = status.record, status.result, status.policy
        state = record.state
        target: tuple[PlanEvent, PlanState] | None = None
        if (result.expired or verdict.expired) and state in (PlanState.PROPOSED, PlanState.PENDING,
                                                             PlanState.APPROVED):
            target = (PlanEvent.EXPIRE, PlanState.EXPIRED)
        elif state is PlanState.PENDING and result.rejected and verdict.rejected:
            target = (PlanEvent.REJECT, PlanState.REJECTED)
        elif state is PlanState.PENDING and result.approved and verdict.satisfied:
            target = (PlanEvent.APPROVE, PlanState.APPROVED)
        if target is not None:
            event, goal = target
            extra = {
                "approvers": list(result.approvers),
                "rejected_by": [r.principal for r in result.rejections],
                "requirement": result.requirement.model_dump(mode="json"),
            }
            try:
                self._move(plan_id, state, event, now, extra)
            except ConflictError:
                if self.get(plan_id).state is not goal:  # another process got there first: same outcome
                    raise
        return result


def _as_bytes(envelope: bytes | dsse.Envelope) -> bytes:
    if isinstance(envelope, dsse.Envelope):
        return envelope.to_json()
    if not isinstance(envelope, (bytes, bytearray, memoryview)):
        raise InputError(f"an envelope is JSON bytes, got {type(envelope).__name__}", code=reasons.ENVELOPE_INVALID)
    return bytes(envelope)


def _planner_key(raw: bytes, plan: Plan, trust: TrustSet) -> str | None:
    """The id of the planner's trusted key that signed the envelope (for the audit log)."""
    try:
        env = dsse.Envelope.from_json(raw)
    except WritError:
        return None
    keys = {kid: tk.public_key for kid, tk in trust.keys_for("planner", plan.planner).items()}
    accepted = dsse.accepted_keys(env, keys)
    return next(iter(accepted), None)
