"""What both sides of the plan store share: reading rows, verifying a stored plan, and guarded state changes.

    class PlanSubmission(PlanStoreBase): ...    # submit, add_approval, evaluate
    class BackedExecution(PlanStoreBase): ...   # backed_plan: is an executing plan still backed?
    class StepResults(PlanStoreBase): ...       # record_result, finish, expire_due
    class PlanExecution(StepResults, BackedExecution): ...   # begin, claim_step
    class PlanStore(PlanSubmission, PlanExecution): ...   # what callers use (writ.plans.store)

Use ``writ.plans.store.PlanStore``; this base holds no logic of either side. Every
state change goes through ``_move``: ``writ.plans.lifecycle.transition`` and an
``UPDATE ... WHERE state = <old>`` in one transaction, then a ``plan_event`` audit
entry once it committed. If another process moved the plan first, ``ConflictError``
(``plan_state_conflict``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from writ.engine.core import reasons
from writ.engine.core.db import Database, db_errors
from writ.engine.core.errors import ConflictError, InputError, NotFoundError, VerificationError, WritError
from writ.engine.core.ports import AuditSink
from writ.engine.core.timeutil import aware, db_time, from_db_time, utc_now
from writ.plans.assessment import PolicyEvaluator, assess
from writ.plans.backing import BackingCache
from writ.plans.lifecycle import PlanEvent, PlanState, transition
from writ.plans.models import Plan, PlanLimits, short_plan_id
from writ.plans.records import (
    APPROVALS,
    CLAIMS,
    PLANS,
    ApprovalRecord,
    ClaimRecord,
    PlanRecord,
    PlanStatus,
    approval_record,
    claim_record,
    plan_record,
)
from writ.plans.trust import TrustSet
from writ.plans.trust_store import TrustStore
from writ.plans.verify import verify_plan_envelope

__all__ = ["MIN_PREFIX", "PlanStoreBase", "now_or_utc"]

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-f]+$")
MIN_PREFIX = 4


def now_or_utc(now: datetime | None) -> datetime:
    """The ``now`` a caller gave (it must be timezone-aware), or the current time."""
    return utc_now() if now is None else aware(now, "'now'")


class PlanStoreBase:
    """Plans in a ``Database``, verified against a ``TrustStore``, approved under a policy. Process-safe.

        base = PlanStoreBase(db, trust_store, engine, audit=AuditLog(db))   # normally via PlanStore
        base.get(base.resolve("3f2a9c0d")).state                           # PlanState.PENDING
    """

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
        self.policy = policy
        self.limits = limits or PlanLimits()
        self._audit = audit
        self.backing = BackingCache()  # "still backed" verdicts of executing plans (writ.plans.backing)

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
                conn.execute(select(PLANS.c.id).where(PLANS.c.id.startswith("sha256:" + hex_part)).limit(6)).scalars()
            )
        if not ids:
            raise NotFoundError(f"no plan {ref!r} (see `writ plan list`)", code=reasons.PLAN_NOT_FOUND)
        if len(ids) > 1:
            shown = ", ".join(short_plan_id(i) for i in ids[:5])
            raise InputError(f"plan prefix {ref!r} names more than one plan ({shown}); give more digits",
                             code=reasons.PLAN_AMBIGUOUS)
        return str(ids[0])

    def get(self, plan_id: str) -> PlanRecord:
        """The stored plan ``plan_id`` (a full id); ``NotFoundError`` (``plan_not_found``) if there is none."""
        with self._db(f"read plan {short_plan_id(plan_id)}"), self._store.connect() as conn:
            row = conn.execute(select(PLANS).where(PLANS.c.id == plan_id)).first()
        if row is None:
            raise NotFoundError(f"no plan {plan_id} (see `writ plan list`)", code=reasons.PLAN_NOT_FOUND)
        return plan_record(row)

    def list_plans(self, state: PlanState | str | None = None) -> list[PlanRecord]:
        """Stored plans in the order submitted, optionally only those in ``state``."""
        query = select(PLANS).order_by(PLANS.c.submitted_at, PLANS.c.id)
        if state is not None:
            try:
                query = query.where(PLANS.c.state == PlanState(state).value)
            except ValueError:
                raise InputError(
                    f"plan state {state!r} is not one of {', '.join(s.value for s in PlanState)}",
                    code=reasons.INPUT_INVALID,
                ) from None
        with self._db("list plans"), self._store.connect() as conn:
            rows = conn.execute(query).all()
        return [plan_record(r) for r in rows]

    def ended_between(self, since: datetime, until: datetime) -> list[tuple[str, datetime]]:
        """(id, end time) of each plan completed, failed or aborted in [since, until), in the order they ended.

        The end time is the row's ``updated_at``: the state change into a final state writes it
        last, since a final state has no way out (``writ.plans.lifecycle.TERMINAL``).
        """
        ended = [PlanState.COMPLETED.value, PlanState.FAILED.value, PlanState.ABORTED.value]
        query = (select(PLANS.c.id, PLANS.c.updated_at)
                 .where(PLANS.c.state.in_(ended), PLANS.c.updated_at >= db_time(since),
                        PLANS.c.updated_at < db_time(until))
                 .order_by(PLANS.c.updated_at, PLANS.c.id))
        with self._db("list ended plans"), self._store.connect() as conn:
            rows = conn.execute(query).all()
        return [(str(r.id), from_db_time(r.updated_at)) for r in rows]

    def approvals(self, plan_id: str, *, unaudited: bool = False) -> list[ApprovalRecord]:
        """Stored approvals and rejections, in the order received (the order they are counted in).

        Only those whose ``approval`` audit entry is written (the ones that count); ``unaudited``:
        also those stored whose entry could not be written yet (``add_approval`` completes them).
        """
        query = select(APPROVALS).where(APPROVALS.c.plan_id == plan_id)
        if not unaudited:
            query = query.where(APPROVALS.c.audited_at.is_not(None))
        with self._db(f"read the approvals of {short_plan_id(plan_id)}"), self._store.connect() as conn:
            rows = conn.execute(query.order_by(APPROVALS.c.seq)).all()
        return [approval_record(r) for r in rows]

    def claims(self, plan_id: str) -> list[ClaimRecord]:
        """The claimed steps of a plan, by step index."""
        with self._db(f"read the step claims of {short_plan_id(plan_id)}"), self._store.connect() as conn:
            rows = conn.execute(
                select(CLAIMS).where(CLAIMS.c.plan_id == plan_id).order_by(CLAIMS.c.step_index)
            ).all()
        return [claim_record(r) for r in rows]

    def _claim(self, plan_id: str, step_index: int) -> ClaimRecord | None:
        with self._db("read a step claim"), self._store.connect() as conn:
            row = conn.execute(
                select(CLAIMS).where(CLAIMS.c.plan_id == plan_id, CLAIMS.c.step_index == step_index)
            ).first()
        return claim_record(row) if row is not None else None

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
        now = now_or_utc(now)
        record = self.get(plan_id)
        trust = self.trust.trust_set()
        plan = self.verified_plan(record, trust, now)
        envelopes = [a.envelope for a in self.approvals(plan_id)]
        return self._assess(record, plan, envelopes, trust, now)

    def _assess(
        self, record: PlanRecord, plan: Plan, envelopes: Sequence[bytes], trust: TrustSet, now: datetime
    ) -> PlanStatus:
        a = assess(self.policy, plan, envelopes, trust, now=now, limits=self.limits)
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
            update(PLANS)
            .where(PLANS.c.id == plan_id, PLANS.c.state == old.value)
            .values(state=new.value, updated_at=db_time(now), **values)
        )
        if done.rowcount != 1:
            current = conn.execute(select(PLANS.c.state).where(PLANS.c.id == plan_id)).scalar()
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
        """Change the plan's state from ``old`` (``ConflictError`` if it moved), then log the ``plan_event``."""
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
