"""Verified envelopes are remembered, and the memory never lets through what a full check refuses.

Each case verifies an envelope once (so it is cached), changes one thing, and checks that the
second verification refuses exactly as a verification with an empty cache does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from writ.engine.core.errors import SignatureError, WritError
from writ.plans.approval_result import ApprovalRequirement, IgnoreReason
from writ.plans.keys import PrivateKey
from writ.plans.models import Plan, PlanStep
from writ.plans.statements import sign_approval, sign_plan
from writ.plans.trust import TrustedKey, TrustSet
from writ.plans.verify import evaluate_approvals, verify_plan_envelope
from writ.plans.verify_cache import PLANS, clear_verified

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
QUORUM_2 = ApprovalRequirement(quorum=2)
KEYS = {name: PrivateKey.generate() for name in ("alice", "bob", "carol")}
ROLES = {"alice": "planner", "bob": "approver", "carol": "approver"}


def trust_set(**windows: dict[str, Any]) -> TrustSet:
    """alice plans, bob and carol approve; ``windows`` gives a principal's key a validity window."""
    return TrustSet.of([TrustedKey(principal=n, role=ROLES[n], public_key=k.public_key, **windows.get(n, {}))
                        for n, k in KEYS.items()])


PLAN = Plan.new(title="Fix README", rationale="typo", planner="alice", now=NOW - timedelta(minutes=5),
                ttl=timedelta(hours=4),
                steps=[PlanStep(server="fs", tool="write_file", definition_digest="sha256:" + "ab" * 32,
                                args={"path": "/repo/README.md", "content": "hello\n"})])
ENVELOPE = sign_plan(PLAN, KEYS["alice"]).to_json()
APPROVAL_ENVELOPES = [sign_approval(PLAN.id, KEYS[n], approver=n, at=NOW).to_json() for n in ("bob", "carol")]


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    clear_verified()
    yield
    clear_verified()


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except WritError as e:
        return "refused", (type(e).__name__, e.code, e.message)


def test_a_verified_plan_is_found_again_for_the_same_bytes_and_keys() -> None:
    trust = trust_set()
    first = verify_plan_envelope(ENVELOPE, trust, now=NOW)
    hits = PLANS.hits
    again = verify_plan_envelope(ENVELOPE, trust_set(), now=NOW)  # another trust set object, the same keys
    assert again == first == PLAN and again.id == PLAN.id
    assert PLANS.hits == hits + 1


def test_planner_key_revoked_after_a_cached_verification_is_refused() -> None:
    verify_plan_envelope(ENVELOPE, trust_set(), now=NOW)
    revoked = trust_set(alice={"revoked_at": NOW - timedelta(minutes=1)})
    with pytest.raises(SignatureError, match="which was revoked at 2026-11-22T09:59:00Z") as e:
        verify_plan_envelope(ENVELOPE, revoked, now=NOW)
    assert e.value.code == "key_invalid"


def test_planner_key_revoked_from_later_on_refuses_once_that_time_comes() -> None:
    """The same trust set, cached verification: validity is checked at each call's own time."""
    trust = trust_set(alice={"revoked_at": NOW + timedelta(minutes=1)})
    assert verify_plan_envelope(ENVELOPE, trust, now=NOW) == PLAN
    with pytest.raises(SignatureError, match="which was revoked") as e:
        verify_plan_envelope(ENVELOPE, trust, now=NOW + timedelta(minutes=1))
    assert e.value.code == "key_invalid"


def test_approver_key_revoked_after_a_cached_count_no_longer_counts() -> None:
    trust = trust_set()
    assert evaluate_approvals(PLAN, APPROVAL_ENVELOPES, trust, now=NOW, requirement=QUORUM_2).approved
    revoked = trust_set(carol={"revoked_at": NOW - timedelta(minutes=1)})
    result = evaluate_approvals(PLAN, APPROVAL_ENVELOPES, revoked, now=NOW, requirement=QUORUM_2)
    assert not result.approved
    assert [(i.principal, i.reason) for i in result.ignored] == [("carol", IgnoreReason.KEY_INVALID)]


def test_a_cached_approval_is_checked_against_the_plan_it_is_counted_for() -> None:
    evaluate_approvals(PLAN, APPROVAL_ENVELOPES, trust_set(), now=NOW, requirement=QUORUM_2)
    other = PLAN.model_copy(update={"title": "Delete README"})
    result = evaluate_approvals(other, APPROVAL_ENVELOPES, trust_set(), now=NOW, requirement=QUORUM_2)
    assert {i.reason for i in result.ignored} == {IgnoreReason.WRONG_PLAN} and not result.approved


def test_a_planner_key_moved_to_another_principal_is_another_trust_set() -> None:
    verify_plan_envelope(ENVELOPE, trust_set(), now=NOW)
    moved = TrustSet.of([TrustedKey(principal="mallory", role="planner", public_key=KEYS["alice"].public_key)])
    with pytest.raises(SignatureError, match="plan names planner 'alice' but is signed by key .* of principal 'mallory'"):
        verify_plan_envelope(ENVELOPE, moved, now=NOW)


def test_a_planner_key_given_another_role_no_longer_signs_plans() -> None:
    verify_plan_envelope(ENVELOPE, trust_set(), now=NOW)
    demoted = TrustSet.of([TrustedKey(principal="alice", role="approver", public_key=KEYS["alice"].public_key)])
    with pytest.raises(SignatureError, match=r"\(an approver key\), expected a key of a planner"):
        verify_plan_envelope(ENVELOPE, demoted, now=NOW)


def test_a_planner_key_removed_from_the_trust_set_no_longer_signs_plans() -> None:
    verify_plan_envelope(ENVELOPE, trust_set(), now=NOW)
    without = TrustSet.of([TrustedKey(principal="bob", role="approver", public_key=KEYS["bob"].public_key)])
    with pytest.raises(SignatureError, match="does not verify under any trusted planner key"):
        verify_plan_envelope(ENVELOPE, without, now=NOW)


EDITS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@EDITS
@given(position=st.integers(0, len(ENVELOPE) - 1), byte=st.integers(0, 255))
def test_one_byte_edited_in_a_cached_plan_envelope_gets_the_full_check(position: int, byte: int) -> None:
    """Any one-byte edit: the same answer as with an empty cache, and never another plan."""
    if ENVELOPE[position] == byte:
        return
    edited = ENVELOPE[:position] + bytes([byte]) + ENVELOPE[position + 1:]
    trust = trust_set()
    verify_plan_envelope(ENVELOPE, trust, now=NOW)  # cached
    warm = outcome(lambda: verify_plan_envelope(edited, trust, now=NOW))
    clear_verified()
    cold = outcome(lambda: verify_plan_envelope(edited, trust, now=NOW))
    assert warm == cold
    if warm[0] == "ok":  # only the signature's key id is an unsigned hint
        assert warm[1] == PLAN
        assert json.loads(edited)["payload"] == json.loads(ENVELOPE)["payload"]


@EDITS
@given(position=st.integers(0, len(APPROVAL_ENVELOPES[0]) - 1), byte=st.integers(0, 255))
def test_one_byte_edited_in_a_cached_approval_gets_the_full_check(position: int, byte: int) -> None:
    original = APPROVAL_ENVELOPES[0]
    if original[position] == byte:
        return
    edited = [original[:position] + bytes([byte]) + original[position + 1:], APPROVAL_ENVELOPES[1]]
    trust = trust_set()
    evaluate_approvals(PLAN, APPROVAL_ENVELOPES, trust, now=NOW, requirement=QUORUM_2)  # cached
    warm = evaluate_approvals(PLAN, edited, trust, now=NOW, requirement=QUORUM_2)
    clear_verified()
    cold = evaluate_approvals(PLAN, edited, trust, now=NOW, requirement=QUORUM_2)
    assert warm == cold
    if warm.approved:
        assert json.loads(edited[0])["payload"] == json.loads(original)["payload"]


def test_a_refused_envelope_is_not_remembered() -> None:
    trust = TrustSet.of([TrustedKey(principal="bob", role="approver", public_key=KEYS["bob"].public_key)])
    before = PLANS.hits
    for _ in range(2):
        with pytest.raises(SignatureError, match="does not verify under any trusted planner key"):
            verify_plan_envelope(ENVELOPE, trust, now=NOW)
    assert PLANS.hits == before
