"""The plan store: signed plans, their approvals and exactly-once step claims, in Writ's database.

    plans = PlanStore(db, trust_store, engine, audit=AuditLog(db))          # engine: evaluates the writ.approval policy
    record = plans.submit(envelope_bytes)                  # planner signature checked; proposed -> pending
    plans.add_approval(record.id, approval_bytes)          # stored once; pending -> approved when satisfied
    plans.begin(record.id, "exec-bot")                     # re-verifies everything; approved -> executing
    claim = plans.claim_step(record.id, 0, "exec-bot", server="fs", tool="write_file",
                             definition_digest=d, args={"path": "/repo/a.py", "content": "..."})
    plans.record_result(record.id, 0, result_digest, "succeeded")
    plans.finish(record.id, "completed")
    plans.claim_step(record.id, 0, ...)    # StepAlreadyClaimed: step 0 of plan sha256:ab.. was already claimed by ...

What is trusted, and what is checked again:

- The stored envelope is kept byte for byte as received, and every decision that
  matters (``begin``, each ``claim_step``) verifies it again against the trust
  store: a plans row edited in the database, or a planner key revoked since, stops
  the plan. ``begin`` re-counts the approvals with ``require_approved`` under the
  requirement the policy gives *now*, and asks the policy as well; both must say
  yes (ADR 0008). The stored state is a gate, never the proof.
- A step runs at most once because the database says so: the claim is an INSERT
  under ``UNIQUE (plan_id, step_index)``, and the loser of a race gets
  ``StepAlreadyClaimed``. No Python lock is involved, so this holds across
  processes and gateway replicas on PostgreSQL.
- Every state change goes through ``writ.plans.lifecycle.transition`` and an
  ``UPDATE ... WHERE state = <old>``: if another process moved the plan first,
  ``ConflictError(plan_state_conflict)``.
- Every plan event, approval, claim and result is appended to the audit log
  (kinds ``plan_event``, ``approval``, ``step_claim``, ``step_result``), after the
  database change commits. If the append fails the caller gets ``AuditError``: a
  claim then stays taken and the step must not run (fail closed).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from writ.engine.core import reasons
from writ.engine.core.db import Database, db_errors
from writ.engine.core.errors import (
    ApprovalError,
    ApprovalRefused,
    ClaimRefused,
    ConflictError,
    EnvelopeError,
    InputError,
    NotFoundError,
    PermissionDenied,
    StepAlreadyClaimed,
    StoreError,
    VerificationError,
    WritError,
)
from writ.engine.core.ports import AuditSink
from writ.engine.core.tables import ApprovalRow, PlanRow, StepClaimRow
from writ.plans import dsse
from writ.plans.assessment import PolicyApprovalResult, PolicyEvaluator, assess, requirement_for
from writ.plans.canonical import digest, sha256_digest
from writ.plans.lifecycle import PlanEvent, PlanState, transition
from writ.plans.matching import matches
from writ.plans.models import DIGEST_PATTERN, Plan, PlanLimits
from writ.plans.statements import ApprovalStatement
from writ.plans.trust import TrustSet
from writ.plans.trust_store import TrustStore, db_time, from_db_time
from writ.plans.verify import (
    ApprovalResult,
    CountedDecision,
    evaluate_approvals,
    require_approved,
    short_plan_id,
    verify_plan_envelope,
)

__all__ = [
    "ApprovalRecord",
    "ClaimRecord",
    "FinishOutcome",
    "PlanRecord",
    "PlanStatus",
    "PlanStore",
    "StepOutcome",
]

log = logging.getLogger(__name__)

StepOutcome = Literal["succeeded", "failed"]
FinishOutcome = Literal["completed", "failed", "aborted"]
_FINISH_EVENTS: dict[str, PlanEvent] = {
    "completed": PlanEvent.COMPLETE,
    "failed": PlanEvent.FAIL,
    "aborted": PlanEvent.ABORT,
}
_HEX = re.compile(r"^[0-9a-f]+$")
MIN_PREFIX = 4


@dataclass(frozen=True)
class PlanRecord:
    """A stored plan as the database has it. ``envelope`` is unverified: ``PlanStore`` verifies on use."""

    id: str
    planner: str
    title: str
    state: PlanState
    executor: str | None
    created_at: datetime
    expires_at: datetime
    submitted_at: datetime
    updated_at: datetime
    envelope: bytes

    def unverified_plan(self, limits: PlanLimits | None = None) -> Plan:
        """The plan in the stored envelope, parsed but NOT verified: for display only."""
        env = dsse.Envelope.from_json(self.envelope, max_bytes=(limits or PlanLimits()).max_envelope_bytes)
        return Plan.from_payload(env.payload, limits)


@dataclass(frozen=True)
class ApprovalRecord:
    seq: int
    plan_id: str
    approver: str
    key_id: str
    decision: str
    envelope: bytes
    envelope_digest: str
    received_at: datetime

    def comment(self) -> str:
        """The statement's comment (unverified: for display)."""
        try:
            env = dsse.Envelope.from_json(self.envelope)
            return ApprovalStatement.from_payload(env.payload).predicate.comment
        except WritError:
            return ""


@dataclass(frozen=True)
class ClaimRecord:
    plan_id: str
    step_index: int
    executor: str
    claimed_at: datetime
    args_digest: str
    result_digest: str | None
    outcome: str | None
    finished_at: datetime | None


@dataclass(frozen=True)
class PlanStatus:
    """A stored plan, verified now: the verifier's count, the policy's, and where they differ."""

    record: PlanRecord
    plan: Plan
    result: ApprovalResult  # the gate folded in: ``approved`` only if the policy agrees
    policy: PolicyApprovalResult
    disagreements: tuple[str, ...]
    verifier_approved: bool


def _plan_record(row: Any) -> PlanRecord:
    return PlanRecord(
        id=row.id,
        planner=row.planner,
        title=row.title,
        state=PlanState(row.state),
        executor=row.executor,
        created_at=from_db_time(row.created_at),
        expires_at=from_db_time(row.expires_at),
        submitted_at=from_db_time(row.submitted_at),
        updated_at=from_db_time(row.updated_at),
        envelope=bytes(row.envelope),
    )


def _approval_record(row: Any) -> ApprovalRecord:
    return ApprovalRecord(
        seq=row.seq,
        plan_id=row.plan_id,
        approver=row.approver,
        key_id=row.key_id,
        decision=row.decision,
        envelope=bytes(row.envelope),
        envelope_digest=row.envelope_digest,
        received_at=from_db_time(row.received_at),
    )


def _claim_record(row: Any) -> ClaimRecord:
    return ClaimRecord(
        plan_id=row.plan_id,
        step_index=row.step_index,
        executor=row.executor,
        claimed_at=from_db_time(row.claimed_at),
        args_digest=row.args_digest,
        result_digest=row.result_digest,
        outcome=row.outcome,
        finished_at=from_db_time(row.finished_at) if row.finished_at else None,
    )


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise InputError("'now' must be a timezone-aware datetime", code=reasons.INPUT_INVALID)
    return now


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_bytes(envelope: bytes | dsse.Envelope) -> bytes:
    if isinstance(envelope, dsse.Envelope):
        return envelope.to_json()
    if not isinstance(envelope, (bytes, bytearray, memoryview)):
        raise InputError(f"an envelope is JSON bytes, got {type(envelope).__name__}", code=reasons.ENVELOPE_INVALID)
    return bytes(envelope)


_P = PlanRow.__table__  # type: ignore[attr-defined]
_A = ApprovalRow.__table__  # type: ignore[attr-defined]
_C = StepClaimRow.__table__  # type: ignore[attr-defined]


class PlanStore:
    """Plans in a ``Database``, verified against a ``TrustStore``, approved under a policy. Process-safe."""

    def __init__(
        self,
        store: Database,
        trust: TrustStore,
        policy: PolicyEvaluator,
        *,
        limits: PlanLimits | None = None,
        audit: AuditSink,
    ) -> None:
        self._store = store
        self.trust = trust
        self._policy = policy
        self.limits = limits or PlanLimits()
        self._audit = audit

    # -- reading --------------------------------------------------------------------------------

    def _db(self, what: str) -> AbstractContextManager[None]:
        return db_errors(self._store, what)

    def resolve(self, ref: str) -> str:
        """A plan id from a full id (``sha256:<64 hex>``) or a unique prefix of its hex (4 digits or more)."""
        hex_part = ref.strip().lower().removeprefix("sha256:")
        if len(hex_part) < MIN_PREFIX or not _HEX.match(hex_part):
            raise InputError(
                f"plan {ref!r} is neither sha256:<64 hex> nor a prefix of at least {MIN_PREFIX} hex digits",
                code=reasons.PLAN_ID_INVALID,
            )
        with self._db("find a plan"), self._store.connect() as conn:
            ids = list(
                conn.execute(select(_P.c.id).where(_P.c.id.startswith("sha256:" + hex_part)).limit(6)).scalars()
            )
        if not ids:
            raise NotFoundError(f"no plan {ref!r} (see `writ plan list`)", code=reasons.PLAN_NOT_FOUND)
        if len(ids) > 1:
            shown = ", ".join(short_plan_id(i) for i in ids[:5])
            raise InputError(f"plan prefix {ref!r} names more than one plan ({shown}); give more digits",
                             code=reasons.PLAN_AMBIGUOUS)
        return str(ids[0])

    def get(self, plan_id: str) -> PlanRecord:
        with self._db(f"read plan {short_plan_id(plan_id)}"), self._store.connect() as conn:
            row = conn.execute(select(_P).where(_P.c.id == plan_id)).first()
        if row is None:
            raise NotFoundError(f"no plan {plan_id} (see `writ plan list`)", code=reasons.PLAN_NOT_FOUND)
        return _plan_record(row)

    def list_plans(self, state: PlanState | str | None = None) -> list[PlanRecord]:
        query = select(_P).order_by(_P.c.submitted_at, _P.c.id)
        if state is not None:
            try:
                query = query.where(_P.c.state == PlanState(state).value)
            except ValueError:
                raise InputError(
                    f"plan state {state!r} is not one of {', '.join(s.value for s in PlanState)}",
                    code=reasons.INPUT_INVALID,
                ) from None
        with self._db("list plans"), self._store.connect() as conn:
            rows = conn.execute(query).all()
        return [_plan_record(r) for r in rows]

    def approvals(self, plan_id: str) -> list[ApprovalRecord]:
        """Stored approvals and rejections, in the order received (the order they are counted in)."""
        with self._db(f"read the approvals of {short_plan_id(plan_id)}"), self._store.connect() as conn:
            rows = conn.execute(select(_A).where(_A.c.plan_id == plan_id).order_by(_A.c.seq)).all()
        return [_approval_record(r) for r in rows]

    def claims(self, plan_id: str) -> list[ClaimRecord]:
        with self._db(f"read the step claims of {short_plan_id(plan_id)}"), self._store.connect() as conn:
            rows = conn.execute(select(_C).where(_C.c.plan_id == plan_id).order_by(_C.c.step_index)).all()
        return [_claim_record(r) for r in rows]

    def _claim(self, plan_id: str, step_index: int) -> ClaimRecord | None:
        with self._db("read a step claim"), self._store.connect() as conn:
            row = conn.execute(
                select(_C).where(_C.c.plan_id == plan_id, _C.c.step_index == step_index)
            ).first()
        return _claim_record(row) if row is not None else None

    # -- verification ---------------------------------------------------------------------------

    def verified_plan(self, record: PlanRecord, trust: TrustSet, now: datetime) -> Plan:
        """The stored envelope verified against ``trust`` at ``now``; it must still be the plan the row is about."""
        plan = verify_plan_envelope(record.envelope, trust, now=now, limits=self.limits)
        if plan.id != record.id or plan.planner != record.planner:
            raise VerificationError(
                f"stored plan {short_plan_id(record.id)} holds the envelope of plan {short_plan_id(plan.id)} "
                f"by {plan.planner!r}: its row was changed outside Writ",
                code=reasons.PLAN_TAMPERED,
            )
        return plan

    def status(self, plan_id: str, *, now: datetime | None = None) -> PlanStatus:
        """Verify a stored plan and count its approvals now, by the verifier and by the policy. Changes nothing.

        Raises what verification raises (``SignatureError``, ``VerificationError``) when the
        plan itself no longer verifies.
        """
        now = _now(now)
        record = self.get(plan_id)
        trust = self.trust.trust_set()
        plan = self.verified_plan(record, trust, now)
        envelopes = [a.envelope for a in self.approvals(plan_id)]
        return self._assess(record, plan, envelopes, trust, now)

    def _assess(
        self, record: PlanRecord, plan: Plan, envelopes: Sequence[bytes], trust: TrustSet, now: datetime
    ) -> PlanStatus:
        a = assess(self._policy, plan, envelopes, trust, now=now, limits=self.limits)
        return PlanStatus(record, plan, a.result, a.policy, a.disagreements, a.verifier_approved)

    def _log_disagreement(self, status: PlanStatus) -> None:
        if not status.disagreements:
            return
        log.warning("approval count differs for plan %s: %s", status.record.id, "; ".join(status.disagreements))
        self._audit.append(
            "plan_event",
            {
                "plan_id": status.record.id,
                "event": "approval_disagreement",
                "differences": list(status.disagreements),
                "verifier_approved": status.verifier_approved,
                "policy_satisfied": status.policy.satisfied,
            },
        )

    # -- state changes --------------------------------------------------------------------------

    def _set_state(
        self, conn: Connection, plan_id: str, old: PlanState, event: PlanEvent, now: datetime, **values: Any
    ) -> PlanState:
        """``UPDATE plans SET state = new WHERE id = ? AND state = old`` in ``conn``'s transaction."""
        new = transition(old, event)
        done = conn.execute(
            update(_P)
            .where(_P.c.id == plan_id, _P.c.state == old.value)
            .values(state=new.value, updated_at=db_time(now), **values)
        )
        if done.rowcount != 1:
            current = conn.execute(select(_P.c.state).where(_P.c.id == plan_id)).scalar()
            raise ConflictError(
                f"plan {short_plan_id(plan_id)} is {current or 'gone'}, not {old.value}: another process "
                f"changed it first (wanted to {event.value}); reload it and try again",
                code=reasons.PLAN_STATE_CONFLICT,
            )
        return new

    def _move(
        self, plan_id: str, old: PlanState, event: PlanEvent, now: datetime, audit: Mapping[str, Any] | None = None,
        **values: Any,
    ) -> PlanState:
        with self._db(f"update plan {short_plan_id(plan_id)}"), self._store.connect(write=True) as conn, conn.begin():
            new = self._set_state(conn, plan_id, old, event, now, **values)
        self._plan_event(plan_id, event, old, new, now, audit)
        return new

    def _plan_event(
        self,
        plan_id: str,
        event: PlanEvent | str,
        old: PlanState | None,
        new: PlanState | None,
        now: datetime,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        payload: dict[str, Any] = {
            "plan_id": plan_id,
            "event": str(event),
            "from": old.value if old else None,
            "to": new.value if new else None,
            "at": db_time(now),
        }
        payload.update(extra or {})
        self._audit.append("plan_event", payload)

    def _audit_refusal(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Log a refusal; if the log itself fails, say so but let the refusal (already fail closed) stand."""
        try:
            self._audit.append(kind, payload)
        except WritError as e:
            log.error("could not log a refused %s for plan %s: %s", kind, payload.get("plan_id"), e)

    # -- submit ---------------------------------------------------------------------------------

    def submit(self, envelope: bytes | dsse.Envelope, *, now: datetime | None = None) -> PlanRecord:
        """Verify a planner-signed plan envelope, store its exact bytes, and make it pending.

        Submitting the same bytes again returns the stored plan; other bytes for a stored
        plan id (re-signed, re-encoded) are a ``ConflictError``.
        """
        now = _now(now)
        raw = _as_bytes(envelope)
        if len(raw) > self.limits.max_envelope_bytes:
            raise InputError(
                f"plan envelope is {len(raw)} bytes, the limit is {self.limits.max_envelope_bytes} "
                "(max_envelope_bytes)",
                code=reasons.INPUT_TOO_LARGE,
            )
        trust = self.trust.trust_set()
        plan = verify_plan_envelope(raw, trust, now=now, limits=self.limits)  # signature, planner, PlanLimits
        if plan.is_expired(now):
            raise ApprovalError(
                f"plan {short_plan_id(plan.id)} expired at {_iso(plan.expires_at)}; sign it again with a later "
                "expires_at",
                code=reasons.PLAN_EXPIRED,
            )
        requirement = requirement_for(self._policy, plan, now)
        ttl = int((plan.expires_at - plan.created_at).total_seconds())
        if requirement.max_ttl_seconds is not None and ttl > requirement.max_ttl_seconds:
            raise ApprovalError(
                f"plan {short_plan_id(plan.id)} stays valid for {ttl} seconds, longer than the "
                f"{requirement.max_ttl_seconds} the approval policy allows: sign it again with an earlier expires_at",
                code=reasons.PLAN_TTL_TOO_LONG,
            )
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
        new: PlanState | None = None  # None: the plan was stored before
        try:
            with (
                self._db(f"store plan {short_plan_id(plan.id)}"),
                self._store.connect(write=True) as conn,
                conn.begin(),
            ):
                if conn.execute(select(_P.c.id).where(_P.c.id == plan.id)).first() is None:
                    conn.execute(insert(_P).values(**row))
                    new = self._set_state(conn, plan.id, PlanState.PROPOSED, PlanEvent.SUBMIT, now)
        except StoreError as e:
            if not isinstance(e.__cause__, IntegrityError):
                raise
            new = None  # another process stored it between our read and our insert
        if new is None:
            stored = self.get(plan.id)
            if stored.envelope != raw:
                raise ConflictError(
                    f"plan {short_plan_id(plan.id)} is already stored with a different envelope "
                    "(signed or encoded differently); the first one stands",
                    code=reasons.PLAN_EXISTS,
                )
            return stored
        signer = _planner_key(raw, plan, trust)
        self._plan_event(
            plan.id,
            PlanEvent.SUBMIT,
            PlanState.PROPOSED,
            new,
            now,
            {
                "planner": plan.planner,
                "key_id": signer,
                "title": plan.title,
                "steps": len(plan.steps),
                "expires_at": _iso(plan.expires_at),
                "envelope_digest": sha256_digest(raw),
                "requirement": requirement.model_dump(mode="json"),
            },
        )
        return self.get(plan.id)

    # -- approvals ------------------------------------------------------------------------------

    def add_approval(
        self, plan_id: str, envelope: bytes | dsse.Envelope, *, now: datetime | None = None
    ) -> ApprovalResult:
        """Database one signed approval or rejection of a pending plan, then ``evaluate`` the plan.

        Refused (``ApprovalRefused``, code ``approval_<reason>``): anything that would not
        count now, for any ``IgnoreReason``: garbage, a bad or untrusted signature, another
        plan's digest, the planner's own, a revoked key, outside the required groups, or a
        second decision by the same approver (the first stands; ADR 0008). The same
        envelope submitted again is stored once.
        """
        now = _now(now)
        raw = _as_bytes(envelope)
        try:
            env = dsse.Envelope.from_json(
                raw, max_bytes=self.limits.max_envelope_bytes, max_signatures=self.limits.max_signatures
            )
        except EnvelopeError as e:
            raise ApprovalRefused(f"approval is not a valid envelope: {e.message}", code=reasons.APPROVAL_MALFORMED) from None
        envelope_digest = sha256_digest(env.to_json())  # re-encodings of one envelope are one approval
        record = self.get(plan_id)
        stored = self.approvals(plan_id)
        if any(a.envelope_digest == envelope_digest for a in stored):
            return self.evaluate(plan_id, now=now)
        if record.state is not PlanState.PENDING:
            raise ConflictError(
                f"plan {short_plan_id(plan_id)} is {record.state.value}: approvals and rejections are taken only "
                "while a plan is pending (to stop an approved plan, abort it)",
                code=reasons.PLAN_NOT_PENDING,
            )
        trust = self.trust.trust_set()
        plan = self.verified_plan(record, trust, now)
        if plan.is_expired(now):
            self.evaluate(plan_id, now=now)
            raise ApprovalError(f"plan {short_plan_id(plan_id)} expired at {_iso(plan.expires_at)}",
                                code=reasons.PLAN_EXPIRED)
        requirement = requirement_for(self._policy, plan, now)
        envelopes = [a.envelope for a in stored] + [raw]
        result = evaluate_approvals(plan, envelopes, trust, now=now, requirement=requirement, limits=self.limits)
        index = len(stored)
        ignored = [i for i in result.ignored if i.index == index]
        if ignored:
            why = ignored[0]
            raise ApprovalRefused(
                f"approval of plan {short_plan_id(plan_id)} refused ({why.reason.value}): {why.detail}",
                code=f"approval_{why.reason.value}",
            )
        counted: CountedDecision = next(c for c in (*result.approvals, *result.rejections) if c.index == index)
        with self._db(f"store an approval of {short_plan_id(plan_id)}"), self._store.connect(write=True) as conn:
            try:
                with conn.begin():
                    conn.execute(
                        insert(_A).values(
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
                return self.evaluate(plan_id, now=now)  # the same envelope, stored by another process just now
        self._audit.append(
            "approval",
            {
                "plan_id": plan_id,
                "approver": counted.principal,
                "key_id": counted.key_id,
                "decision": counted.decision,
                "at": _iso(counted.at),
                "envelope_digest": envelope_digest,
                "received_at": db_time(now),
            },
        )
        return self.evaluate(plan_id, now=now)

    def evaluate(self, plan_id: str, *, now: datetime | None = None) -> ApprovalResult:
        """Count the approvals now (verifier and policy) and move a pending plan on.

        pending -> approved when both say satisfied; -> rejected when both count a
        rejection; proposed/pending/approved -> expired once it expired. A disagreement
        is logged (``plan_event`` ``approval_disagreement``) and denies: the result's
        ``approved`` is then false, with the reason among its ``violations``.
        """
        now = _now(now)
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

    # -- execution ------------------------------------------------------------------------------

    def begin(self, plan_id: str, executor: str, *, now: datetime | None = None) -> PlanRecord:
        """Bind an approved, unexpired plan to ``executor`` and start it: approved -> executing.

        Checks, each a typed error: the executor is not the planner, has the executor
        role, the plan is approved (stored state), its envelope still verifies against
        the trust store, it has not expired, and its approvals satisfy the requirement
        now, by the verifier (``require_approved``) and by the policy.
        """
        now = _now(now)
        record = self.get(plan_id)
        try:
            status = self._check_begin(record, executor, now)
        except WritError as e:
            self._audit_refusal("plan_event", {"plan_id": plan_id, "event": "begin_refused", "from": record.state.value,
                                               "to": None, "at": db_time(now), "executor": executor,
                                               "code": e.code, "reason": e.message})
            raise
        self._move(
            plan_id, PlanState.APPROVED, PlanEvent.BEGIN, now,
            {
                "executor": executor,
                "approvers": list(status.result.approvers),
                "approval_key_ids": [a.key_id for a in status.result.approvals],
                "requirement": status.result.requirement.model_dump(mode="json"),
            },
            executor=executor,
        )
        return self.get(plan_id)

    def _check_begin(self, record: PlanRecord, executor: str, now: datetime) -> PlanStatus:
        pid = short_plan_id(record.id)
        if executor == record.planner:
            raise PermissionDenied(
                f"{executor!r} wrote plan {pid} and cannot execute it: the planner never executes "
                "(an executor principal begins it)",
                code=reasons.SEPARATION_OF_DUTIES,
            )
        who = self.trust.principal(executor)
        if who.role != "executor":
            raise PermissionDenied(
                f"principal {executor!r} has role {who.role}; only an executor may begin plan {pid}",
                code=reasons.ROLE_NOT_PERMITTED,
            )
        if record.state is not PlanState.APPROVED:
            codes = {PlanState.REJECTED: "plan_rejected", PlanState.EXPIRED: "plan_expired"}
            if record.state is PlanState.EXECUTING:
                raise ConflictError(
                    f"plan {pid} is already executing (begun by {record.executor})", code=reasons.PLAN_ALREADY_EXECUTING
                )
            raise ApprovalError(
                f"plan {pid} is {record.state.value}, not approved; see `writ plan show {record.id[7:19]}`",
                code=codes.get(record.state, "plan_not_approved"),
            )
        trust = self.trust.trust_set()
        plan = self.verified_plan(record, trust, now)
        if plan.planner == executor:  # the row's planner was checked against the signed plan above
            raise PermissionDenied(f"{executor!r} wrote plan {pid} and cannot execute it",
                                   code=reasons.SEPARATION_OF_DUTIES)
        if plan.is_expired(now):
            try:
                self._move(record.id, PlanState.APPROVED, PlanEvent.EXPIRE, now)
            except ConflictError:
                pass
            raise ApprovalError(f"plan {pid} expired at {_iso(plan.expires_at)}", code=reasons.PLAN_EXPIRED)
        envelopes = [a.envelope for a in self.approvals(record.id)]
        status = self._assess(record, plan, envelopes, trust, now)
        self._log_disagreement(status)
        require_approved(plan, envelopes, trust, now=now, requirement=status.result.requirement, limits=self.limits)
        if not status.policy.satisfied:
            missing = status.policy.missing
            raise ApprovalError(
                f"the writ.approval policy does not find plan {pid} approved (counted: "
                f"{', '.join(status.policy.counted) or 'none'}; missing {missing.approvals} approvals"
                + (f" and groups {', '.join(missing.groups)}" if missing.groups else "")
                + (f"; {'; '.join(v.message for v in status.policy.violations)}" if status.policy.violations else "")
                + ")",
                code=reasons.APPROVAL_POLICY_DENIED,
            )
        return status

    def claim_step(
        self,
        plan_id: str,
        step_index: int,
        executor: str,
        *,
        server: str,
        tool: str,
        definition_digest: str | None,
        args: Mapping[str, Any],
        now: datetime | None = None,
    ) -> ClaimRecord:
        """Claim step ``step_index`` for this exact call, once. ``StepAlreadyClaimed`` if it was claimed before.

        Refused (``ClaimRefused``) unless the plan is executing, unexpired, begun by
        ``executor``, its envelope still verifies, the call matches the step exactly
        (``writ.plans.matching.matches``), and, for an ordered plan, step i-1 was claimed.
        """
        now = _now(now)
        record = self.get(plan_id)
        try:
            args_digest = digest(dict(args))
        except (InputError, TypeError, ValueError):
            args_digest = "unencodable"
        base = {"plan_id": plan_id, "step_index": step_index, "executor": executor, "server": server,
                "tool": tool, "definition_digest": definition_digest, "args_digest": args_digest}
        try:
            self._check_claim(record, step_index, executor, server, tool, definition_digest, args, now)
            claim = self._insert_claim(record, step_index, executor, args_digest, now)
        except WritError as e:
            self._audit_refusal("step_claim", {**base, "claimed": False, "code": e.code, "reason": e.message,
                                               "at": db_time(now)})
            raise
        self._audit.append("step_claim", {**base, "claimed": True, "at": db_time(now)})
        return claim

    def _check_claim(
        self,
        record: PlanRecord,
        step_index: int,
        executor: str,
        server: str,
        tool: str,
        definition_digest: str | None,
        args: Mapping[str, Any],
        now: datetime,
    ) -> None:
        pid = short_plan_id(record.id)
        if record.state is not PlanState.EXECUTING:
            raise ClaimRefused(f"plan {pid} is {record.state.value}, not executing: no step of it may run",
                               code=reasons.PLAN_NOT_EXECUTING)
        if record.executor != executor:
            raise PermissionDenied(
                f"plan {pid} is being executed by {record.executor!r}, not {executor!r}",
                code=reasons.EXECUTOR_MISMATCH,
            )
        plan = self.verified_plan(record, self.trust.trust_set(), now)
        if plan.is_expired(now):
            raise ClaimRefused(f"plan {pid} expired at {_iso(plan.expires_at)}: no step of it may run",
                               code=reasons.PLAN_EXPIRED)
        if not isinstance(step_index, int) or isinstance(step_index, bool) or not 0 <= step_index < len(plan.steps):
            raise ClaimRefused(
                f"plan {pid} has steps 0 to {len(plan.steps) - 1}, there is no step {step_index!r}",
                code=reasons.STEP_NOT_IN_PLAN,
            )
        match = matches(plan.steps[step_index], server=server, tool=tool, definition_digest=definition_digest,
                        args=args, limits=self.limits)
        if not match:
            raise ClaimRefused(f"call is not step {step_index} of plan {pid}: {match.reason}", code=reasons.STEP_MISMATCH)
        if plan.ordered and step_index > 0 and self._claim(record.id, step_index - 1) is None:
            raise ClaimRefused(
                f"step {step_index} of plan {pid} cannot run before step {step_index - 1} (the plan is ordered)",
                code=reasons.STEP_OUT_OF_ORDER,
            )

    def _insert_claim(
        self, record: PlanRecord, step_index: int, executor: str, args_digest: str, now: datetime
    ) -> ClaimRecord:
        pid = short_plan_id(record.id)
        values = {"plan_id": record.id, "step_index": step_index, "executor": executor,
                  "claimed_at": db_time(now), "args_digest": args_digest}
        with self._db(f"claim step {step_index} of {pid}"), self._store.connect(write=True) as conn:
            try:
                with conn.begin():
                    # Hold the plan row (FOR SHARE on PostgreSQL; SQLite's write lock is already ours):
                    # the plan cannot finish or abort between this check and the insert.
                    state = conn.execute(
                        select(_P.c.state).where(_P.c.id == record.id).with_for_update(read=True)
                    ).scalar()
                    if state != PlanState.EXECUTING.value:
                        raise ClaimRefused(f"plan {pid} is {state}, not executing: no step of it may run",
                                           code=reasons.PLAN_NOT_EXECUTING)
                    conn.execute(insert(_C).values(**values))
            except IntegrityError:
                pass
            else:
                return ClaimRecord(record.id, step_index, executor, from_db_time(db_time(now)), args_digest,
                                   None, None, None)
        other = self._claim(record.id, step_index)
        if other is None:
            raise StoreError(f"cannot claim step {step_index} of {pid}: the database refused the claim")
        raise StepAlreadyClaimed(
            f"step {step_index} of plan {pid} was already claimed by {other.executor} at "
            f"{db_time(other.claimed_at)}; a step runs at most once"
        )

    def record_result(
        self,
        plan_id: str,
        step_index: int,
        result_digest: str | None,
        outcome: StepOutcome,
        *,
        now: datetime | None = None,
    ) -> ClaimRecord:
        """Record how a claimed step ended (once): ``succeeded`` or ``failed``, with the result's digest."""
        now = _now(now)
        if outcome not in get_args(StepOutcome):
            raise InputError(f"step outcome {outcome!r} is not one of succeeded, failed", code=reasons.INPUT_INVALID)
        if result_digest is not None and not re.fullmatch(DIGEST_PATTERN, result_digest):
            raise InputError(f"result digest {result_digest!r} is not sha256:<64 hex>", code=reasons.INPUT_INVALID)
        pid = short_plan_id(plan_id)
        with (
            self._db(f"record the result of step {step_index} of {pid}"),
            self._store.connect(write=True) as conn,
            conn.begin(),
        ):
            done = conn.execute(
                update(_C)
                .where(_C.c.plan_id == plan_id, _C.c.step_index == step_index, _C.c.outcome.is_(None))
                .values(result_digest=result_digest, outcome=outcome, finished_at=db_time(now))
            )
        if done.rowcount != 1:
            claim = self._claim(plan_id, step_index)
            if claim is None:
                raise ClaimRefused(f"step {step_index} of plan {pid} was never claimed: claim it before it runs",
                                   code=reasons.STEP_NOT_CLAIMED)
            raise ConflictError(
                f"the result of step {step_index} of plan {pid} was already recorded ({claim.outcome} at "
                f"{db_time(claim.finished_at) if claim.finished_at else '?'})",
                code=reasons.STEP_RESULT_RECORDED,
            )
        claim = self._claim(plan_id, step_index)
        assert claim is not None
        self._audit.append(
            "step_result",
            {"plan_id": plan_id, "step_index": step_index, "executor": claim.executor, "outcome": outcome,
             "args_digest": claim.args_digest, "result_digest": result_digest, "at": db_time(now)},
        )
        return claim

    def finish(
        self, plan_id: str, outcome: FinishOutcome, *, now: datetime | None = None, reason: str = ""
    ) -> PlanState:
        """End a plan: ``completed`` (every step succeeded), ``failed``, or ``aborted`` (before it ends)."""
        now = _now(now)
        event = _FINISH_EVENTS.get(outcome)
        if event is None:
            raise InputError(f"plan outcome {outcome!r} is not one of completed, failed, aborted",
                             code=reasons.INPUT_INVALID)
        record = self.get(plan_id)
        pid = short_plan_id(plan_id)
        if event is PlanEvent.COMPLETE:
            plan = self.verified_plan(record, self.trust.trust_set(), now)
            done = {c.step_index for c in self.claims(plan_id) if c.outcome == "succeeded"}
            todo = [i for i in range(len(plan.steps)) if i not in done]
            if todo:
                raise ConflictError(
                    f"plan {pid} cannot complete: step{'s' if len(todo) > 1 else ''} "
                    f"{', '.join(map(str, todo))} did not succeed (finish it as failed or aborted)",
                    code=reasons.PLAN_INCOMPLETE,
                )
        return self._move(plan_id, record.state, event, now, {"reason": reason} if reason else None)

    def expire_due(self, *, now: datetime | None = None) -> list[str]:
        """Expire every plan not yet executing whose expiry has passed; the ids expired."""
        now = _now(now)
        waiting = [s.value for s in (PlanState.PROPOSED, PlanState.PENDING, PlanState.APPROVED)]
        with self._db("find expired plans"), self._store.connect() as conn:
            due = conn.execute(
                select(_P.c.id, _P.c.state).where(_P.c.state.in_(waiting), _P.c.expires_at <= db_time(now))
            ).all()
        expired = []
        for plan_id, state in due:
            try:
                self._move(plan_id, PlanState(state), PlanEvent.EXPIRE, now)
            except ConflictError:
                continue  # moved on by another process
            expired.append(plan_id)
        return expired


def _planner_key(raw: bytes, plan: Plan, trust: TrustSet) -> str | None:
    """The id of the planner's trusted key that signed the envelope (for the audit log)."""
    try:
        env = dsse.Envelope.from_json(raw)
    except WritError:
        return None
    keys = {kid: tk.public_key for kid, tk in trust.keys_for("planner", plan.planner).items()}
    accepted = dsse.accepted_keys(env, keys)
    return next(iter(accepted), None)
