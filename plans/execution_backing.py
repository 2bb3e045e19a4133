"""Is an executing plan still backed? Checked on every step claim, cheaply while nothing changed.

    plan = plans.backed_plan(plans.get(plan_id), now)   # the verified Plan, or ClaimRefused (plan_not_backed)

Backed means what ``begin`` checked (ADR 0008), under the trust store and the policy as
they are *now*: the stored envelope verifies under a valid key of its planner, and the
stored approvals meet the requirement the policy gives now, by the verifier
(``require_approved``) and by the ``writ.approval`` policy. So a key revoked after the
plan began (``writ keys revoke KEY --at T``), a key whose window closed, an approver taken
out of a required group, or a policy that now asks more stops the next step: the claim
is refused with ``plan_not_backed`` and the plan is aborted (ADR 0009), both audited.

Verifying costs signatures and two policy evaluations; ``writ.plans.backing.BackingCache``
keeps a "backed" verdict keyed on the plan's and its approvals' bytes, the trust store's
revision and the policy set's revision, so a claim under an unchanged trust store reads
two small rows and verifies nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from writ.engine.core import reasons
from writ.engine.core.errors import ApprovalError, ClaimRefused, PlanExpired, SignatureError, WritError
from writ.engine.core.timeutil import iso
from writ.plans.backing import BackingKey, next_change, policy_revision
from writ.plans.lifecycle import PlanEvent, PlanState
from writ.plans.models import Plan, short_plan_id
from writ.plans.records import PlanRecord, PlanStatus
from writ.plans.store_base import PlanStoreBase
from writ.plans.trust import TrustSet
from writ.plans.verify import require_approved

__all__ = ["BackedExecution", "policy_not_satisfied"]

log = logging.getLogger(__name__)


class BackedExecution(PlanStoreBase):
    """The check every step claim makes: is the executing plan still backed? Part of ``PlanStore``.

        plan = plans.backed_plan(record, now)     # cached while the trust store and the policy are unchanged
        plans.backing.hits, plans.backing.misses
    """

    def backed_plan(self, record: PlanRecord, now: datetime) -> Plan:
        """The verified plan of ``record`` if it is still backed and unexpired at ``now``.

        ``ClaimRefused`` (``plan_not_backed``) when the planner's key or the approvals no
        longer hold; ``PlanExpired``; and, unchanged, what verification raises for a row
        changed outside Writ or a policy that cannot answer (``approval_policy_failed``).
        """
        approvals = self.approvals(record.id)
        # The revisions are read before the trust set: a change in between only costs a re-check.
        key = BackingKey.of(record, approvals, self.trust.revision(), policy_revision(self.policy))
        plan = self.backing.get(key, now)
        if plan is None:
            trust = self.trust.trust_set()
            plan = self._verify_backing(record, [a.envelope for a in approvals], trust, now)
            self.backing.put(key, plan, now, next_change(trust, now))
        if plan.is_expired(now):
            raise PlanExpired(f"plan {short_plan_id(record.id)} expired at {iso(plan.expires_at)}: "
                              "no step of it may run")
        return plan

    def _verify_backing(self, record: PlanRecord, envelopes: Sequence[bytes], trust: TrustSet, now: datetime) -> Plan:
        pid = short_plan_id(record.id)
        # 1. the envelope verifies under a key of its planner valid now
        try:
            plan = self.verified_plan(record, trust, now)
        except SignatureError as e:
            if e.code != reasons.KEY_INVALID:
                raise  # not a valid signature at all: a row changed outside Writ, refused as such
            raise ClaimRefused(f"plan {pid} is no longer backed: {e.message}", code=reasons.PLAN_NOT_BACKED) from None
        # 2. not expired
        if plan.is_expired(now):
            raise PlanExpired(f"plan {pid} expired at {iso(plan.expires_at)}: no step of it may run")
        # 3. the approvals meet the requirement now, by the verifier and by the policy
        status = self._assess(record, plan, envelopes, trust, now)
        self._log_disagreement(status)
        try:
            require_approved(plan, envelopes, trust, now=now, requirement=status.result.requirement,
                             limits=self.limits)
        except PlanExpired:
            raise
        except ApprovalError as e:
            raise ClaimRefused(f"plan {pid} is no longer backed by its approvals: {e.message}",
                               code=reasons.PLAN_NOT_BACKED) from None
        if not status.policy.satisfied:
            raise ClaimRefused(f"plan {pid} is no longer backed: {policy_not_satisfied(pid, status)}",
                               code=reasons.PLAN_NOT_BACKED)
        return plan

    def abort_unbacked(self, plan_id: str, why: str, now: datetime) -> None:
        """Abort an executing plan found no longer backed (``plan_event`` ``abort`` with ``plan_not_backed``).

        The refusal that found it stands whatever happens here: a plan that ended meanwhile
        stays as it is, and a failure to abort is logged.
        """
        try:
            self._move(plan_id, PlanState.EXECUTING, PlanEvent.ABORT, now,
                       {"code": reasons.PLAN_NOT_BACKED, "reason": why})
        except WritError as e:
            log.warning("plan %s is no longer backed but was not aborted: %s", plan_id, e.message)


def policy_not_satisfied(pid: str, status: PlanStatus) -> str:
    """Why the ``writ.approval`` policy does not find the plan approved, for an ``ApprovalError``."""
    policy = status.policy
    missing = policy.missing
    return (
        f"the writ.approval policy does not find plan {pid} approved (counted: "
        f"{', '.join(policy.counted) or 'none'}; missing {missing.approvals} approvals"
        + (f" and groups {', '.join(missing.groups)}" if missing.groups else "")
        + (f"; {'; '.join(v.message for v in policy.violations)}" if policy.violations else "")
        + ")"
    )
