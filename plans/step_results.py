"""How steps and plans end: record a step's result, fail a plan whose step failed, finish, expire.

    plans.record_result(plan_id, 0, result_digest, "succeeded")
    plans.record_result(plan_id, 1, None, "failed")    # the plan is failed too, unless policy allows a retry
    plans.finish(plan_id, "completed")                  # executing -> completed (every step succeeded)
    plans.expire_due()                                  # ids of waiting plans whose expiry passed

A failed step fails its plan (ADR 0009): ``record_result(..., "failed")`` moves the plan
from executing to failed in the same transaction that records the result, so no step of
it can be claimed afterwards, and logs ``step_result`` then ``plan_event`` ``fail``
(code ``step_failed``). Only when the ``writ.approval`` policy says
``retry_failed_step`` (``data.writ.config.retry_failed_steps``, default false) does the
plan stay executing, and then only that step may be claimed again; in an ordered plan the
next step waits until it succeeded.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import get_args

from sqlalchemy import Connection, select, update

from writ.engine.core import reasons
from writ.engine.core.errors import ClaimRefused, ConflictError, InputError, WritError
from writ.engine.core.timeutil import db_time
from writ.plans.assessment import retry_allowed
from writ.plans.lifecycle import PlanEvent, PlanState
from writ.plans.models import DIGEST_PATTERN, short_plan_id
from writ.plans.records import CLAIMS, PLANS, ClaimRecord, FinishOutcome, StepOutcome
from writ.plans.store_base import PlanStoreBase, now_or_utc

__all__ = ["StepResults"]

_FINISH_EVENTS: dict[str, PlanEvent] = {
    "completed": PlanEvent.COMPLETE,
    "failed": PlanEvent.FAIL,
    "aborted": PlanEvent.ABORT,
}


class StepResults(PlanStoreBase):
    """Record step results and end plans (part of ``PlanStore``).

        plans.record_result(plan_id, 0, "sha256:...", "succeeded")
        plans.finish(plan_id, "completed")
    """

    def record_result(
        self,
        plan_id: str,
        step_index: int,
        result_digest: str | None,
        outcome: StepOutcome,
        *,
        now: datetime | None = None,
    ) -> ClaimRecord:
        """Record how a claimed step ended (once): ``succeeded`` or ``failed``, with the result's digest.

        A ``failed`` step fails its executing plan, unless the policy allows claiming it again.
        """
        now = now_or_utc(now)
        if outcome not in get_args(StepOutcome):
            raise InputError(f"step outcome {outcome!r} is not one of succeeded, failed", code=reasons.INPUT_INVALID)
        if result_digest is not None and not re.fullmatch(DIGEST_PATTERN, result_digest):
            raise InputError(f"result digest {result_digest!r} is not sha256:<64 hex>", code=reasons.INPUT_INVALID)
        pid = short_plan_id(plan_id)
        fail_plan = outcome == "failed" and not self.may_retry(plan_id, step_index, now)
        with (
            self._db(f"record the result of step {step_index} of {pid}"),
            self._store.connect(write=True) as conn,
            conn.begin(),
        ):
            done = conn.execute(
                update(CLAIMS)
                .where(CLAIMS.c.plan_id == plan_id, CLAIMS.c.step_index == step_index, CLAIMS.c.outcome.is_(None))
                .values(result_digest=result_digest, outcome=outcome, finished_at=db_time(now))
            )
            failed = done.rowcount == 1 and fail_plan and self._fail_if_executing(conn, plan_id, now)
        claim = self._recorded_claim(plan_id, step_index, done.rowcount == 1)
        self._audit.append(
            "step_result",
            {"plan_id": plan_id, "step_index": step_index, "executor": claim.executor, "outcome": outcome,
             "args_digest": claim.args_digest, "result_digest": result_digest, "at": db_time(now)},
        )
        if failed:
            self._failed_event(plan_id, step_index, now, withdrawn=False)
        return claim

    def fail_for_step(self, plan_id: str, step_index: int, now: datetime, *, withdrawn: bool) -> bool:
        """Executing -> failed because step ``step_index`` failed and may not be retried; False if it had left executing.

        ``withdrawn``: the policy allowed the retry when the step failed and no longer does.
        """
        with (
            self._db(f"fail plan {short_plan_id(plan_id)}"),
            self._store.connect(write=True) as conn,
            conn.begin(),
        ):
            failed = self._fail_if_executing(conn, plan_id, now)
        if failed:
            self._failed_event(plan_id, step_index, now, withdrawn=withdrawn)
        return failed

    def _failed_event(self, plan_id: str, step_index: int, now: datetime, *, withdrawn: bool) -> None:
        why = "the policy no longer allows a retry" if withdrawn else "no retry is allowed"
        self._plan_event(plan_id, PlanEvent.FAIL, PlanState.EXECUTING, PlanState.FAILED, now,
                         {"code": reasons.STEP_FAILED, "step_index": step_index,
                          "reason": f"step {step_index} failed; {why} (retry_failed_step)"})

    def may_retry(self, plan_id: str, step_index: int, now: datetime) -> bool:
        """Does the policy allow claiming this step again once it failed? Any doubt is a no."""
        claim = self._claim(plan_id, step_index)
        if claim is None:
            return False
        try:
            plan = self.get(plan_id).unverified_plan(self.limits)  # for the question only: a retry is verified
        except WritError:
            return False
        return retry_allowed(self.policy, plan, step_index, claim.attempt, now)

    def _fail_if_executing(self, conn: Connection, plan_id: str, now: datetime) -> bool:
        """Executing -> failed in ``conn``'s transaction; False if the plan had already left executing."""
        state = conn.execute(select(PLANS.c.state).where(PLANS.c.id == plan_id).with_for_update()).scalar()
        if state != PlanState.EXECUTING.value:
            return False
        self._set_state(conn, plan_id, PlanState.EXECUTING, PlanEvent.FAIL, now)
        return True

    def _recorded_claim(self, plan_id: str, step_index: int, recorded: bool) -> ClaimRecord:
        """The claim just recorded; why nothing was recorded if ``recorded`` is false."""
        pid = short_plan_id(plan_id)
        claim = self._claim(plan_id, step_index)
        if claim is None:
            raise ClaimRefused(f"step {step_index} of plan {pid} was never claimed: claim it before it runs",
                               code=reasons.STEP_NOT_CLAIMED)
        if not recorded:
            raise ConflictError(
                f"the result of step {step_index} of plan {pid} was already recorded ({claim.outcome} at "
                f"{db_time(claim.finished_at) if claim.finished_at else '?'})",
                code=reasons.STEP_RESULT_RECORDED,
            )
        return claim

    # -- the end ----------------------------------------------------------------------------------

    def finish(
        self, plan_id: str, outcome: FinishOutcome, *, now: datetime | None = None, reason: str = ""
    ) -> PlanState:
        """End a plan: ``completed`` (every step succeeded), ``failed``, or ``aborted`` (before it ends)."""
        now = now_or_utc(now)
        event = _FINISH_EVENTS.get(outcome)
        if event is None:
            raise InputError(f"plan outcome {outcome!r} is not one of completed, failed, aborted",
                             code=reasons.INPUT_INVALID)
        record = self.get(plan_id)
        if event is PlanEvent.COMPLETE:
            plan = self.verified_plan(record, self.trust.trust_set(), now)
            done = {c.step_index for c in self.claims(plan_id) if c.outcome == "succeeded"}
            todo = [i for i in range(len(plan.steps)) if i not in done]
            if todo:
                raise ConflictError(
                    f"plan {short_plan_id(plan_id)} cannot complete: step{'s' if len(todo) > 1 else ''} "
                    f"{', '.join(map(str, todo))} did not succeed (finish it as failed or aborted)",
                    code=reasons.PLAN_INCOMPLETE,
                )
        return self._move(plan_id, record.state, event, now, {"reason": reason} if reason else None)

    def expire_due(self, *, now: datetime | None = None) -> list[str]:
        """Expire every plan not yet executing whose expiry has passed; the ids expired."""
        now = now_or_utc(now)
        waiting = [s.value for s in (PlanState.PROPOSED, PlanState.PENDING, PlanState.APPROVED)]
        with self._db("find expired plans"), self._store.connect() as conn:
            due = conn.execute(
                select(PLANS.c.id, PLANS.c.state).where(PLANS.c.state.in_(waiting), PLANS.c.expires_at <= db_time(now))
            ).all()
        expired = []
        for plan_id, state in due:
            try:
                self._move(plan_id, PlanState(state), PlanEvent.EXPIRE, now)
            except ConflictError:
                continue  # moved on by another process
            expired.append(plan_id)
        return expired
