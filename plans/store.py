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
  store: a plans row edited in the database stops the plan. ``begin`` and every
  claim re-count the approvals with ``require_approved`` under the requirement the
  policy gives *now*, and ask the policy as well; both must say yes (ADR 0008). A
  plan no longer backed (a planner or approver key revoked since, an approver out of
  a required group) is refused ``plan_not_backed`` and aborted; the verdict is cached
  while the trust store's revision and the policy's are unchanged (ADR 0009). The
  stored state is a gate, never the proof.
- A failed step fails its plan, unless the policy allows claiming it again
  (``writ.plans.step_results``); an ordered plan's step waits for the previous one to succeed.
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

The store has two sides: ``writ.plans.submission`` (submit, add approvals, evaluate)
and ``writ.plans.execution`` (begin, claim steps; with ``writ.plans.execution_backing``
for the backing check and ``writ.plans.step_results`` for results, finish, expire), on a
shared base (``writ.plans.store_base``: reads, verification of a
stored plan, guarded state changes). The records it returns are in ``writ.plans.records``.
"""

from __future__ import annotations

from writ.plans.execution import PlanExecution
from writ.plans.submission import PlanSubmission

__all__ = ["PlanStore"]


class PlanStore(PlanSubmission, PlanExecution):
    """Plans in a ``Database``, verified against a ``TrustStore``, approved under a policy. Process-safe.

        plans = PlanStore(db, TrustStore(db), EmbeddedEngine(Path("policies")), audit=AuditLog(db))
        record = plans.submit(sign_plan(plan, alice_key).to_json())
        plans.add_approval(record.id, sign_approval(record.id, bob_key, approver="bob").to_json())
        plans.begin(record.id, "exec-bot")

    One class for callers; the submit/approve side (``PlanSubmission``) and the execution
    side (``PlanExecution``) live in their own modules and share ``PlanStoreBase``.
    """
