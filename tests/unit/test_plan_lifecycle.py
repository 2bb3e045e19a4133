"""The plan lifecycle state machine, driven directly (no IO)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from writ.engine.policy.models import PlanContext
from writ.plans.lifecycle import TERMINAL, TRANSITIONS, IllegalTransition, PlanEvent, PlanState, transition


def test_happy_path() -> None:
    s = PlanState.PROPOSED
    for ev, expected in [("submit", "pending"), ("approve", "approved"), ("begin", "executing"),
                         ("complete", "completed")]:
        s = transition(s, ev)
        assert s == expected


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_have_no_way_out(state: PlanState) -> None:
    for ev in PlanEvent:
        with pytest.raises(IllegalTransition, match=f"{state.value} is final"):
            transition(state, ev)


def test_cannot_execute_an_unapproved_plan() -> None:
    with pytest.raises(IllegalTransition, match="a plan in state pending cannot begin"):
        transition(PlanState.PENDING, PlanEvent.BEGIN)


def test_an_executing_plan_can_no_longer_expire() -> None:
    with pytest.raises(IllegalTransition, match="allowed: abort, complete, fail"):
        transition(PlanState.EXECUTING, PlanEvent.EXPIRE)


def test_unknown_state_or_event_is_a_typed_error() -> None:
    with pytest.raises(IllegalTransition, match="unknown plan state or event"):
        transition("paused", "begin")


@given(st.sampled_from(list(PlanState)), st.sampled_from(list(PlanEvent)))
def test_transition_is_exactly_the_table(state: PlanState, event: PlanEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert transition(state, event) == TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition):
            transition(state, event)


def test_policy_input_knows_every_lifecycle_state() -> None:
    # One PlanState: the policy input's plan state is the lifecycle's own enum.
    assert PlanContext.model_fields["state"].annotation is PlanState
