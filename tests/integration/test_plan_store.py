"""The plan store on real databases, one test per attack; and the approval policy adapter against the verifier.

Every plan is signed with keys generated here, stored in SQLite or a fresh PostgreSQL
schema, and approved under the shipped ``writ.approval`` policy (fs and git need two
approvals including a code owner: alice or bob). Tampering is done with raw SQL, as
an attacker with database access would.
"""

from __future__ import annotations

import base64
import json
import shutil
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import SQLModel
from support.faults import AuditLogRefusingOnce

from writ.attestations.audit import AuditLog
from writ.engine.core.db import Database
from writ.engine.core.errors import (
    ApprovalError,
    ApprovalPolicyError,
    ApprovalRefused,
    AuditError,
    ClaimRefused,
    ConflictError,
    InputError,
    PermissionDenied,
    PlanExpired,
    SignatureError,
    StepAlreadyClaimed,
    StoreError,
    VerificationError,
)
from writ.engine.core.settings import Limits
from writ.engine.policy.embedded import EmbeddedEngine
from writ.plans.approval_result import IgnoreReason
from writ.plans.assessment import (
    PYTHON_ONLY_REASONS,
    disagreements,
    policy_result,
    requirement_for,
    verified_approvals,
)
from writ.plans.canonical import digest
from writ.plans.dsse import Envelope, sign
from writ.plans.keys import PrivateKey
from writ.plans.lifecycle import PlanEvent, PlanState
from writ.plans.models import Plan, PlanLimits, PlanStep
from writ.plans.statements import (
    IN_TOTO_PAYLOAD_TYPE,
    PLAN_PAYLOAD_TYPE,
    ApprovalStatement,
    sign_approval,
    sign_plan,
)
from writ.plans.store import PlanStore
from writ.plans.trust import Role, TrustedKey, TrustSet
from writ.plans.trust_store import TrustStore, groups_from_policy_data, policy_groups
from writ.plans.verify import evaluate_approvals

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DEF = "sha256:" + "ab" * 32
OTHER_DEF = "sha256:" + "ac" * 32
PRINCIPALS: list[tuple[str, Role]] = [
    ("plan-bot", "planner"),
    ("plan-bot-2", "planner"),
    ("alice", "approver"),  # code-owners
    ("bob", "approver"),  # code-owners
    ("carol", "approver"),  # security
    ("dave", "approver"),  # in no group
    ("exec-bot", "executor"),
    ("exec-bot-2", "executor"),
    ("audit-bot", "auditor"),
]


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(policy_dir: Path) -> EmbeddedEngine:
    return EmbeddedEngine(policy_dir)


def steps(content: str = "hello\n") -> list[PlanStep]:
    return [
        PlanStep(server="fs", tool="write_file", definition_digest=DEF,
                 args={"path": "/repo/README.md", "content": content}),
        PlanStep(server="git", tool="git_commit", definition_digest=DEF, args={"message": "Fix README"}),
    ]


CALLS: list[dict[str, Any]] = [
    {"server": "fs", "tool": "write_file", "definition_digest": DEF,
     "args": {"path": "/repo/README.md", "content": "hello\n"}},
    {"server": "git", "tool": "git_commit", "definition_digest": DEF, "args": {"message": "Fix README"}},
]


@dataclass
class World:
    store: Database
    trust: TrustStore
    plans: PlanStore
    keys: dict[str, PrivateKey] = field(default_factory=dict)

    def new_plan(self, planner: str = "plan-bot", ttl: timedelta = timedelta(hours=4), **kw: Any) -> Plan:
        return Plan.new(title="Fix README", rationale="typo reported in #12", planner=planner,
                        steps=kw.pop("steps", None) or steps(), ttl=ttl, now=kw.pop("now", NOW - timedelta(minutes=5)),
                        **kw)

    def signed(self, plan: Plan, key: str = "plan-bot") -> bytes:
        return sign_plan(plan, self.keys[key]).to_json()

    def decision(self, plan_id: str, who: str, decision: str = "approve", *, key: str | None = None,
                 comment: str = "") -> bytes:
        return sign_approval(plan_id, self.keys[key or who], approver=who, decision=decision,  # type: ignore[arg-type]
                             comment=comment, at=NOW).to_json()

    def pending(self, **kw: Any) -> Plan:
        plan = self.new_plan(**kw)
        self.plans.submit(self.signed(plan, plan.planner), now=NOW)
        return plan

    def approved(self, **kw: Any) -> Plan:
        plan = self.pending(**kw)
        self.plans.add_approval(plan.id, self.decision(plan.id, "alice"), now=NOW)
        self.plans.add_approval(plan.id, self.decision(plan.id, "bob"), now=NOW)
        assert self.plans.get(plan.id).state is PlanState.APPROVED
        return plan

    def executing(self, **kw: Any) -> Plan:
        plan = self.approved(**kw)
        self.plans.begin(plan.id, "exec-bot", now=NOW)
        return plan

    def claim(self, plan: Plan, index: int, *, executor: str = "exec-bot", now: datetime = NOW,
              **changes: Any) -> Any:
        call = {**CALLS[index], **changes}
        return self.plans.claim_step(plan.id, index, executor, now=now, **call)

    def sql(self, statement: str, **params: Any) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(text(statement), params)

    def audit(self) -> list[tuple[str, Any]]:
        return [(e.kind, e.payload) for e in AuditLog(self.store).tail(1000)]


def make_world(store: Database, engine: Any) -> World:
    trust = TrustStore(store, policy_groups(engine), audit=AuditLog(store))
    w = World(store, trust, PlanStore(store, trust, engine, audit=AuditLog(store)))
    for name, role in PRINCIPALS:
        trust.add_principal(name, role)
        w.keys[name] = PrivateKey.generate()
        trust.add_key(name, w.keys[name].public_key)
    return w


@pytest.fixture
def world(store: Database, engine: EmbeddedEngine) -> World:
    return make_world(store, engine)


def policies_with(policy_dir: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the shipped policies with one edit in approval.rego (a real, different policy)."""
    mine = tmp_path / "policies"
    shutil.copytree(policy_dir, mine, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    rego = mine / "writ" / "approval.rego"
    source = rego.read_text()
    assert old in source
    rego.write_text(source.replace(old, new, 1))
    return mine


# -- the whole lifecycle --------------------------------------------------------------------------


def test_plan_from_submit_to_completed(world: World) -> None:
    plan = world.new_plan()
    record = world.plans.submit(world.signed(plan), now=NOW)
    assert (record.id, record.state, record.planner, record.title) == (plan.id, PlanState.PENDING, "plan-bot",
                                                                      "Fix README")
    assert record.envelope == world.signed(plan) or record.envelope.startswith(b'{"payload"')

    first = world.plans.add_approval(plan.id, world.decision(plan.id, "alice", comment="diff reviewed"), now=NOW)
    assert (first.approvers, first.missing, first.approved) == (("alice",), ("1 more approval",), False)
    assert world.plans.get(plan.id).state is PlanState.PENDING
    second = world.plans.add_approval(plan.id, world.decision(plan.id, "bob"), now=NOW)
    assert second.approved and world.plans.get(plan.id).state is PlanState.APPROVED

    began = world.plans.begin(plan.id, "exec-bot", now=NOW)
    assert (began.state, began.executor) == (PlanState.EXECUTING, "exec-bot")
    claim = world.claim(plan, 0)
    assert (claim.step_index, claim.executor, claim.args_digest) == (0, "exec-bot", digest(CALLS[0]["args"]))
    result_digest = "sha256:" + "cd" * 32
    done = world.plans.record_result(plan.id, 0, result_digest, "succeeded", now=NOW)
    assert (done.outcome, done.result_digest) == ("succeeded", result_digest)
    world.claim(plan, 1)
    world.plans.record_result(plan.id, 1, None, "succeeded", now=NOW)
    assert world.plans.finish(plan.id, "completed", now=NOW) is PlanState.COMPLETED

    plan_events = [(k, p.get("event"), p.get("from"), p.get("to")) for k, p in world.audit()
                   if k in ("plan_event", "approval", "step_claim", "step_result")]
    assert plan_events == [
        ("plan_event", "submit", "proposed", "pending"),
        ("approval", None, None, None),
        ("approval", None, None, None),
        ("plan_event", "approve", "pending", "approved"),
        ("plan_event", "begin", "approved", "executing"),
        ("step_claim", None, None, None),
        ("step_result", None, None, None),
        ("step_claim", None, None, None),
        ("step_result", None, None, None),
        ("plan_event", "complete", "executing", "completed"),
    ]
    payloads = [p for k, p in world.audit() if k in ("approval", "step_claim", "step_result")]
    assert payloads[0]["approver"] == "alice" and payloads[0]["key_id"] == world.keys["alice"].key_id
    assert payloads[2]["args_digest"] == claim.args_digest and payloads[2]["claimed"] is True
    assert payloads[3]["result_digest"] == result_digest
    assert AuditLog(world.store).verify().ok


def test_stored_envelope_is_the_exact_bytes_received(world: World) -> None:
    plan = world.new_plan()
    pretty = json.dumps(json.loads(world.signed(plan)), indent=3).encode()  # valid, not canonical
    assert world.plans.submit(pretty, now=NOW).envelope == pretty
    with world.store.connect() as conn:
        assert conn.execute(text("SELECT envelope FROM plans")).scalar_one() == pretty


# -- submit -----------------------------------------------------------------------------------------


def test_same_envelope_submitted_twice_is_stored_once(world: World) -> None:
    plan = world.new_plan()
    world.plans.submit(world.signed(plan), now=NOW)
    again = world.plans.submit(world.signed(plan), now=NOW)
    assert again.state is PlanState.PENDING and len(world.plans.list_plans()) == 1
    assert [p["event"] for k, p in world.audit() if k == "plan_event"] == ["submit"]


def test_same_plan_in_another_envelope_is_a_conflict(world: World) -> None:
    plan = world.new_plan()
    world.plans.submit(world.signed(plan), now=NOW)
    with pytest.raises(ConflictError, match="already stored with a different envelope") as e:
        world.plans.submit(json.dumps(json.loads(world.signed(plan)), indent=1).encode(), now=NOW)
    assert e.value.code == "plan_exists"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        pytest.param("alice", r"plan signed by key [0-9a-f]{12} of principal 'alice' \(an approver key\), "
                     "expected a key of a planner", id="plan_signed_with_an_approver_key"),
        pytest.param("exec-bot", "principal 'exec-bot' \\(an executor key\\)", id="plan_signed_by_the_executor"),
        pytest.param("plan-bot-2", "plan names planner 'plan-bot' but is signed by key [0-9a-f]{12} of "
                     "principal 'plan-bot-2'", id="plan_signed_by_another_planner"),
    ],
)
def test_submit_refuses_a_plan_not_signed_by_its_planner(world: World, key: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        world.plans.submit(world.signed(world.new_plan(), key), now=NOW)
    assert world.plans.list_plans() == []


def test_submit_refuses_an_untrusted_key(world: World) -> None:
    world.keys["mallory"] = PrivateKey.generate()
    with pytest.raises(SignatureError, match="does not verify under any trusted planner key"):
        world.plans.submit(world.signed(world.new_plan(), "mallory"), now=NOW)


def test_submit_refuses_a_payload_edited_after_signing(world: World) -> None:
    env = json.loads(world.signed(world.new_plan()))
    env["payload"] = base64.b64encode(base64.b64decode(env["payload"]).replace(b"hello", b"hellp")).decode()
    with pytest.raises(SignatureError, match=r"signature key ids: [0-9a-f]{12}"):
        world.plans.submit(json.dumps(env).encode(), now=NOW)


def test_submit_refuses_an_expired_plan(world: World) -> None:
    plan = world.new_plan(ttl=timedelta(minutes=1))
    with pytest.raises(PlanExpired, match="expired at 2026-11-22T09:56:00Z; sign it again") as e:
        world.plans.submit(world.signed(plan), now=NOW)
    assert e.value.code == "plan_expired"


def test_submit_refuses_a_plan_valid_longer_than_policy_allows(world: World) -> None:
    plan = world.new_plan(ttl=timedelta(days=2))
    with pytest.raises(ApprovalError, match="stays valid for 172800 seconds, longer than the allowed 86400: sign it") as e:
        world.plans.submit(world.signed(plan), now=NOW)
    assert e.value.code == "plan_ttl_too_long"


def test_submit_enforces_plan_limits(world: World) -> None:
    small = PlanStore(world.store, world.trust, world.plans.policy, limits=PlanLimits(max_steps=1), audit=AuditLog(world.store))
    with pytest.raises(InputError, match=r"plan has 2 steps, the limit is 1 \(max_steps\)"):
        small.submit(world.signed(world.new_plan()), now=NOW)
    tiny = PlanStore(world.store, world.trust, world.plans.policy, limits=PlanLimits(max_envelope_bytes=100),
                 audit=AuditLog(world.store))
    with pytest.raises(InputError, match="limit is 100 \\(max_envelope_bytes\\)"):
        tiny.submit(world.signed(world.new_plan()), now=NOW)


def test_submit_refuses_garbage(world: World) -> None:
    for garbage in (b"", b"null", b'{"payload": 1}', b"\xff\xfe", b'{"a": 1, "a": 2}'):
        with pytest.raises(InputError):
            world.plans.submit(garbage, now=NOW)


# -- approvals ------------------------------------------------------------------------------------


def test_same_approval_submitted_twice_is_stored_once(world: World) -> None:
    plan = world.pending()
    approval = world.decision(plan.id, "alice")
    world.plans.add_approval(plan.id, approval, now=NOW)
    again = world.plans.add_approval(plan.id, approval, now=NOW)
    reencoded = world.plans.add_approval(plan.id, json.dumps(json.loads(approval), indent=2).encode(), now=NOW)
    assert again.approvers == reencoded.approvers == ("alice",)
    assert len(world.plans.approvals(plan.id)) == 1
    assert len([k for k, _ in world.audit() if k == "approval"]) == 1


def test_approval_whose_audit_entry_was_not_written_does_not_count(world: World, engine: EmbeddedEngine) -> None:
    """Stored but not audited (the append failed after the insert): not counted, until the same envelope completes it."""
    plan = world.pending()
    blinking = PlanStore(world.store, world.trust, engine, audit=AuditLogRefusingOnce(world.store, kind="approval"))
    alice = world.decision(plan.id, "alice")
    with pytest.raises(AuditError):
        blinking.add_approval(plan.id, alice, now=NOW)
    assert [a.audited for a in world.plans.approvals(plan.id, unaudited=True)] == [False]
    assert world.plans.approvals(plan.id) == []
    assert world.plans.add_approval(plan.id, world.decision(plan.id, "bob"), now=NOW).approvers == ("bob",)
    assert [k for k, _ in world.audit()].count("approval") == 1  # bob's only: alice's decision is inert
    completed = blinking.add_approval(plan.id, alice, now=NOW)  # the same envelope again, as a retry sends it
    assert completed.approvers == ("alice", "bob") and completed.approved
    assert [p["approver"] for k, p in world.audit() if k == "approval"] == ["bob", "alice"]
    assert [a.audited for a in world.plans.approvals(plan.id, unaudited=True)] == [True, True]


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        pytest.param("garbage", "approval_malformed", "approval is not a valid envelope", id="garbage"),
        pytest.param("plan_envelope_as_approval", "approval_malformed", "payload type", id="plan_envelope"),
        pytest.param("another_plan", "approval_wrong_plan", r"is about plan sha256:[0-9a-f]{12}\.\., not",
                     id="approval_of_another_plan"),
        pytest.param("planner_key", "approval_self_approval", "'plan-bot' wrote the plan and cannot decide on it",
                     id="approval_by_plan_author"),
        pytest.param("executor_key", "approval_not_an_approver",
                     "principal 'exec-bot' \\(an executor key\\), expected a key of an approver",
                     id="executor_key_used_as_approver_key"),
        pytest.param("untrusted_key", "approval_bad_signature", "does not verify under any trusted approver key",
                     id="approval_by_untrusted_key"),
        pytest.param("foreign", "approval_foreign_key", "names approver 'bob' but is signed by key [0-9a-f]{12} "
                     "of 'alice'", id="approval_naming_another_approver"),
        pytest.param("not_in_group", "approval_not_in_required_group",
                     r"'carol' is in none of the required groups \['code-owners'\]", id="approver_not_code_owner"),
        pytest.param("second_decision", "approval_duplicate_approver", "'alice' already decided",
                     id="approver_changes_their_mind"),
    ],
)
def test_add_approval_refuses(world: World, case: str, code: str, message: str) -> None:
    plan = world.pending()
    other = world.new_plan(steps=steps("other"))
    world.keys["mallory"] = PrivateKey.generate()
    if case == "second_decision":
        world.plans.add_approval(plan.id, world.decision(plan.id, "alice"), now=NOW)
    envelope = {
        "garbage": b"\x00not json",
        "plan_envelope_as_approval": world.signed(plan),
        "another_plan": world.decision(other.id, "alice"),
        "planner_key": world.decision(plan.id, "plan-bot"),
        "executor_key": world.decision(plan.id, "exec-bot"),
        "untrusted_key": world.decision(plan.id, "mallory"),
        "foreign": world.decision(plan.id, "bob", key="alice"),
        "not_in_group": world.decision(plan.id, "carol"),
        "second_decision": world.decision(plan.id, "alice", "reject"),
    }[case]
    with pytest.raises(ApprovalRefused, match=message) as e:
        world.plans.add_approval(plan.id, envelope, now=NOW)
    assert e.value.code == code
    assert len(world.plans.approvals(plan.id)) == (1 if case == "second_decision" else 0)
    assert world.plans.get(plan.id).state is PlanState.PENDING


def test_a_counted_rejection_rejects(world: World) -> None:
    plan = world.pending()
    result = world.plans.add_approval(plan.id, world.decision(plan.id, "bob", "reject", comment="too broad"),
                                      now=NOW)
    assert result.rejected and world.plans.get(plan.id).state is PlanState.REJECTED
    with pytest.raises(ConflictError, match="is rejected: approvals and rejections are taken only while"):
        world.plans.add_approval(plan.id, world.decision(plan.id, "alice"), now=NOW)


def test_approval_after_expiry_expires_the_plan(world: World) -> None:
    plan = world.pending(ttl=timedelta(hours=1))
    with pytest.raises(PlanExpired, match="expired at") as e:
        world.plans.add_approval(plan.id, world.decision(plan.id, "alice"), now=NOW + timedelta(hours=2))
    assert e.value.code == "plan_expired" and world.plans.get(plan.id).state is PlanState.EXPIRED


# -- begin: never on the stored state alone ---------------------------------------------------------


def test_begin_refused_for_an_unapproved_plan(world: World) -> None:
    plan = world.pending()
    with pytest.raises(ApprovalError, match="is pending, not approved") as e:
        world.plans.begin(plan.id, "exec-bot", now=NOW)
    assert e.value.code == "plan_not_approved"


def test_begin_refused_for_an_expired_plan(world: World) -> None:
    plan = world.approved(ttl=timedelta(hours=1))
    with pytest.raises(PlanExpired, match="expired at 2026-11-22T10:55:00Z") as e:
        world.plans.begin(plan.id, "exec-bot", now=NOW + timedelta(hours=1))
    assert e.value.code == "plan_expired" and world.plans.get(plan.id).state is PlanState.EXPIRED


def test_begin_refused_for_a_rejected_plan(world: World) -> None:
    plan = world.pending()
    world.plans.add_approval(plan.id, world.decision(plan.id, "alice", "reject"), now=NOW)
    with pytest.raises(ApprovalError, match="is rejected, not approved") as e:
        world.plans.begin(plan.id, "exec-bot", now=NOW)
    assert e.value.code == "plan_rejected"


def test_begin_refused_when_executor_is_the_planner(world: World) -> None:
    plan = world.approved()
    with pytest.raises(PermissionDenied, match="'plan-bot' wrote plan sha256:[0-9a-f]{12}\\.\\. and cannot "
                       "execute it") as e:
        world.plans.begin(plan.id, "plan-bot", now=NOW)
    assert e.value.code == "separation_of_duties"


@pytest.mark.parametrize(("who", "role"), [("plan-bot-2", "planner"), ("alice", "approver"),
                                            ("audit-bot", "auditor")])
def test_begin_refused_for_a_principal_without_the_executor_role(world: World, who: str, role: str) -> None:
    plan = world.approved()
    with pytest.raises(PermissionDenied, match=f"principal '{who}' has role {role}; only an executor") as e:
        world.plans.begin(plan.id, who, now=NOW)
    assert e.value.code == "role_not_permitted"
    assert world.plans.get(plan.id).state is PlanState.APPROVED
    refused = [p for k, p in world.audit() if k == "plan_event" and p["event"] == "begin_refused"]
    assert refused[-1]["executor"] == who and refused[-1]["code"] == "role_not_permitted"


def test_begin_twice(world: World) -> None:
    plan = world.executing()
    with pytest.raises(ConflictError, match="is already executing \\(begun by exec-bot\\)"):
        world.plans.begin(plan.id, "exec-bot-2", now=NOW)


def test_stored_plan_payload_edited_in_the_database(world: World) -> None:
    plan = world.approved()
    env = json.loads(world.plans.get(plan.id).envelope)
    payload = base64.b64decode(env["payload"]).replace(b"/repo/README.md", b"/repo/.git/hooks/post-commit")
    env["payload"] = base64.b64encode(payload).decode()
    world.sql("UPDATE plans SET envelope = :e WHERE id = :id", e=json.dumps(env).encode(), id=plan.id)
    with pytest.raises(SignatureError, match="does not verify under any trusted planner key"):
        world.plans.begin(plan.id, "exec-bot", now=NOW)
    assert world.plans.get(plan.id).state is PlanState.APPROVED


def test_stored_envelope_swapped_for_another_signed_plan(world: World) -> None:
    """A validly signed, never approved plan slipped under an approved plan's id."""
    plan = world.approved()
    evil = world.new_plan(steps=steps("rm -rf /"))
    world.sql("UPDATE plans SET envelope = :e WHERE id = :id", e=world.signed(evil), id=plan.id)
    with pytest.raises(VerificationError, match="holds the envelope of plan .* its row was changed outside Writ") as e:
        world.plans.begin(plan.id, "exec-bot", now=NOW)
    assert e.value.code == "plan_tampered"


def test_state_set_to_approved_in_the_database(world: World) -> None:
    plan = world.pending()
    world.plans.add_approval(plan.id, world.decision(plan.id, "alice"), now=NOW)
    world.sql("UPDATE plans SET state = 'approved' WHERE id = :id", id=plan.id)
    with pytest.raises(ApprovalError, match="has 1/2 approvals; missing: 1 more approval") as e:
        world.plans.begin(plan.id, "exec-bot", now=NOW)
    assert e.value.code == "plan_not_approved"


def test_approval_row_forged_in_the_database(world: World) -> None:
    plan = world.pending()
    world.plans.add_approval(plan.id, world.decision(plan.id, "alice"), now=NOW)
    world.keys["mallory"] = PrivateKey.generate()
    forged = world.decision(plan.id, "bob", key="mallory")
    world.sql("INSERT INTO plan_approvals (plan_id, approver, key_id, decision, envelope, envelope_digest, "
              "received_at, audited_at) VALUES (:p, 'bob', :k, 'approve', :e, 'sha256:x', "
              "'2026-11-22T10:00:00.000000Z', '2026-11-22T10:00:00.000000Z')",  # the forger marks it audited too
              p=plan.id, k=world.keys["bob"].key_id, e=forged)
    world.sql("UPDATE plans SET state = 'approved' WHERE id = :id", id=plan.id)
    with pytest.raises(ApprovalError, match=r"1/2 approvals; missing: 1 more approval; ignored: #1 \(bad_signature\)"):
        world.plans.begin(plan.id, "exec-bot", now=NOW)


def test_row_with_a_time_writ_never_wrote(world: World) -> None:
    plan = world.pending()
    world.sql("UPDATE plans SET updated_at = 'yesterday' WHERE id = :id", id=plan.id)
    with pytest.raises(StoreError, match="holds the time 'yesterday', not YYYY-MM-DDTHH:MM:SS.ffffffZ") as e:
        world.plans.get(plan.id)
    assert e.value.code == "store_corrupt"


def test_approver_key_revoked_after_approval_no_longer_counts_at_begin(world: World) -> None:
    plan = world.approved()
    world.trust.revoke_key(world.keys["alice"].key_id, at=NOW + timedelta(minutes=1))
    with pytest.raises(ApprovalError, match=r"has 1/2 approvals; .*ignored: alice \(key_invalid\)") as e:
        world.plans.begin(plan.id, "exec-bot", now=NOW + timedelta(minutes=2))
    assert e.value.code == "plan_not_approved"


def test_planner_key_revoked_after_approval_stops_the_plan(world: World) -> None:
    plan = world.approved()
    world.trust.revoke_key(world.keys["plan-bot"].key_id, at=NOW + timedelta(minutes=1))
    with pytest.raises(SignatureError, match="which was revoked at 2026-11-22T10:01:00Z") as e:
        world.plans.begin(plan.id, "exec-bot", now=NOW + timedelta(minutes=2))
    assert e.value.code == "key_invalid"


def test_one_byte_of_a_verified_stored_envelope_edited_in_the_database(world: World) -> None:
    """The envelope was verified (and remembered) at submit and by status; one changed byte is checked in full."""
    plan = world.approved()
    assert world.plans.status(plan.id, now=NOW).verifier_approved
    stored = world.plans.get(plan.id).envelope
    at = stored.index(b'"payload":"') + len(b'"payload":"') + 40
    edited = stored[:at] + (b"B" if stored[at:at + 1] != b"B" else b"C") + stored[at + 1:]
    world.sql("UPDATE plans SET envelope = :e WHERE id = :id", e=edited, id=plan.id)
    with pytest.raises(SignatureError, match="does not verify under any trusted planner key"):
        world.plans.status(plan.id, now=NOW)
    with pytest.raises(SignatureError, match="does not verify under any trusted planner key"):
        world.plans.begin(plan.id, "exec-bot", now=NOW)


def test_a_revocation_by_another_process_reaches_a_trust_set_read_before(world: World, engine: EmbeddedEngine) -> None:
    """Two trust stores on one database (two gateway replicas): the revision makes the second see the first's change."""
    plan = world.executing()
    world.claim(plan, 0)  # the plan and the trust set verified and remembered here
    world.plans.record_result(plan.id, 0, "sha256:" + "0" * 64, "succeeded", now=NOW)
    before = world.trust.trust_set()
    assert world.trust.trust_set() is before  # nothing changed: the same trust set
    other = TrustStore(world.store, policy_groups(engine), audit=AuditLog(world.store))
    other.revoke_key(world.keys["plan-bot"].key_id, at=NOW + timedelta(minutes=1))
    after = world.trust.trust_set()
    assert after is not before
    assert after.key(world.keys["plan-bot"].key_id).revoked_at == NOW + timedelta(minutes=1)
    with pytest.raises(ClaimRefused, match="is no longer backed: plan signed by key .* which was revoked") as e:
        world.claim(plan, 1, now=NOW + timedelta(minutes=2))
    assert e.value.code == "plan_not_backed"


# -- claims: exactly once, exactly the approved call ------------------------------------------------


def test_step_claimed_twice(world: World) -> None:
    plan = world.executing()
    world.claim(plan, 0)
    with pytest.raises(StepAlreadyClaimed, match=r"^step 0 of plan sha256:[0-9a-f]{12}\.\. was already claimed by "
                       r"exec-bot at 2026-11-22T10:00:00\.000000Z; a step runs at most once$") as e:
        world.claim(plan, 0, now=NOW + timedelta(seconds=5))
    assert e.value.code == "step_already_claimed"
    assert len(world.plans.claims(plan.id)) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"args": {"path": "/repo/README.md", "content": "hello\r"}},
                     "argument 'content' is 'hello\\\\r', the plan approved 'hello\\\\n'", id="one_byte_of_args"),
        pytest.param({"args": {"path": "/repo/README.md", "content": "hello\n", "mode": "0777"}},
                     r"arguments \['mode'\] are not in the plan step", id="extra_argument"),
        pytest.param({"definition_digest": OTHER_DEF}, "the tool changed since approval",
                     id="tool_definition_changed_after_approval"),
        pytest.param({"server": "shell"}, "server is 'shell', the plan step is on 'fs'", id="other_server"),
        pytest.param({"tool": "delete_file"}, "tool is 'delete_file', the plan step calls 'write_file'",
                     id="other_tool"),
    ],
)
def test_claim_refused_for_a_call_that_is_not_the_step(world: World, changes: dict[str, Any], message: str) -> None:
    plan = world.executing()
    with pytest.raises(ClaimRefused, match=message) as e:
        world.claim(plan, 0, **changes)
    assert e.value.code == "step_mismatch"
    assert world.plans.claims(plan.id) == []
    refused = [p for k, p in world.audit() if k == "step_claim"]
    assert refused[-1]["claimed"] is False and refused[-1]["code"] == "step_mismatch"
    world.claim(plan, 0)  # the approved call still can run


def test_claim_refused_out_of_order(world: World) -> None:
    plan = world.executing()
    with pytest.raises(ClaimRefused, match="step 1 of plan .* cannot run before step 0 \\(the plan is ordered\\)") as e:
        world.claim(plan, 1)
    assert e.value.code == "step_out_of_order"


def test_unordered_plan_steps_run_in_any_order(world: World) -> None:
    plan = world.executing(ordered=False)
    world.claim(plan, 1)
    world.claim(plan, 0)
    assert [c.step_index for c in world.plans.claims(plan.id)] == [0, 1]


def test_claim_refused_when_the_plan_is_not_executing(world: World) -> None:
    plan = world.approved()
    with pytest.raises(ClaimRefused, match="is approved, not executing") as e:
        world.claim(plan, 0)
    assert e.value.code == "plan_not_executing"


def test_claim_refused_after_expiry(world: World) -> None:
    plan = world.executing(ttl=timedelta(hours=1))
    with pytest.raises(PlanExpired, match="expired at 2026-11-22T10:55:00Z: no step of it may run") as e:
        world.claim(plan, 0, now=NOW + timedelta(hours=1))
    assert e.value.code == "plan_expired"


def test_claim_refused_for_another_executor(world: World) -> None:
    plan = world.executing()
    with pytest.raises(PermissionDenied, match="is being executed by 'exec-bot', not 'exec-bot-2'"):
        world.claim(plan, 0, executor="exec-bot-2")


@pytest.mark.parametrize("index", [-1, 2, 10**9])
def test_claim_refused_for_a_step_not_in_the_plan(world: World, index: int) -> None:
    plan = world.executing()
    with pytest.raises(ClaimRefused, match=f"has steps 0 to 1, there is no step {index}"):
        world.plans.claim_step(plan.id, index, "exec-bot", now=NOW, **CALLS[0])


def test_claim_refused_for_a_plan_edited_after_begin(world: World) -> None:
    plan = world.executing()
    evil = world.new_plan(steps=steps("evil"))
    world.sql("UPDATE plans SET envelope = :e WHERE id = :id", e=world.signed(evil), id=plan.id)
    with pytest.raises(VerificationError, match="row was changed outside Writ"):
        world.claim(plan, 0, args={"path": "/repo/README.md", "content": "evil"})


def test_database_refuses_a_second_claim_of_a_step(world: World) -> None:
    plan = world.executing()
    world.claim(plan, 0)
    with pytest.raises(Exception, match="(?i)unique"):
        world.sql("INSERT INTO step_claims (plan_id, step_index, executor, claimed_at, args_digest) "
                  "VALUES (:p, 0, 'exec-bot-2', 'x', 'y')", p=plan.id)


# -- results and the end ------------------------------------------------------------------------------


def test_result_recorded_once(world: World) -> None:
    plan = world.executing()
    with pytest.raises(ClaimRefused, match="step 0 of plan .* was never claimed") as e:
        world.plans.record_result(plan.id, 0, None, "failed", now=NOW)
    assert e.value.code == "step_not_claimed"
    world.claim(plan, 0)
    world.plans.record_result(plan.id, 0, None, "failed", now=NOW)
    with pytest.raises(ConflictError, match="was already recorded \\(failed at"):
        world.plans.record_result(plan.id, 0, "sha256:" + "00" * 32, "succeeded", now=NOW)
    with pytest.raises(InputError, match="is not sha256:<64 hex>"):
        world.plans.record_result(plan.id, 1, "sha256:00\n", "succeeded", now=NOW)


def test_plan_completes_only_when_every_step_succeeded(world: World) -> None:
    plan = world.executing()
    world.claim(plan, 0)
    world.plans.record_result(plan.id, 0, None, "succeeded", now=NOW)
    with pytest.raises(ConflictError, match="cannot complete: step 1 did not succeed") as e:
        world.plans.finish(plan.id, "completed", now=NOW)
    assert e.value.code == "plan_incomplete"
    assert world.plans.finish(plan.id, "failed", now=NOW, reason="step 1 failed") is PlanState.FAILED
    with pytest.raises(ClaimRefused, match="is failed, not executing"):
        world.claim(plan, 1)


def test_abort_before_and_during_execution(world: World) -> None:
    approved = world.approved()
    assert world.plans.finish(approved.id, "aborted", now=NOW) is PlanState.ABORTED
    with pytest.raises(ApprovalError, match="is aborted, not approved"):
        world.plans.begin(approved.id, "exec-bot", now=NOW)


def test_state_change_from_a_stale_state_is_a_conflict(world: World) -> None:
    plan = world.approved()
    with pytest.raises(ConflictError, match="is approved, not pending: another process changed it first") as e:
        world.plans._move(plan.id, PlanState.PENDING, PlanEvent.APPROVE, NOW)
    assert e.value.code == "plan_state_conflict"


def test_expire_due_expires_waiting_plans_only(world: World) -> None:
    pending = world.pending(ttl=timedelta(hours=1))
    approved = world.approved(ttl=timedelta(hours=1), steps=steps("two"))
    running = world.executing(ttl=timedelta(hours=1), steps=steps("three"))
    later = world.pending(ttl=timedelta(hours=3), steps=steps("four"))
    expired = world.plans.expire_due(now=NOW + timedelta(hours=1))
    assert sorted(expired) == sorted([pending.id, approved.id])
    states = {p.id: p.state for p in world.plans.list_plans()}
    assert states == {pending.id: PlanState.EXPIRED, approved.id: PlanState.EXPIRED,
                      running.id: PlanState.EXECUTING, later.id: PlanState.PENDING}
    assert world.plans.list_plans(state="expired") and world.plans.expire_due(now=NOW + timedelta(hours=1)) == []


def test_plan_by_prefix(world: World) -> None:
    plan = world.pending()
    assert world.plans.resolve(plan.id) == plan.id == world.plans.resolve(plan.id[7:13].upper())
    with pytest.raises(InputError, match="at least 4 hex digits"):
        world.plans.resolve("%_")


# -- the policy's voice: both must say yes -----------------------------------------------------------


def test_policy_that_disagrees_denies_and_is_logged(store: Database, policy_dir: Path, tmp_path: Path) -> None:
    strict = policies_with(policy_dir, tmp_path, "satisfied if {\n\tvalid_input\n",
                           'satisfied if {\n\tvalid_input\n\tinput.plan.planner == "nobody"\n')
    world = make_world(store, EmbeddedEngine(strict))
    plan = world.pending()
    world.plans.add_approval(plan.id, world.decision(plan.id, "alice"), now=NOW)
    result = world.plans.add_approval(plan.id, world.decision(plan.id, "bob"), now=NOW)
    assert not result.approved and "not by the writ.approval policy" in result.summary()
    assert world.plans.get(plan.id).state is PlanState.PENDING
    logged = [p for k, p in world.audit() if k == "plan_event" and p["event"] == "approval_disagreement"]
    assert logged[-1]["verifier_approved"] is True and logged[-1]["policy_satisfied"] is False
    assert "satisfied: verifier True, policy False" in logged[-1]["differences"]
    # and if the row says approved anyway, begin asks the policy again
    world.sql("UPDATE plans SET state = 'approved' WHERE id = :id", id=plan.id)
    with pytest.raises(ApprovalError, match="the writ.approval policy does not find plan .* approved") as e:
        world.plans.begin(plan.id, "exec-bot", now=NOW)
    assert e.value.code == "approval_policy_denied"


def test_policy_without_a_requirement_fails_closed(store: Database, policy_dir: Path, tmp_path: Path) -> None:
    broken = policies_with(policy_dir, tmp_path, "requirement := {", "requirement_gone := {")
    world = make_world(store, EmbeddedEngine(broken))
    with pytest.raises(ApprovalPolicyError, match="cannot evaluate data.writ.approval.requirement for plan .*"
                       "no policy answer, no approval \\(fail closed\\)") as e:
        world.pending()
    assert e.value.code == "approval_policy_failed"


def test_requirement_of_the_wrong_shape_fails_closed(store: Database, policy_dir: Path, tmp_path: Path) -> None:
    odd = policies_with(policy_dir, tmp_path, '"quorum": quorum,', '"quorum": 0,')
    world = make_world(store, EmbeddedEngine(odd))
    with pytest.raises(ApprovalPolicyError, match="has the wrong shape \\(quorum: Input should be greater"):
        world.pending()


# -- migrations -----------------------------------------------------------------------------------------


def test_migrations_match_the_plan_and_trust_tables(store: Database) -> None:
    ours = ("principals", "trust_keys", "plans", "plan_approvals", "step_claims")
    with store.connect() as conn, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLite cannot reflect the lower(name) index, and says so
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert [d for d in diffs if any(t in repr(d) for t in ours)] == []


# -- the adapter: the verifier and the policy agree ------------------------------------------------------


def _adapter_world() -> tuple[dict[str, PrivateKey], TrustSet]:
    keys: dict[str, PrivateKey] = {}
    trusted = []
    spec: list[tuple[str, str, Role, dict[str, Any]]] = [
        ("plan-bot", "plan-bot", "planner", {}),
        ("exec-bot", "exec-bot", "executor", {}),
        ("alice", "alice", "approver", {}),
        ("alice-2", "alice", "approver", {}),  # a second key of alice
        ("bob", "bob", "approver", {}),
        ("carol", "carol", "approver", {}),
        ("dave", "dave", "approver", {}),
        ("erin-revoked", "erin", "approver", {"revoked_at": NOW - timedelta(hours=1)}),
        ("frank-old", "frank", "approver", {"not_after": NOW - timedelta(days=1)}),
        ("gina-new", "gina", "approver", {"not_before": NOW + timedelta(days=1)}),
    ]
    for name, principal, role, window in spec:
        keys[name] = PrivateKey.generate()
        trusted.append(TrustedKey(principal=principal, role=role, public_key=keys[name].public_key, **window))
    keys["mallory"] = PrivateKey.generate()  # not trusted
    groups = {"code-owners": ["alice", "bob", "erin"], "security": ["carol", "frank"]}
    return keys, TrustSet.of(trusted, groups)


ADAPTER_KEYS, ADAPTER_TRUST = _adapter_world()
SIGNERS = ["alice", "alice-2", "bob", "carol", "dave", "erin-revoked", "frank-old", "gina-new", "plan-bot",
           "exec-bot", "mallory"]
OWNER = {"alice-2": "alice", "erin-revoked": "erin", "frank-old": "frank", "gina-new": "gina"}

ITEMS = st.one_of(
    st.tuples(st.just("signed"), st.sampled_from(SIGNERS), st.sampled_from(["approve", "reject"]),
              st.sampled_from(["own", "other_approver", "planner"]), st.sampled_from(["this", "other"])),
    st.tuples(st.just("garbage"), st.sampled_from([b"", b"{}", b"null", b'{"payload":"", "payloadType":"x"}'])),
    st.tuples(st.just("two_signatures"), st.sampled_from(SIGNERS)),
    st.tuples(st.just("plan_type"), st.sampled_from(SIGNERS)),
    st.tuples(st.just("not_a_statement"), st.sampled_from(["alice", "bob"])),
)


def _item(item: tuple[Any, ...], plan: Plan, other_id: str) -> bytes:
    kind = item[0]
    if kind == "garbage":
        return item[1]  # type: ignore[no-any-return]
    if kind == "not_a_statement":
        env = sign(Envelope.create(IN_TOTO_PAYLOAD_TYPE, b'{"_type":"x"}'), ADAPTER_KEYS[item[1]])
        return env.to_json()
    signer = item[1]
    statement = ApprovalStatement.for_plan(plan.id, approver=OWNER.get(signer, signer), decision="approve", at=NOW)
    if kind == "two_signatures":
        return sign(sign(Envelope.create(IN_TOTO_PAYLOAD_TYPE, statement.payload()), ADAPTER_KEYS[signer]),
                    ADAPTER_KEYS["bob" if signer != "bob" else "carol"]).to_json()
    if kind == "plan_type":
        return sign(Envelope.create(PLAN_PAYLOAD_TYPE, statement.payload()), ADAPTER_KEYS[signer]).to_json()
    _, signer, decision, naming, which = item
    approver = {"own": OWNER.get(signer, signer), "other_approver": "bob" if signer != "bob" else "alice",
                "planner": "plan-bot"}[naming]
    plan_id = plan.id if which == "this" else other_id
    return sign_approval(plan_id, ADAPTER_KEYS[signer], approver=approver, decision=decision, at=NOW).to_json()


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(ITEMS, max_size=8),
    servers=st.lists(st.sampled_from(["fs", "git", "web", "db"]), min_size=1, max_size=3),
    ttl_hours=st.sampled_from([1, 4, 24, 25]),
    late=st.booleans(),
    max_approvals=st.sampled_from([64, 3]),
)
def test_verifier_and_policy_agree_on_generated_approvals(
    engine: EmbeddedEngine, items: list[tuple[Any, ...]], servers: list[str], ttl_hours: int, late: bool,
    max_approvals: int,
) -> None:
    plan = Plan.new(title="t", rationale="", planner="plan-bot", ttl=timedelta(hours=ttl_hours),
                    now=NOW - timedelta(minutes=5),
                    steps=[PlanStep(server=s, tool="write", definition_digest=DEF, args={"n": i})
                           for i, s in enumerate(servers)])
    now = plan.expires_at + timedelta(seconds=1) if late else NOW
    envelopes = [_item(item, plan, "sha256:" + "ee" * 32) for item in items]
    limits = PlanLimits(max_approvals=max_approvals)

    requirement = requirement_for(engine, plan, now)
    python = evaluate_approvals(plan, envelopes, ADAPTER_TRUST, now=now, requirement=requirement, limits=limits)
    facts = verified_approvals(plan, envelopes, ADAPTER_TRUST, now=now, limits=limits)
    policy = policy_result(engine, plan, facts, now)

    assert policy.satisfied == python.approved
    assert policy.rejected == python.rejected
    assert policy.expired == python.expired
    assert sorted(policy.counted) == sorted(python.approvers)
    assert (policy.missing.approvals, list(policy.missing.groups)) == (python.missing_approvals,
                                                                       list(python.missing_groups))
    shown = {i.index: i.reason.value for i in python.ignored if i.reason not in PYTHON_ONLY_REASONS}
    assert {i.index: i.reason for i in policy.ignored} == shown
    hidden = {i.index for i in python.ignored if i.reason in PYTHON_ONLY_REASONS}
    assert hidden.isdisjoint(f.index for f in facts)  # the policy never sees what failed the crypto checks
    assert disagreements(python, policy) == []


def test_every_ignore_reason_reaches_the_comparison(engine: EmbeddedEngine) -> None:
    """One scenario holding every reason, so the generated test above is known to cover them."""
    plan = Plan.new(title="t", rationale="", planner="plan-bot", ttl=timedelta(hours=4), now=NOW,
                    steps=[PlanStep(server="fs", tool="write", definition_digest=DEF)])
    items: list[tuple[Any, ...]] = [
        ("garbage", b"{}"),
        ("signed", "mallory", "approve", "own", "this"),
        ("signed", "alice", "approve", "other_approver", "this"),  # foreign_key
        ("signed", "plan-bot", "approve", "own", "this"),  # self_approval
        ("signed", "exec-bot", "approve", "own", "this"),  # not_an_approver
        ("signed", "bob", "approve", "own", "other"),  # wrong_plan
        ("signed", "erin-revoked", "approve", "own", "this"),  # key_invalid
        ("signed", "dave", "approve", "own", "this"),  # not_in_required_group
        ("signed", "alice", "approve", "own", "this"),
        ("signed", "alice-2", "reject", "own", "this"),  # duplicate_approver
        ("signed", "bob", "approve", "own", "this"),  # over_limit with max_approvals=10
    ]
    envelopes = [_item(i, plan, "sha256:" + "ee" * 32) for i in items]
    limits = PlanLimits(max_approvals=10)
    requirement = requirement_for(engine, plan, NOW)
    python = evaluate_approvals(plan, envelopes, ADAPTER_TRUST, now=NOW, requirement=requirement, limits=limits)
    policy = policy_result(engine, plan, verified_approvals(plan, envelopes, ADAPTER_TRUST, now=NOW, limits=limits),
                           NOW)
    assert {i.reason for i in python.ignored} == set(IgnoreReason)
    assert [i.reason for i in policy.ignored] == ["self_approval", "not_an_approver", "wrong_plan", "key_invalid",
                                                  "not_in_required_group", "duplicate_approver"]
    assert disagreements(python, policy) == []
    assert (python.approvers, policy.counted) == (("alice",), ("alice",))


def test_groups_come_from_the_policy_set(engine: EmbeddedEngine) -> None:
    assert groups_from_policy_data(engine.policy_set.data) == {"code-owners": ("alice", "bob"),
                                                               "security": ("carol",)}


def test_requirement_follows_the_servers_a_plan_touches(engine: EmbeddedEngine) -> None:
    def plan_on(*servers: str) -> Plan:
        return Plan.new(title="t", rationale="", planner="p", ttl=timedelta(hours=1), now=NOW,
                        steps=[PlanStep(server=s, tool="x", definition_digest=DEF) for s in servers])

    assert requirement_for(engine, plan_on("web"), NOW).required_groups == ()
    owners = requirement_for(engine, plan_on("web", "git"), NOW)
    assert (owners.quorum, owners.required_groups, owners.max_ttl_seconds) == (2, ("code-owners",), 86400)


def test_reload_interval_does_not_matter_for_the_adapter(policy_dir: Path) -> None:
    fresh = EmbeddedEngine(policy_dir, Limits(policy_reload_interval_s=0))
    plan = Plan.new(title="t", rationale="", planner="p", ttl=timedelta(hours=1), now=NOW,
                    steps=[PlanStep(server="fs", tool="x", definition_digest=DEF)])
    assert requirement_for(fresh, plan, NOW).quorum == 2
