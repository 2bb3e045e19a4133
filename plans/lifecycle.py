"""The plan lifecycle as a state machine with no IO: the store and the workflow call it.

    state = transition(PlanState.PENDING, PlanEvent.APPROVE)     # PlanState.APPROVED
    transition(PlanState.COMPLETED, PlanEvent.BEGIN)             # IllegalTransition

    proposed -> pending -> approved | rejected | expired -> executing -> completed | failed | aborted

A plan can be aborted at any point before it ends, and expire at any point before it
starts executing. Terminal states have no way out.
"""

from __future__ import annotations

from enum import StrEnum

from writ.engine.core import reasons
from writ.engine.core.errors import WritError


class PlanState(StrEnum):
    """Where a plan is in its life, as ``writ plan list`` shows it: ``PlanState("approved") is PlanState.APPROVED``."""

    PROPOSED = "proposed"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


class PlanEvent(StrEnum):
    """What happens to a plan; each event moves it along one edge of ``TRANSITIONS``.

        transition(PlanState.APPROVED, PlanEvent.BEGIN)   # PlanState.EXECUTING
    """

    SUBMIT = "submit"  # the planner's signed plan is stored and waits for approvals
    APPROVE = "approve"  # the approval requirement is satisfied
    REJECT = "reject"  # a counted approver rejected it
    EXPIRE = "expire"  # its expiry passed before it began
    BEGIN = "begin"  # an executor bound it to a session
    COMPLETE = "complete"  # every step ran
    FAIL = "fail"  # a step failed
    ABORT = "abort"  # someone with the right stopped it


class IllegalTransition(WritError):
    """An event the plan's state does not allow, e.g. ``begin`` on a completed plan (``illegal_transition``).

        transition(PlanState.COMPLETED, PlanEvent.BEGIN)
        # IllegalTransition: a plan in state completed cannot begin (completed is final)
    """

    code = reasons.ILLEGAL_TRANSITION


S, E = PlanState, PlanEvent

TRANSITIONS: dict[tuple[PlanState, PlanEvent], PlanState] = {
    (S.PROPOSED, E.SUBMIT): S.PENDING,
    (S.PENDING, E.APPROVE): S.APPROVED,
    (S.PENDING, E.REJECT): S.REJECTED,
    (S.APPROVED, E.BEGIN): S.EXECUTING,
    (S.EXECUTING, E.COMPLETE): S.COMPLETED,
    (S.EXECUTING, E.FAIL): S.FAILED,
    **{(s, E.EXPIRE): S.EXPIRED for s in (S.PROPOSED, S.PENDING, S.APPROVED)},
    **{(s, E.ABORT): S.ABORTED for s in (S.PROPOSED, S.PENDING, S.APPROVED, S.EXECUTING)},
}

TERMINAL = frozenset({S.REJECTED, S.EXPIRED, S.COMPLETED, S.FAILED, S.ABORTED})


def transition(state: PlanState | str, event: PlanEvent | str) -> PlanState:
    """The state after ``event``; ``IllegalTransition`` if the event is not allowed in ``state``."""
    try:
        state, event = PlanState(state), PlanEvent(event)
    except ValueError as e:
        raise IllegalTransition(f"unknown plan state or event: {e}") from None
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        allowed = sorted(ev.value for (st, ev) in TRANSITIONS if st == state)
        hint = f"allowed: {', '.join(allowed)}" if allowed else f"{state.value} is final"
        raise IllegalTransition(f"a plan in state {state.value} cannot {event.value} ({hint})") from None
