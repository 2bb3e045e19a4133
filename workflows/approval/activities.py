"""The approval workflow's IO: the plan store, the trust store, the policy, the audit log, notifications.

    acts = ApprovalActivities(services, instance_key=load_instance_key(settings.home))
    Worker(client, task_queue=..., workflows=[PlanApproval], activities=acts.all(), activity_executor=pool)

Every activity is synchronous (the stores are), runs in the worker's thread pool, and is
idempotent: ``record_decision`` stores an envelope once (``PlanStore.add_approval``), the
state moves are guarded ``UPDATE ... WHERE state = old``, and the audit entries carry the
workflow's ``event_id`` so a retried append is recognisable. A refusal (an approval that
would not count, a plan that no longer verifies) is a non-retryable ``ApplicationError`` of
type ``refused`` with ``{"code": ...}``: the workflow hands it to the approver unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from writ.engine.core import reasons
from writ.engine.core.errors import NotificationError, WritError
from writ.engine.core.timeutil import utc_now
from writ.engine.wiring.services import Services
from writ.plans.approval_result import ApprovalResult
from writ.plans.assessment import policy_input, requirement_for
from writ.plans.contacts import ContactStore, check_email
from writ.plans.keys import PrivateKey
from writ.plans.lifecycle import PlanState
from writ.workflows.approval.models import (
    ApprovalCount,
    DecisionSeen,
    Notice,
    OpenedPlan,
    PlanAt,
    PlanSnapshot,
    Recipient,
    RecordDecision,
    RetryPolicyData,
    Schedule,
    WorkflowEvent,
)

__all__ = ["SCHEDULE_PATH", "ApprovalActivities", "count_of"]

SCHEDULE_PATH = "writ.approval.schedule"
ENDED_STATES = frozenset({PlanState.REJECTED, PlanState.EXPIRED, PlanState.COMPLETED, PlanState.FAILED,
                          PlanState.ABORTED})
AUDIT_KIND = "workflow"


def refused(e: WritError) -> ApplicationError:
    """A store refusal as the workflow passes it on: type ``refused``, the code in the details."""
    # BENIGN: a refusal is an answer, not a fault; the worker does not log it as an error.
    return ApplicationError(e.message, {"code": e.code, "stage": "store"}, type="refused", non_retryable=True,
                            category=ApplicationErrorCategory.BENIGN)


def _stored_email(address: str) -> str:
    """``address`` as ``send_email`` writes it (``check_email``), or as given when it is no address at all."""
    try:
        return check_email(address)
    except WritError:
        return address


def count_of(plan_id: str, state: str, result: ApprovalResult) -> ApprovalCount:
    """What an approver is told after a decision."""
    return ApprovalCount(
        plan_id=plan_id, state=state, approvals=len(result.approvals), quorum=result.requirement.quorum,
        approvers=result.approvers, rejected_by=tuple(r.principal for r in result.rejections),
        missing=result.missing,
        decisions=tuple(DecisionSeen(approver=d.principal, decision=d.decision, at=d.at)
                        for d in sorted((*result.approvals, *result.rejections), key=lambda d: d.index)),
    )


class ApprovalActivities:
    """The activities of one Writ deployment (one database), bound to its wired stores."""

    def __init__(self, services: Services, *, instance_key: PrivateKey | None) -> None:
        self._w = services
        self._key = instance_key
        self._contacts = ContactStore(services.store, audit=services.audit)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for ``Worker(activities=...)``."""
        return [self.open_plan, self.record_decision, self.expire_plan, self.plan_state, self.export_bundle,
                self.record_event, self.notify_webhook, self.notify_email]

    # -- the plan ---------------------------------------------------------------------------

    @activity.defn(name="open_plan")
    def open_plan(self, plan_id: str) -> OpenedPlan:
        """The plan's requirement and schedule from policy, its count, who may decide, the channels."""
        w, now = self._w, utc_now()
        try:
            result = w.plans.evaluate(plan_id, now=now)
            record = w.plans.get(plan_id)
            plan = w.plans.verified_plan(record, w.trust.trust_set(), now)
            requirement = requirement_for(w.policy, plan, now)
        except WritError as e:
            if e.code in (reasons.STORE_UNAVAILABLE, reasons.AUDIT_UNAVAILABLE):
                raise  # a database that is away: retried until it is back (a refusal would end the workflow)
            raise refused(e) from None
        schedule = self._schedule(plan, now)
        people = w.trust.principals()
        groups = w.trust.groups()
        eligible = [p.name for p in people if p.role == "approver" and p.name != plan.planner
                    and (not requirement.required_groups or set(p.groups) & set(requirement.required_groups))]
        escalation = sorted({m for g in schedule.escalate_to for m in groups.get(g, ())} - {plan.planner})
        notify = w.settings.notify
        channels = tuple(c for c, on in (("webhook", notify.webhook_url), ("email", notify.smtp_host)) if on)
        return OpenedPlan(
            state=record.state.value, requirement=requirement.model_dump(mode="json"), schedule=schedule,
            count=count_of(plan_id, record.state.value, result),
            decided=(*result.approvers, *(r.principal for r in result.rejections)),
            approvers=self._recipients(eligible), escalation=self._recipients(escalation), channels=channels,
            retry=RetryPolicyData(max_attempts=notify.max_attempts, first_retry_s=notify.first_retry_s,
                                  timeout_s=notify.timeout_s),
            link=f"{w.settings.public_url.rstrip('/')}/plans/{plan_id}",
        )

    def _schedule(self, plan: Any, now: datetime) -> Schedule:
        """``data.writ.approval.schedule``; none (no reminders) if the policy does not define it."""
        try:
            raw = self._w.policy.evaluate(SCHEDULE_PATH, policy_input(plan, [], now))
            return Schedule.model_validate(raw) if raw is not None else Schedule()
        except (WritError, ValidationError) as e:
            activity.logger.warning("no reminder schedule for plan %s: %s", plan.id, e)
            return Schedule()

    def _recipients(self, names: Iterable[str]) -> tuple[Recipient, ...]:
        names = list(names)
        emails = self._contacts.emails(names)
        return tuple(Recipient(principal=n, email=emails.get(n)) for n in names)

    @activity.defn(name="record_decision")
    def record_decision(self, request: RecordDecision) -> ApprovalCount:
        """Verify, store and count one signed decision (``PlanStore.add_approval``): the only writer of approvals."""
        info = activity.info()
        via = {"workflow_id": info.workflow_id or "", "run_id": info.workflow_run_id or ""}
        try:
            result = self._w.plans.add_approval(request.plan_id, request.envelope.encode(), via=via)
            state = self._w.plans.get(request.plan_id).state.value
        except WritError as e:
            if e.code in (reasons.STORE_UNAVAILABLE, reasons.AUDIT_UNAVAILABLE):
                raise  # retried by the activity's retry policy
            raise refused(e) from None
        return count_of(request.plan_id, state, result)

    @activity.defn(name="expire_plan")
    def expire_plan(self, at: PlanAt) -> PlanSnapshot:
        """At the workflow's expiry timer: the plan becomes ``expired`` unless a decision settled it first."""
        return self._snapshot(at)

    @activity.defn(name="plan_state")
    def plan_state(self, at: PlanAt) -> PlanSnapshot:
        """The plan's state now (an approved plan never begun expires here at its time)."""
        return self._snapshot(at)

    def _snapshot(self, at: PlanAt) -> PlanSnapshot:
        # The workflow's clock decides expiry; the real clock can only make it earlier, never later.
        now = max(utc_now(), at.at)
        try:
            self._w.plans.evaluate(at.plan_id, now=now)
        except WritError as e:
            if e.code in (reasons.STORE_UNAVAILABLE, reasons.AUDIT_UNAVAILABLE):
                raise
            # a plan that no longer verifies cannot be counted; its state is what the store says
        state = self._w.plans.get(at.plan_id).state
        return PlanSnapshot(state=state.value, ended=state in ENDED_STATES)

    @activity.defn(name="export_bundle")
    def export_bundle(self, plan_id: str) -> str:
        """When execution ended: the plan's attestation bundle under ``<data dir>/bundles/``, its digest logged.

        Returns ``exported`` or ``failed``. A bundle that cannot be made (no instance key, a plan
        that no longer reads) is logged as ``export_failed`` with the reason, not retried; a
        database that is away is retried.
        """
        from writ.engine.wiring.bundles import save_bundle

        try:
            path, digest = save_bundle(self._w, plan_id)
        except WritError as e:
            if e.code in (reasons.STORE_UNAVAILABLE, reasons.AUDIT_UNAVAILABLE):
                raise
            self._append({"plan_id": plan_id, "event": "export_failed", "code": e.code, "reason": e.message})
            return "failed"
        self._append({"plan_id": plan_id, "event": "exported", "bundle": path.name, "bundle_sha256": digest})
        return "exported"

    @activity.defn(name="record_event")
    def record_event(self, event: WorkflowEvent) -> None:
        """One audit entry (kind ``workflow``) with the workflow and run ids."""
        # the fixed fields last: a detail can never pass for another event or plan
        self._append({**event.details, "plan_id": event.plan_id, "event": event.event, "event_id": event.event_id})

    def _append(self, payload: dict[str, Any]) -> None:
        info = activity.info()
        self._w.audit.append(AUDIT_KIND, {**payload, "workflow_id": info.workflow_id or "",
                                          "run_id": info.workflow_run_id or ""})

    # -- notifications ---------------------------------------------------------------------

    @activity.defn(name="notify_webhook")
    def notify_webhook(self, notice: Notice) -> str:
        """POST the notice, signed with the instance key; an error is retried with backoff by Temporal."""
        if self._key is None:
            raise ApplicationError("no instance key to sign webhook notices: run `writ init`",
                                   {"code": reasons.INSTANCE_KEY_MISSING}, non_retryable=True)
        from writ.workflows.approval.notify import send_webhook

        key = self._key
        return self._send(lambda: send_webhook(self._w.settings.notify, key, notice))

    @activity.defn(name="notify_email")
    def notify_email(self, notice: Notice) -> str:
        """One email per recipient with an address (``writ principals contact``)."""
        from writ.workflows.approval.notify import send_email

        # What is said goes to the audit log, which cannot be edited: principals' names, never their addresses.
        names = {form: r.principal for r in notice.recipients if r.email
                 for form in (r.email, _stored_email(r.email))}
        return self._send(lambda: send_email(self._w.settings.notify, notice), names)

    @staticmethod
    def _send(send: Callable[[], str], names: dict[str, str] | None = None) -> str:
        def said(text: str) -> str:  # each address as its principal's name, the longest first
            for address, name in sorted((names or {}).items(), key=lambda item: -len(item[0])):
                text = text.replace(address, name)
            return text

        try:
            return said(send())
        except NotificationError as e:
            attempt = activity.info().attempt
            # A receiver that refuses the notice (4xx, a bad URL) is not asked again; a busy one is.
            raise ApplicationError(f"{said(e.message)} (attempt {attempt})", {"code": e.code},
                                   non_retryable=not e.retryable) from None
