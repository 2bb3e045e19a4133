"""The execution side of the plan store: begin an approved plan, claim each step once (ADR 0009).

    plans.begin(plan_id, "exec-bot")                  # re-verifies everything; approved -> executing
    claim = plans.claim_step(plan_id, 0, "exec-bot", server="fs", tool="write_file",
                             definition_digest=d, args={"path": "/repo/a.py", "content": "..."})
    plans.record_result(plan_id, 0, result_digest, "succeeded")    # writ.plans.step_results
    plans.finish(plan_id, "completed")                # executing -> completed
    plans.claim_step(plan_id, 0, ...)   # StepAlreadyClaimed: step 0 of plan sha256:ab.. was already claimed by ...

``begin`` verifies the stored envelope again against the trust store, re-counts the
approvals under the requirement the policy gives now and asks the policy too (ADR 0008).
Every ``claim_step`` checks that the plan is still backed the same way
(``writ.plans.execution_backing``: cached while the trust store and the policy are
unchanged); a plan no longer backed is refused with ``plan_not_backed`` and aborted. A
step runs at most once because the database says so: the claim is an INSERT under
``UNIQUE (plan_id, step_index)``; the one exception is a step that failed, claimed again
(``attempt`` + 1, an UPDATE of its failed row) only when the policy allows a retry. In an
ordered plan step i runs only once step i-1 succeeded. Refusals of ``begin`` and
``claim_step`` are audited too (``plan_event`` ``begin_refused``, ``step_claim`` with
``claimed: false``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from writ.engine.core import reasons
from writ.engine.core.errors import (
    ApprovalError,
    ClaimRefused,
    ConflictError,
    InputError,
    PermissionDenied,
    PlanExpired,
    StepAlreadyClaimed,
    StoreError,
    WritError,
)
from writ.engine.core.timeutil import db_time, from_db_time, iso
from writ.plans.assessment import retry_allowed
from writ.plans.canonical import digest
from writ.plans.execution_backing import BackedExecution, policy_not_satisfied
from writ.plans.lifecycle import PlanEvent, PlanState
from writ.plans.matching import matches
from writ.plans.models import Plan, short_plan_id
from writ.plans.records import CLAIMS, PLANS, ClaimRecord, PlanRecord, PlanStatus
from writ.plans.step_results import StepResults
from writ.plans.store_base import now_or_utc
from writ.plans.verify import require_approved

__all__ = ["PlanExecution"]

_NOT_APPROVED_CODES = {PlanState.REJECTED: reasons.PLAN_REJECTED}


class PlanExecution(StepResults, BackedExecution):
    """Run approved plans step by step, each step at most once; ``PlanStore`` is this and ``PlanSubmission``.

        plans.begin(plan_id, "exec-bot")
        plans.claim_step(plan_id, 0, "exec-bot", server="git", tool="git_commit", definition_digest=d,
                         args={"message": "fix"})
    """

    # -- begin ----------------------------------------------------------------------------------

    def begin(self, plan_id: str, executor: str, *, now: datetime | None = None) -> PlanRecord:
        """Bind an approved, unexpired plan to ``executor`` and start it: approved -> executing.

        Checks, each a typed error: the executor is not the planner, has the executor
        role, the plan is approved (stored state), its envelope still verifies against
        the trust store, it has not expired, and its approvals satisfy the requirement
        now, by the verifier (``require_approved``) and by the policy.
        """
        now = now_or_utc(now)
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
        # 1. the executor is an executor, and not the planner
        self._check_executor(record, executor)
        # 2. the stored state says approved
        self._check_approved_state(record)
        # 3. the stored envelope still verifies, and the signed planner is not the executor either
        trust = self.trust.trust_set()
        plan = self.verified_plan(record, trust, now)
        if plan.planner == executor:  # the row's planner was checked against the signed plan above
            raise PermissionDenied(f"{executor!r} wrote plan {pid} and cannot execute it",
                                   code=reasons.SEPARATION_OF_DUTIES)
        # 4. not expired (an expired plan is moved to expired on the way out)
        if plan.is_expired(now):
            try:
                self._move(record.id, PlanState.APPROVED, PlanEvent.EXPIRE, now)
            except ConflictError:
                pass
            raise PlanExpired(f"plan {pid} expired at {iso(plan.expires_at)}")
        # 5. approved now, by the verifier under the policy's requirement, and by the policy
        envelopes = [a.envelope for a in self.approvals(record.id)]
        status = self._assess(record, plan, envelopes, trust, now)
        self._log_disagreement(status)
        require_approved(plan, envelopes, trust, now=now, requirement=status.result.requirement, limits=self.limits)
        if not status.policy.satisfied:
            raise ApprovalError(policy_not_satisfied(pid, status), code=reasons.APPROVAL_POLICY_DENIED)
        return status

    def _check_executor(self, record: PlanRecord, executor: str) -> None:
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

    @staticmethod
    def _check_approved_state(record: PlanRecord) -> None:
        pid = short_plan_id(record.id)
        if record.state is PlanState.APPROVED:
            return
        if record.state is PlanState.EXECUTING:
            raise ConflictError(
                f"plan {pid} is already executing (begun by {record.executor})", code=reasons.PLAN_ALREADY_EXECUTING
            )
        message = f"plan {pid} is {record.state.value}, not approved; see `writ plan show {record.id[7:19]}`"
        if record.state is PlanState.EXPIRED:
            raise PlanExpired(message)
        raise ApprovalError(message, code=_NOT_APPROVED_CODES.get(record.state, reasons.PLAN_NOT_APPROVED))

    # -- steps ----------------------------------------------------------------------------------

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

        Refused (``ClaimRefused``; ``PlanExpired`` once the plan expired) unless the plan is
        executing, unexpired, begun by ``executor``, still backed (``backed_plan``: else
        ``plan_not_backed``, and the plan is aborted), the call matches the step exactly
        (``writ.plans.matching.matches``), and, for an ordered plan, step i-1 succeeded. A
        step that failed is claimed again only if the policy allows a retry (``attempt`` + 1).
        """
        now = now_or_utc(now)
        record = self.get(plan_id)
        try:
            args_digest = digest(dict(args))
        except (InputError, TypeError, ValueError):
            args_digest = "unencodable"
        base = {"plan_id": plan_id, "step_index": step_index, "executor": executor, "server": server,
                "tool": tool, "definition_digest": definition_digest, "args_digest": args_digest}
        try:
            plan = self._claimable_plan(record, executor, now)
            self._check_step(plan, record, step_index, server, tool, definition_digest, args)
            prior = self._claim(record.id, step_index)
            if prior is not None and prior.outcome == "failed":
                # an engine error refuses this claim with its own code and leaves the plan as it is
                if not retry_allowed(self.policy, plan, step_index, prior.attempt, now, raise_errors=True):
                    # the retry allowed when the step failed was withdrawn since: the plan fails now, as it
                    # would have then, instead of waiting executing for a step that can never run again
                    failed = self.fail_for_step(record.id, step_index, now, withdrawn=True)
                    raise StepAlreadyClaimed(
                        f"step {step_index} of plan {short_plan_id(record.id)} failed and the policy no longer "
                        f"allows a retry (retry_failed_step){': the plan failed' if failed else ''}",
                        code=reasons.STEP_ALREADY_CLAIMED)
                claim = self._retry_claim(record, prior, executor, args_digest, now)
            else:
                claim = self._insert_claim(record, step_index, executor, args_digest, now)
        except WritError as e:
            self._audit_refusal("step_claim", {**base, "claimed": False, "code": e.code, "reason": e.message,
                                               "at": db_time(now)})
            if e.code == reasons.PLAN_NOT_BACKED:
                self.abort_unbacked(record.id, e.message, now)
            raise
        retried = {"attempt": claim.attempt} if claim.attempt > 1 else {}
        self._audit.append("step_claim", {**base, "claimed": True, **retried, "at": db_time(now)})
        return claim

    def _claimable_plan(self, record: PlanRecord, executor: str, now: datetime) -> Plan:
        """The verified plan, if it is executing, begun by ``executor``, still backed and unexpired."""
        pid = short_plan_id(record.id)
        if record.state is not PlanState.EXECUTING:
            raise ClaimRefused(f"plan {pid} is {record.state.value}, not executing: no step of it may run",
                               code=reasons.PLAN_NOT_EXECUTING)
        if record.executor != executor:
            raise PermissionDenied(
                f"plan {pid} is being executed by {record.executor!r}, not {executor!r}",
                code=reasons.EXECUTOR_MISMATCH,
            )
        return self.backed_plan(record, now)

    def _check_step(
        self,
        plan: Plan,
        record: PlanRecord,
        step_index: int,
        server: str,
        tool: str,
        definition_digest: str | None,
        args: Mapping[str, Any],
    ) -> None:
        """The call is step ``step_index`` of ``plan``, exactly, and (ordered plan) its turn has come."""
        pid = short_plan_id(record.id)
        if not isinstance(step_index, int) or isinstance(step_index, bool) or not 0 <= step_index < len(plan.steps):
            raise ClaimRefused(
                f"plan {pid} has steps 0 to {len(plan.steps) - 1}, there is no step {step_index!r}",
                code=reasons.STEP_NOT_IN_PLAN,
            )
        match = matches(plan.steps[step_index], server=server, tool=tool, definition_digest=definition_digest,
                        args=args, limits=self.limits)
        if not match:
            raise ClaimRefused(f"call is not step {step_index} of plan {pid}: {match.reason}", code=reasons.STEP_MISMATCH)
        if plan.ordered and step_index > 0:
            self._check_turn(record, step_index)

    def _check_turn(self, record: PlanRecord, step_index: int) -> None:
        """In an ordered plan, step i runs only after step i-1 succeeded (not while it runs, not after it failed)."""
        pid, before = short_plan_id(record.id), step_index - 1
        previous = self._claim(record.id, before)
        if previous is None:
            raise ClaimRefused(f"step {step_index} of plan {pid} cannot run before step {before} (the plan is ordered)",
                               code=reasons.STEP_OUT_OF_ORDER)
        if previous.outcome != "succeeded":
            how = "is still running" if previous.outcome is None else "failed"
            raise ClaimRefused(
                f"step {step_index} of plan {pid} cannot run before step {before} succeeded (the plan is ordered; "
                f"step {before} {how})",
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
                        select(PLANS.c.state).where(PLANS.c.id == record.id).with_for_update(read=True)
                    ).scalar()
                    if state != PlanState.EXECUTING.value:
                        raise ClaimRefused(f"plan {pid} is {state}, not executing: no step of it may run",
                                           code=reasons.PLAN_NOT_EXECUTING)
                    conn.execute(insert(CLAIMS).values(**values))
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

    def _retry_claim(
        self, record: PlanRecord, prior: ClaimRecord, executor: str, args_digest: str, now: datetime
    ) -> ClaimRecord:
        """Claim a failed step again (the policy allowed it): its row, from failed back to running, attempt + 1."""
        pid, index = short_plan_id(record.id), prior.step_index
        with self._db(f"claim step {index} of {pid} again"), self._store.connect(write=True) as conn, conn.begin():
            state = conn.execute(
                select(PLANS.c.state).where(PLANS.c.id == record.id).with_for_update(read=True)
            ).scalar()
            if state != PlanState.EXECUTING.value:
                raise ClaimRefused(f"plan {pid} is {state}, not executing: no step of it may run",
                                   code=reasons.PLAN_NOT_EXECUTING)
            done = conn.execute(
                update(CLAIMS)
                .where(CLAIMS.c.plan_id == record.id, CLAIMS.c.step_index == index, CLAIMS.c.outcome == "failed",
                       CLAIMS.c.attempt == prior.attempt)
                .values(executor=executor, claimed_at=db_time(now), args_digest=args_digest, result_digest=None,
                        outcome=None, finished_at=None, attempt=prior.attempt + 1)
            )
        if done.rowcount != 1:
            raise StepAlreadyClaimed(f"step {index} of plan {pid} was claimed again by another call first; "
                                     "a step runs at most once per allowed attempt")
        return ClaimRecord(record.id, index, executor, from_db_time(db_time(now)), args_digest, None, None, None,
                           prior.attempt + 1)
