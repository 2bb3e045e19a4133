"""Attacks on the plan store (issue 9): a plan that outlives its backing, a plan that runs past a failed step,
and approvals refused without a trace.

Store-level tests run on real databases (SQLite and a fresh PostgreSQL schema) under the shipped
``writ.approval`` policy (fs needs two approvals including a code owner: alice or bob). The gateway tests
run a real `writ mcp` executor with the npm filesystem server as upstream, and the real `writ` CLI
(`writ keys revoke`, `writ plan verify`) as subprocesses, as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.gateway import (
    FS_SERVER,
    GatewayClient,
    audit_entries,
    error_code,
    gateway_client,
    reason_codes,
    register,
    require_upstreams,
    text_of,
    toml_list,
    toml_str,
)
from temporalio.api.enums.v1 import EventType

from writ.attestations.audit import AuditLog
from writ.engine.core import reasons
from writ.engine.core.db import Database
from writ.engine.core.errors import ApprovalRefused, ClaimRefused, PolicyEvaluationError, StepAlreadyClaimed
from writ.engine.core.settings import Settings
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.wiring.services import LocalPolicy, Services, open_services, wire_services
from writ.plans.assessment import RETRY_PATH
from writ.plans.keys import PrivateKey
from writ.plans.lifecycle import PlanState
from writ.plans.models import Plan, PlanStep
from writ.plans.statements import sign_approval, sign_plan
from writ.plans.store import PlanStore
from writ.plans.trust_store import TrustStore, policy_groups
from writ.workflows.approval.client import ApprovalClient

# Proposing a plan starts its approval workflow: these gateways need Temporal (the session's dev server).
pytestmark = pytest.mark.usefixtures("temporal_module")

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DEF = "sha256:" + "ab" * 32
PRINCIPALS = [("plan-bot", "planner"), ("alice", "approver"), ("bob", "approver"), ("carol", "approver"),
              ("dave", "approver"), ("exec-bot", "executor")]


# -- a world on a real database -------------------------------------------------------------------


class CountingEngine:
    """The real engine, counting the policy evaluations the plan store asks for."""

    def __init__(self, engine: EmbeddedEngine) -> None:
        self.engine = engine
        self.calls: list[str] = []

    @property
    def revision(self) -> str | None:
        return self.engine.revision

    def evaluate(self, path: str, input_doc: dict[str, Any] | None = None) -> Any:
        self.calls.append(path)
        return self.engine.evaluate(path, input_doc)


@dataclass
class World:
    store: Database
    trust: TrustStore
    plans: PlanStore
    engine: CountingEngine
    keys: dict[str, PrivateKey] = field(default_factory=dict)

    def plan(self, n: int = 2, *, ordered: bool = True) -> Plan:
        steps = [PlanStep(server="fs", tool="write_file", definition_digest=DEF,
                          args={"path": f"/repo/{i}.md", "content": f"step {i}\n"}) for i in range(n)]
        return Plan.new(title="Write files", rationale="for the attack", planner="plan-bot", steps=steps,
                        ttl=timedelta(hours=4), now=NOW - timedelta(minutes=5), ordered=ordered)

    def approve(self, plan: Plan, who: str) -> Any:
        envelope = sign_approval(plan.id, self.keys[who], approver=who, at=NOW).to_json()
        return self.plans.add_approval(plan.id, envelope, now=NOW)

    def executing(self, plan: Plan, approvers: tuple[str, ...] = ("alice", "bob")) -> Plan:
        self.plans.submit(sign_plan(plan, self.keys["plan-bot"]).to_json(), now=NOW)
        for who in approvers:
            self.approve(plan, who)
        assert self.plans.get(plan.id).state is PlanState.APPROVED
        self.plans.begin(plan.id, "exec-bot", now=NOW)
        return plan

    def claim(self, plan: Plan, index: int, now: datetime = NOW) -> Any:
        step = plan.steps[index]
        return self.plans.claim_step(plan.id, index, "exec-bot", server=step.server, tool=step.tool,
                                     definition_digest=step.definition_digest, args=step.args, now=now)

    def run(self, plan: Plan, index: int, outcome: str = "succeeded", now: datetime = NOW) -> None:
        self.claim(plan, index, now)
        self.plans.record_result(plan.id, index, None, outcome, now=now)  # type: ignore[arg-type]

    def audit(self, kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in AuditLog(self.store).tail(1000) if e.kind == kind]


def make_world(store: Database, policy_dir: Path) -> World:
    real = EmbeddedEngine(policy_dir)
    trust = TrustStore(store, policy_groups(real), audit=AuditLog(store))
    engine = CountingEngine(real)
    return populate(World(store, trust, PlanStore(store, trust, engine, audit=AuditLog(store)), engine))


def populate(w: World) -> World:
    """``PRINCIPALS`` in the world's trust store, each with a key of its own."""
    trust = w.trust
    for name, role in PRINCIPALS:
        trust.add_principal(name, role)
        w.keys[name] = PrivateKey.generate()
        trust.add_key(name, w.keys[name].public_key)
    return w


@pytest.fixture
def world(store: Database, policy_dir: Path) -> World:
    return make_world(store, policy_dir)


def policies_with_config(policy_dir: Path, tmp_path: Path, **config: Any) -> Path:
    """A copy of the shipped policies with more keys in data.writ.config."""
    mine = tmp_path / "policies"
    shutil.copytree(policy_dir, mine, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    path = mine / "writ" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return mine


def assert_refused(world: World, plan: Plan, index: int, code: str, now: datetime = NOW) -> ClaimRefused:
    with pytest.raises(ClaimRefused) as e:
        world.claim(plan, index, now)
    assert e.value.code == code, e.value.message
    refused = world.audit("step_claim")[-1]
    assert (refused["step_index"], refused["claimed"], refused["code"]) == (index, False, code)
    return e.value


def assert_aborted_unbacked(world: World, plan: Plan) -> None:
    assert world.plans.get(plan.id).state is PlanState.ABORTED
    event = world.audit("plan_event")[-1]
    assert (event["event"], event["from"], event["to"], event["code"]) == ("abort", "executing", "aborted",
                                                                           reasons.PLAN_NOT_BACKED)


# -- finding 2: a plan must stay backed while it runs -----------------------------------------------


def test_approver_key_revoked_while_executing_in_the_store(world: World) -> None:
    plan = world.executing(world.plan())
    world.run(plan, 0)
    world.trust.revoke_key(world.keys["alice"].key_id, at=NOW - timedelta(minutes=1))  # before her approval
    refused = assert_refused(world, plan, 1, reasons.PLAN_NOT_BACKED)
    assert "no longer backed by its approvals" in refused.message and "alice (key_invalid)" in refused.message
    assert_aborted_unbacked(world, plan)
    assert [c.step_index for c in world.plans.claims(plan.id)] == [0]
    assert_refused(world, plan, 1, reasons.PLAN_NOT_EXECUTING)  # and nothing of it runs any more


def test_planner_key_revoked_while_executing(world: World) -> None:
    plan = world.executing(world.plan())
    world.trust.revoke_key(world.keys["plan-bot"].key_id, at=NOW - timedelta(minutes=1))
    refused = assert_refused(world, plan, 0, reasons.PLAN_NOT_BACKED)
    assert "which was revoked at" in refused.message
    assert_aborted_unbacked(world, plan)


def test_approver_removed_from_the_required_group_while_executing(world: World) -> None:
    for name in ("carol", "dave"):
        world.trust.add_group_member("code-owners", name)  # the trust store's group, beside groups.json
    plan = world.executing(world.plan(), approvers=("dave", "carol"))
    world.run(plan, 0)
    world.trust.remove_group_member("code-owners", "dave")
    refused = assert_refused(world, plan, 1, reasons.PLAN_NOT_BACKED)
    assert "dave (not_in_required_group)" in refused.message
    assert_aborted_unbacked(world, plan)


def test_approver_key_window_closes_between_two_claims(world: World) -> None:
    """No trust change at all: the cached verdict must still end when a key's validity window does."""
    short = PrivateKey.generate()
    world.trust.add_key("bob", short.public_key, not_after=NOW + timedelta(seconds=20))
    world.keys["bob"] = short
    plan = world.executing(world.plan())
    world.run(plan, 0)  # verified at NOW, bob's key valid
    assert_refused(world, plan, 1, reasons.PLAN_NOT_BACKED, now=NOW + timedelta(seconds=30))


def test_unchanged_trust_store_costs_no_verification_per_claim(world: World) -> None:
    plan = world.executing(world.plan(4, ordered=False))
    world.engine.calls.clear()
    world.claim(plan, 0)
    assert world.engine.calls == ["writ.approval.requirement", "writ.approval.result"]
    assert (world.plans.backing.misses, world.plans.backing.hits) == (1, 0)
    world.claim(plan, 1, now=NOW + timedelta(seconds=1))
    assert world.engine.calls == ["writ.approval.requirement", "writ.approval.result"]  # nothing asked again
    assert (world.plans.backing.misses, world.plans.backing.hits) == (1, 1)

    world.trust.add_principal("erin", "approver")  # any trust change: the next claim verifies again
    world.claim(plan, 2, now=NOW + timedelta(seconds=2))
    assert (world.plans.backing.misses, world.plans.backing.hits) == (2, 1)
    assert len(world.engine.calls) == 4
    world.claim(plan, 3, now=NOW + timedelta(seconds=3))
    assert (world.plans.backing.misses, world.plans.backing.hits) == (2, 2)


def test_unchanged_trust_store_costs_no_verification_per_claim_as_wired(db_settings: Settings, store: Database) -> None:
    """The plan store every gateway and `writ serve` run (``wire_services``: the embedded engine behind
    ``LocalPolicy``) caches the verdict too. A policy that reports no revision is never cached, and
    ``LocalPolicy`` reported none: every claim of a real gateway re-verified (found re-proving finding 2).
    """
    services = wire_services(db_settings, store)
    assert isinstance(services.policy, LocalPolicy)
    world = populate(World(store, services.trust, services.plans, CountingEngine(services.policy.engine)))
    plan = world.executing(world.plan(3, ordered=False))
    world.claim(plan, 0)
    world.claim(plan, 1, now=NOW + timedelta(seconds=1))
    assert (services.plans.backing.misses, services.plans.backing.hits) == (1, 1)
    world.trust.revoke_key(world.keys["alice"].key_id, at=NOW - timedelta(minutes=1))  # and a change still counts
    assert_refused(world, plan, 2, reasons.PLAN_NOT_BACKED, now=NOW + timedelta(seconds=2))
    assert (services.plans.backing.misses, services.plans.backing.hits) == (2, 1)


def test_trust_revision_counts_every_trust_change(world: World) -> None:
    trust, key = world.trust, PrivateKey.generate()
    start = trust.revision()
    assert start == len(PRINCIPALS) * 2  # a principal and a key each
    trust.add_principal("frank", "approver")
    trust.add_key("frank", key.public_key)
    trust.add_group_member("security", "frank")
    trust.remove_group_member("security", "frank")
    trust.revoke_key(key.key_id, at=NOW)
    assert trust.revision() == start + 5
    with pytest.raises(Exception, match="already exists"):
        trust.add_principal("frank", "approver")
    assert trust.revision() == start + 5  # a refused change changes nothing


# -- finding 8: a failed step fails an ordered plan --------------------------------------------------


def test_ordered_plan_runs_past_failed_step_in_the_store(world: World) -> None:
    plan = world.executing(world.plan(3))
    world.run(plan, 0, "failed")
    assert_refused(world, plan, 1, reasons.PLAN_NOT_EXECUTING)
    assert world.plans.get(plan.id).state is PlanState.FAILED
    event = [p for p in world.audit("plan_event") if p["event"] == "fail"][-1]
    assert (event["from"], event["to"], event["code"], event["step_index"]) == ("executing", "failed",
                                                                                reasons.STEP_FAILED, 0)
    assert_refused(world, plan, 0, reasons.PLAN_NOT_EXECUTING)  # not even the failed step again


def test_ordered_step_waits_while_the_previous_one_runs(world: World) -> None:
    plan = world.executing(world.plan())
    world.claim(plan, 0)  # running: no result yet
    refused = assert_refused(world, plan, 1, reasons.STEP_OUT_OF_ORDER)
    assert "step 0 is still running" in refused.message


def test_failed_step_is_retried_only_as_policy_allows(store: Database, policy_dir: Path, tmp_path: Path) -> None:
    world = make_world(store, policies_with_config(policy_dir, tmp_path, retry_failed_steps=True,
                                                   max_step_attempts=2))
    plan = world.executing(world.plan(3))
    world.run(plan, 0, "failed")
    assert world.plans.get(plan.id).state is PlanState.EXECUTING  # policy allows a retry
    refused = assert_refused(world, plan, 1, reasons.STEP_OUT_OF_ORDER)
    assert "step 0 failed" in refused.message
    again = world.claim(plan, 0, now=NOW + timedelta(seconds=1))
    assert again.attempt == 2 and world.audit("step_claim")[-1]["attempt"] == 2
    world.plans.record_result(plan.id, 0, None, "succeeded", now=NOW + timedelta(seconds=1))
    world.run(plan, 1, "failed")  # attempt 1 of step 1: one retry left
    world.claim(plan, 1)
    world.plans.record_result(plan.id, 1, None, "failed", now=NOW)  # attempt 2 of 2: the plan fails
    assert world.plans.get(plan.id).state is PlanState.FAILED
    assert [(c.step_index, c.attempt, c.outcome) for c in world.plans.claims(plan.id)] == [
        (0, 2, "succeeded"), (1, 2, "failed")]


def test_failed_step_retried_after_the_policy_withdrew_the_retry(store: Database, policy_dir: Path,
                                                                 tmp_path: Path) -> None:
    """The claim asks the policy again: a retry allowed when the step failed but withdrawn since (the security
    team turned retries off, the engine reloaded) is refused, the failed step stays failed, and the plan fails
    then, as it would have when the step failed, rather than waiting executing for a step that cannot run.
    """
    mine = policies_with_config(policy_dir, tmp_path, retry_failed_steps=True)
    world = make_world(store, mine)
    plan = world.executing(world.plan(2))
    world.run(plan, 0, "failed")
    assert world.plans.get(plan.id).state is PlanState.EXECUTING  # a retry was allowed then
    config = mine / "writ" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "retry_failed_steps": False}))
    assert world.engine.engine.reload_if_changed(force=True)
    with pytest.raises(StepAlreadyClaimed):
        world.claim(plan, 0, now=NOW + timedelta(seconds=1))
    refused = world.audit("step_claim")[-1]
    assert (refused["step_index"], refused["claimed"], refused["code"]) == (0, False, reasons.STEP_ALREADY_CLAIMED)
    assert [(c.step_index, c.attempt, c.outcome) for c in world.plans.claims(plan.id)] == [(0, 1, "failed")]
    assert world.plans.get(plan.id).state is PlanState.FAILED
    failed = [e for e in world.audit("plan_event") if e["event"] == "fail"]
    assert [(e["step_index"], e["code"]) for e in failed] == [(0, reasons.STEP_FAILED)]
    assert "no longer allows a retry" in failed[0]["reason"]
    assert_refused(world, plan, 1, reasons.PLAN_NOT_EXECUTING)


def test_retry_claim_while_the_engine_is_down_leaves_the_plan_executing(store: Database, policy_dir: Path,
                                                                        tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine that cannot answer refuses the retry's claim with its own code; it does not fail the plan on the
    word of a policy that never spoke. Once the engine is back, the retry the policy allows is claimed."""
    world = make_world(store, policies_with_config(policy_dir, tmp_path, retry_failed_steps=True))
    plan = world.executing(world.plan(2))
    world.run(plan, 0, "failed")
    real = world.engine.evaluate

    def down(path: str, input_doc: dict[str, Any] | None = None) -> Any:
        if path == RETRY_PATH:
            raise PolicyEvaluationError("the policy engine is not answering", code=reasons.ENGINE_UNAVAILABLE)
        return real(path, input_doc)

    monkeypatch.setattr(world.engine, "evaluate", down)
    with pytest.raises(PolicyEvaluationError):
        world.claim(plan, 0, now=NOW + timedelta(seconds=1))
    assert world.plans.get(plan.id).state is PlanState.EXECUTING
    refused = world.audit("step_claim")[-1]
    assert (refused["claimed"], refused["code"]) == (False, reasons.ENGINE_UNAVAILABLE)
    monkeypatch.setattr(world.engine, "evaluate", real)
    assert world.claim(plan, 0, now=NOW + timedelta(seconds=2)).attempt == 2


def test_a_failed_step_is_not_claimed_again_by_default(world: World) -> None:
    plan = world.executing(world.plan(2, ordered=False))
    world.run(plan, 1, "failed")
    assert world.plans.get(plan.id).state is PlanState.FAILED  # unordered too: the plan is failed
    assert_refused(world, plan, 0, reasons.PLAN_NOT_EXECUTING)


# -- refused approvals leave a trace ------------------------------------------------------------------


def _self_approval(world: World, plan: Plan) -> tuple[bytes, str | None]:
    return sign_approval(plan.id, world.keys["plan-bot"], approver="plan-bot", at=NOW).to_json(), "plan-bot"


def _duplicate(world: World, plan: Plan) -> tuple[bytes, str | None]:
    world.approve(plan, "alice")
    return sign_approval(plan.id, world.keys["alice"], approver="alice", at=NOW + timedelta(seconds=1),
                         comment="again").to_json(), "alice"


def _outside_group(world: World, plan: Plan) -> tuple[bytes, str | None]:
    return sign_approval(plan.id, world.keys["dave"], approver="dave", at=NOW).to_json(), "dave"


def _unknown_key(world: World, plan: Plan) -> tuple[bytes, str | None]:
    return sign_approval(plan.id, PrivateKey.generate(), approver="alice", at=NOW).to_json(), None


def _revoked_key(world: World, plan: Plan) -> tuple[bytes, str | None]:
    world.trust.revoke_key(world.keys["bob"].key_id, at=NOW - timedelta(hours=1))
    return sign_approval(plan.id, world.keys["bob"], approver="bob", at=NOW).to_json(), "bob"


@pytest.mark.parametrize(
    ("make", "code"),
    [
        pytest.param(_self_approval, "approval_self_approval", id="self_approval"),
        pytest.param(_duplicate, "approval_duplicate_approver", id="duplicate"),
        pytest.param(_outside_group, "approval_not_in_required_group", id="outside_required_group"),
        pytest.param(_unknown_key, "approval_bad_signature", id="unknown_key"),
        pytest.param(_revoked_key, "approval_key_invalid", id="revoked_key"),
    ],
)
def test_refused_approval_is_audited(world: World, make: Any, code: str) -> None:
    plan = world.plan()
    world.plans.submit(sign_plan(plan, world.keys["plan-bot"]).to_json(), now=NOW)
    envelope, approver = make(world, plan)
    with pytest.raises(ApprovalRefused) as e:
        world.plans.add_approval(plan.id, envelope, now=NOW)
    assert e.value.code == code
    logged = world.audit("approval_refused")
    assert len(logged) == 1
    entry = logged[0]
    assert (entry["plan_id"], entry["code"], entry["reason"], entry["approver"]) == (plan.id, code, e.value.message,
                                                                                     approver)
    assert entry["envelope_sha256"].startswith("sha256:") and entry["received_at"]


def test_approval_of_a_plan_no_longer_pending_is_audited(world: World) -> None:
    plan = world.executing(world.plan())
    with pytest.raises(Exception, match="approvals and rejections are taken only while a plan is pending"):
        world.approve(plan, "carol")
    assert world.audit("approval_refused")[-1]["code"] == reasons.PLAN_NOT_PENDING


# -- through the gateway: a real `writ mcp` executor, a real upstream, the real CLI --------------------


def writ_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from writ.engine.cli.main import main; main()", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, check=False)


class GatewayEnv:
    def __init__(self, root: Path) -> None:
        node = require_upstreams()
        self.files = root / "files"
        self.files.mkdir()
        self.data_dir = root / "writ-home"
        self.stderr = root / "gateway.stderr"
        self.config = root / "etc" / "writ.toml"
        self.config.parent.mkdir()
        self.config.write_text(f"""
[gateway]
call_timeout_s = 30

[upstreams.fs]
command = {toml_str(node)}
args = {toml_list([str(FS_SERVER), str(self.files)])}
""")
        self.keys = register(self.data_dir, {"plan-bot": "planner", "exec-bot": "executor", "alice": "approver",
                                             "bob": "approver"}, keys=True)
        self.settings = Settings(home=self.data_dir)


@pytest.fixture(scope="module")
def genv(tmp_path_factory: pytest.TempPathFactory) -> GatewayEnv:
    return GatewayEnv(tmp_path_factory.mktemp("attack-plans"))


@pytest.fixture(scope="module")
def gstores(genv: GatewayEnv) -> Iterator[Services]:
    with open_services(genv.settings) as w:
        yield w


@pytest.fixture(scope="module")
def planner(genv: GatewayEnv) -> Iterator[GatewayClient]:
    with gateway_client(genv.config, "plan-bot", genv.data_dir, genv.stderr) as client:
        yield client


@pytest.fixture(scope="module")
def executor(genv: GatewayEnv) -> Iterator[GatewayClient]:
    with gateway_client(genv.config, "exec-bot", genv.data_dir, genv.stderr) as client:
        yield client


def approved_plan(genv: GatewayEnv, stores: Services, planner: GatewayClient, steps: list[dict[str, Any]],
                  alice: PrivateKey | None = None) -> str:
    proposed = planner.call("writ__writ_plan_propose", {"title": "attack", "rationale": "test", "steps": steps})
    assert not proposed.is_error, text_of(proposed)
    plan_id = str((proposed.structured_content or {})["plan_id"])
    for name in ("alice", "bob"):
        key = alice if alice is not None and name == "alice" else PrivateKey.load(genv.keys[name])
        stores.plans.add_approval(plan_id, sign_approval(plan_id, key, approver=name).to_json())
    assert stores.plans.get(plan_id).state is PlanState.APPROVED
    return plan_id


def finished_signals(genv: GatewayEnv, plan_id: str, *, want: int, within_s: float = 20.0) -> list[str]:
    """The outcomes of the ``plan_finished`` signals the plan's workflow got, once there are ``want`` (or time ran out)."""

    async def read() -> list[str]:
        client = await ApprovalClient.connect(Settings(home=genv.data_dir))
        history = await client.client.get_workflow_handle(client.workflow_id(plan_id)).fetch_history()
        return [json.loads(e.workflow_execution_signaled_event_attributes.input.payloads[0].data)["outcome"]
                for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                and e.workflow_execution_signaled_event_attributes.signal_name == "plan_finished"]

    deadline = time.monotonic() + within_s
    while True:
        got = asyncio.run(read())
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def write(path: Path, content: str) -> dict[str, Any]:
    return {"tool": "fs__write_file", "args": {"path": str(path), "content": content}}


def test_approver_key_revoked_while_executing(genv: GatewayEnv, gstores: Services, planner: GatewayClient,
                                              executor: GatewayClient) -> None:
    first, second = genv.files / "revoked-1.txt", genv.files / "revoked-2.txt"
    alice = PrivateKey.generate()  # a key of her own for this plan: the one revoked below
    gstores.trust.add_key("alice", alice.public_key)
    plan_id = approved_plan(genv, gstores, planner, [write(first, "one\n"), write(second, "two\n")], alice=alice)
    began = executor.call("writ__writ_plan_begin", {"plan_id": plan_id})
    assert not began.is_error, text_of(began)
    ran = executor.call("fs__write_file", {"path": str(first), "content": "one\n"})
    assert not ran.is_error, text_of(ran)

    alice_key = alice.key_id
    approved_at = min(a.received_at for a in gstores.plans.approvals(plan_id))
    before = (approved_at - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    revoked = writ_cli(genv.data_dir, "keys", "revoke", alice_key[7:19], "--at", before)
    assert revoked.returncode == 0, revoked.stderr

    refused = executor.call("fs__write_file", {"path": str(second), "content": "two\n"})
    assert refused.is_error and error_code(refused) == reasons.PLAN_NOT_BACKED, text_of(refused)
    assert not second.exists()
    assert gstores.plans.get(plan_id).state is PlanState.ABORTED
    logged = [e.payload for e in audit_entries(genv.data_dir) if e.payload.get("plan_id") == plan_id]
    assert any(p.get("claimed") is False and p.get("code") == reasons.PLAN_NOT_BACKED for p in logged)
    assert any(p.get("event") == "abort" and p.get("code") == reasons.PLAN_NOT_BACKED for p in logged)
    # the gateway tells the plan's workflow at once, so the bundle is exported now, not at its next poll
    assert finished_signals(genv, plan_id, want=1) == ["aborted"]

    verified = writ_cli(genv.data_dir, "plan", "verify", plan_id[7:19])  # the operator's check agrees
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "state aborted" in verified.stdout and "key_invalid" in verified.stdout
    released = executor.call("writ__writ_plan_finish", {"outcome": "aborted", "reason": "not backed"})
    assert not released.is_error, text_of(released)


def test_ordered_plan_runs_past_failed_step(genv: GatewayEnv, gstores: Services, planner: GatewayClient,
                                            executor: GatewayClient) -> None:
    broken = genv.files / "no-such-dir" / "a.txt"  # the upstream fails: its directory does not exist
    after = genv.files / "after-failure.txt"
    plan_id = approved_plan(genv, gstores, planner, [write(broken, "a\n"), write(after, "b\n")])
    began = executor.call("writ__writ_plan_begin", {"plan_id": plan_id})
    assert not began.is_error, text_of(began)

    failed = executor.call("fs__write_file", {"path": str(broken), "content": "a\n"})
    assert failed.is_error and error_code(failed) is None, text_of(failed)  # the upstream's own error, passed on

    next_step = executor.call("fs__write_file", {"path": str(after), "content": "b\n"})
    assert not after.exists(), "step 1 ran after step 0 failed"
    assert next_step.is_error and reason_codes(next_step) == [reasons.PLAN_NOT_APPROVED], text_of(next_step)
    assert gstores.plans.get(plan_id).state is PlanState.FAILED
    assert [(c.step_index, c.outcome) for c in gstores.plans.claims(plan_id)] == [(0, "failed")]
    events = [e.payload for e in audit_entries(genv.data_dir)
              if e.kind == "plan_event" and e.payload["plan_id"] == plan_id]
    assert (events[-1]["event"], events[-1]["code"]) == ("fail", reasons.STEP_FAILED)
    released = executor.call("writ__writ_plan_finish", {"outcome": "failed", "reason": "step 0 failed"})
    assert not released.is_error, text_of(released)
