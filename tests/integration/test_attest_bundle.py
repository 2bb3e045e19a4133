"""Attestation bundles (ADR 0020, 0022): one honest bundle of a completed plan verifies offline; each attack is refused.

The bundle is built from a real store (SQLite) by ``build_bundle`` and verified by
``verify_offline`` (regorus re-running the bundle's own policy) with only the exported trust
root, as an auditor would (the builder, ``Honest``, is in tests/support/bundles.py). Each mutation
is what an operator with the database, the instance key or the file could do, named for the
attack; tests/vectors/bundles/mutations.json lists the attacks of ADR 0022 with the check and
message each must be refused with, and tests/vectors/bundles/make_corpus.py runs the named tests
to write each attack's bundle as a file (test_attest_bundle_corpus.py checks the files).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import SSlibKey

from tests.integration.test_plan_store import NOW, make_world
from tests.support.bundles import Honest, Parts, refused, statement_edit, step_input
from writ.attestations.audit import AuditLog
from writ.attestations.bundle_format import (
    AUDIT_PART,
    CHECKPOINT_PART,
    DECISIONS_PART,
    EXECUTION_PART,
    POLICY_PREFIX,
    TRUST_PART,
    policy_part,
    split_bundle,
)
from writ.attestations.notes import Checkpoint, open_checkpoint, sign_checkpoint
from writ.engine.core import reasons
from writ.engine.core.db import Database
from writ.engine.core.errors import BundleError, NotFoundError
from writ.engine.policy.base import new_decision_id
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.models import Decision, Reason
from writ.engine.policy.offline import verify_offline
from writ.engine.policy.pdp import audit_payload
from writ.engine.wiring.policy_record import watch_embedded
from writ.plans.approval_result import ApprovalRequirement
from writ.plans.canonical import canonical_bytes, digest, parse_strict
from writ.plans.keys import PrivateKey
from writ.plans.lifecycle import PlanState
from writ.plans.statements import sign_approval


@pytest.fixture(scope="module")
def engine(policy_dir: Path) -> EmbeddedEngine:
    return EmbeddedEngine(policy_dir)


@pytest.fixture
def honest(store: Database, engine: EmbeddedEngine) -> Honest:
    return Honest(make_world(store, engine), PrivateKey.generate(), engine)


def test_honest_bundle_verifies_offline(honest: Honest) -> None:
    report = verify_offline(honest.raw, honest.trust_root)
    assert (report.plan_id, report.planner, sorted(report.approvers)) == (honest.plan.id, "plan-bot", ["alice", "bob"])
    assert (report.steps_run, report.state) == (2, "completed")
    assert report.entries >= 5 and report.checkpoint_size >= report.entries
    assert "bundle OK" in report.summary()


def test_securesystemslib_verifies_the_manifest_with_the_exported_key(honest: Honest) -> None:
    _, manifest = split_bundle(honest.raw)
    env = SslibEnvelope.from_dict(manifest.to_dict())
    pub = honest.instance.public_key
    key = SSlibKey(pub.key_id, "ed25519", "ed25519", {"public": pub.raw.hex()})
    assert key.keyid in env.verify([key], 1)


def test_securesystemslib_verifies_the_plan_and_approval_envelopes_in_the_bundle(honest: Honest) -> None:
    parts, _ = split_bundle(honest.raw)

    def sslib_key(who: str) -> SSlibKey:
        pub = honest.world.keys[who].public_key
        return SSlibKey(pub.key_id, "ed25519", "ed25519", {"public": pub.raw.hex()})

    plan_env = SslibEnvelope.from_dict(json.loads(parts["plan.dsse.json"]))
    assert sslib_key("plan-bot").keyid in plan_env.verify([sslib_key("plan-bot")], 1)
    approvals = [SslibEnvelope.from_dict(json.loads(v)) for k, v in sorted(parts.items()) if k.startswith("approvals/")]
    keys = [sslib_key("alice"), sslib_key("bob")]
    assert [set(a.verify(keys, 1)) for a in approvals] == [{keys[0].keyid}, {keys[1].keyid}]


def test_step_added_after_approval(honest: Honest) -> None:
    extra = {"step_index": 2, "executor": "exec-bot", "claimed_at": "2026-11-22T10:00:00Z",
             "args_digest": digest({"path": "/etc/passwd"}), "result_digest": None, "outcome": "succeeded",
             "finished_at": None, "attempt": 1}
    raw = honest.resigned(statement_edit(EXECUTION_PART, lambda p: p["steps"].append(extra)))
    refused(honest, raw, "executed steps", "step 2 ran but the approved plan has 2 steps")


def test_step_arguments_changed(honest: Honest) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["steps"][0]["args_digest"] = digest({"path": "/repo/README.md", "content": "evil\n"})
    refused(honest, honest.resigned(statement_edit(EXECUTION_PART, edit)), "executed steps",
            "step 0 ran with arguments")


def test_step_run_twice(honest: Honest) -> None:
    raw = honest.resigned(statement_edit(EXECUTION_PART, lambda p: p["steps"].append(dict(p["steps"][0]))))
    refused(honest, raw, "executed steps", "step 0 ran more than once")


def test_approval_removed_quorum_not_met(honest: Honest) -> None:
    def drop(parts: Parts) -> None:
        del parts[max(n for n in parts if n.startswith("approvals/"))]
    refused(honest, honest.resigned(drop), "approvals", "has 1/2 approvals; missing: 1 more approval")


def test_approval_by_plan_author(honest: Honest) -> None:
    def swap(parts: Parts) -> None:
        name = max(n for n in parts if n.startswith("approvals/"))
        parts[name] = sign_approval(honest.plan.id, honest.world.keys["plan-bot"], approver="plan-bot",
                                    decision="approve", at=NOW).to_json()
    refused(honest, honest.resigned(swap), "approvals", r"ignored: plan-bot \(self_approval\)")


def test_audit_entry_edited(honest: Honest) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["entries"][0]["payload"]["planner"] = "someone-else"
    refused(honest, honest.resigned(statement_edit(AUDIT_PART, edit)), "audit inclusion", "was changed")


def test_audit_entry_removed_with_proof_recomputed(honest: Honest) -> None:
    # the operator drops step 1's result from the log and the bundle; the remaining proofs still verify
    def edit(p: dict[str, Any]) -> None:
        p["entries"] = [e for e in p["entries"] if not (e["kind"] == "step_result" and e["payload"]["step_index"] == 1)]
    refused(honest, honest.resigned(statement_edit(AUDIT_PART, edit)), "audit completeness",
            "step 1's result has no entry in the audit log")


def test_failed_plan_presented_as_completed(honest: Honest) -> None:
    failed = honest.world.executing(now=NOW - timedelta(minutes=7))
    honest.world.claim(failed, 0)
    honest.world.plans.record_result(failed.id, 0, None, "failed", now=NOW)
    assert honest.world.plans.get(failed.id).state is PlanState.FAILED  # a failed step fails the plan
    honest.raw, honest.plan = honest.build(failed.id), failed

    def edit(p: dict[str, Any]) -> None:
        p["state"] = "completed"
        p["steps"][0]["outcome"] = "succeeded"
    refused(honest, honest.resigned(statement_edit(EXECUTION_PART, edit)), "audit completeness",
            "step 0's result has no entry in the audit log")


def test_failed_plan_bundle_verifies_as_failed(honest: Honest) -> None:
    failed = honest.world.executing(now=NOW - timedelta(minutes=7))
    honest.world.claim(failed, 0)
    honest.world.plans.record_result(failed.id, 0, None, "failed", now=NOW)
    assert verify_offline(honest.build(failed.id), honest.trust_root).state == "failed"


def test_audit_proof_against_another_tree(honest: Honest) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["entries"][0]["proof"] = [base64.b64encode(bytes(32)).decode()] * len(p["entries"][0]["proof"])
    refused(honest, honest.resigned(statement_edit(AUDIT_PART, edit)), "audit inclusion",
            "not in the signed checkpoint")


def test_checkpoint_signed_by_another_key(honest: Honest) -> None:
    held = open_checkpoint(split_bundle(honest.raw)[0][CHECKPOINT_PART].decode(), honest.instance.public_key)
    note = sign_checkpoint(held, PrivateKey.generate()).encode()  # same origin, size and root; another key
    raw = honest.resigned(lambda parts: parts.__setitem__(CHECKPOINT_PART, note))
    refused(honest, raw, "checkpoint signature", "the bundle's checkpoint is not signed by this Writ instance's key")


def test_manifest_signed_by_another_key(honest: Honest) -> None:
    refused(honest, honest.resigned(lambda parts: None, key=PrivateKey.generate()), "manifest signature",
            "not signed by this Writ instance's key")


def test_manifest_digest_mismatch(honest: Honest) -> None:
    doc = json.loads(honest.raw)
    doc["parts"][EXECUTION_PART] = base64.b64encode(b'{"tampered":true}').decode()
    refused(honest, json.dumps(doc).encode(), "manifest digests", f"part {EXECUTION_PART} hashes to")


def test_part_swapped_from_another_plans_bundle(honest: Honest) -> None:
    other = honest.world.executing(now=NOW - timedelta(minutes=6))
    other_parts, _ = split_bundle(honest.build(other.id))
    raw = honest.resigned(lambda parts: parts.__setitem__(EXECUTION_PART, other_parts[EXECUTION_PART]))
    refused(honest, raw, "statement subject", "is not a statement about plan")



# -- the CLI, as an operator exports and an auditor verifies ---------------------------------------


def writ_cli(home: Path, *args: str) -> Any:
    from click.testing import CliRunner

    from writ.engine.cli.main import main

    return CliRunner().invoke(main, [*args, "--data-dir", str(home)])


def test_cli_export_then_verify_offline_and_a_changed_byte_is_named(tmp_path: Path, engine: EmbeddedEngine) -> None:
    from writ.engine.core.settings import Settings
    from writ.engine.wiring.services import open_services

    home = tmp_path / "home"
    assert writ_cli(home, "init").exit_code == 0
    with open_services(Settings(home=home)) as w:
        world = make_world(w.store, engine)
        plan = world.executing()
        for i in range(2):
            world.claim(plan, i)
            world.plans.record_result(plan.id, i, "sha256:" + "cd" * 32, "succeeded", now=NOW)
        world.plans.finish(plan.id, "completed", now=NOW)
    bundle, root = tmp_path / "plan.bundle.json", tmp_path / "root.json"
    exported = writ_cli(home, "attest", "export", plan.id.removeprefix("sha256:")[:12], "-o", str(bundle))
    assert exported.exit_code == 0 and f"plan {plan.id}" in exported.output, exported.output
    assert writ_cli(home, "trust", "export", "-o", str(root)).exit_code == 0

    shutil_home = tmp_path / "elsewhere"  # the auditor's side: no data directory of the instance
    ok = writ_cli(shutil_home, "attest", "verify", str(bundle), "--trust", str(root))
    assert ok.exit_code == 0 and ok.output.startswith("bundle OK: plan " + plan.id), ok.output
    assert "approved by alice, bob; 2 step(s) run, state completed" in ok.output

    doc = json.loads(bundle.read_bytes())
    doc["parts"][EXECUTION_PART] = base64.b64encode(base64.b64decode(doc["parts"][EXECUTION_PART]) + b" ").decode()
    bundle.write_text(json.dumps(doc))
    bad = writ_cli(shutil_home, "attest", "verify", str(bundle), "--trust", str(root))
    assert bad.exit_code == 1 and f"manifest digests: part {EXECUTION_PART} hashes to" in bad.output, bad.output


def test_held_checkpoint_of_a_rewritten_log(honest: Honest) -> None:
    held = open_checkpoint(split_bundle(honest.raw)[0][CHECKPOINT_PART].decode(), honest.instance.public_key)
    assert verify_offline(honest.raw, honest.trust_root, held_note=sign_checkpoint(held, honest.instance)).entries
    other = Checkpoint(held.origin, held.size, bytes(32))  # what the auditor kept, before the operator rewrote
    with pytest.raises(BundleError, match="the log was rewritten: the tree of") as caught:
        verify_offline(honest.raw, honest.trust_root, held_note=sign_checkpoint(other, honest.instance))
    assert caught.value.check == "held checkpoint"


def test_standalone_verifier_imports_no_gateway_web_cli_workflows_or_database_driver(honest: Honest,
                                                                                       tmp_path: Path) -> None:
    import subprocess
    import sys

    bundle, root = tmp_path / "b.json", tmp_path / "root.json"
    bundle.write_bytes(honest.raw)
    root.write_bytes(honest.trust_root)
    code = ("import sys; from writ.engine.policy.offline import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in sys.modules if m.startswith(('writ.engine.gateway', 'writ.engine.web', "
            "'writ.engine.cli', 'writ.workflows', 'writ.engine.policy.pdp', 'sqlite3', 'psycopg', 'psycopg2', "
            "'asyncpg')))); sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code, str(bundle), "--trust", str(root)], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("bundle OK: plan " + honest.plan.id)
    assert "2 decision(s) re-evaluated" in run.stdout
    assert run.stdout.splitlines()[-1] == "[]", run.stdout  # an auditor installs only what verification needs

    bundle.write_bytes(honest.resigned(statement_edit(AUDIT_PART, lambda p: p["entries"].append({"seq": "x"}))))
    bad = subprocess.run([sys.executable, "-m", "writ.engine.policy.offline", str(bundle), "--trust", str(root)],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("bundle REFUSED: bundle format: a part does not have"), \
        bad.stderr


def test_approval_by_a_key_revoked_before_it_signed(honest: Honest) -> None:
    # the auditor's trust root says bob's key was revoked before bob's approval was signed (at NOW)
    trust = honest.world.trust
    trust.revoke_key(honest.world.keys["bob"].public_key.key_id, at=NOW - timedelta(minutes=1))
    root = {**trust.export_trust_root(), "instance_key": json.loads(honest.trust_root)["instance_key"]}
    honest.trust_root = json.dumps(root).encode()
    refused(honest, honest.raw, "approvals", r"has 1/2 approvals; missing: 1 more approval; ignored: bob \(")


def test_held_older_checkpoint_is_extended_by_the_carried_consistency_proof(honest: Honest) -> None:
    held = open_checkpoint(split_bundle(honest.raw)[0][CHECKPOINT_PART].decode(), honest.instance.public_key)
    honest.world.pending(now=NOW - timedelta(minutes=8))  # the log grows after the auditor took its copy
    later = honest.build()
    report = verify_offline(later, honest.trust_root, held_note=sign_checkpoint(held, honest.instance))
    assert report.checkpoint_size > held.size
    rewritten = Checkpoint(held.origin, held.size, bytes(32))  # what the auditor holds is not a prefix of the log
    with pytest.raises(BundleError, match=f"the log was rewritten since the checkpoint of {held.size} entries"):
        verify_offline(later, honest.trust_root, held_note=sign_checkpoint(rewritten, honest.instance))
    unknown = Checkpoint(held.origin, held.size - 1, bytes(32))  # no stored checkpoint of that size: no proof
    with pytest.raises(BundleError, match="carries no consistency proof between them"):
        verify_offline(later, honest.trust_root, held_note=sign_checkpoint(unknown, honest.instance))


# -- ADR 0022: the bundle's own policy re-runs the requirement and the decisions; its keys meet the auditor's ----

MUTATIONS = {m["name"]: m for m in json.loads(
    (Path(__file__).parents[1] / "vectors" / "bundles" / "mutations.json").read_text())["mutations"]}


def refused_as(honest: Honest, raw: bytes, name: str) -> None:
    """Refused with the check and message tests/vectors/bundles/mutations.json gives for attack ``name``."""
    refused(honest, raw, MUTATIONS[name]["check"], MUTATIONS[name]["match"])


def test_every_listed_mutation_has_its_named_test() -> None:
    assert {n for n in MUTATIONS if f"test_{n}" not in globals()} == set()


def test_honest_bundle_carries_its_policy_decisions_and_trust_subset(honest: Honest) -> None:
    parts, _ = split_bundle(honest.raw)
    assert sorted(n for n in parts if n.startswith(POLICY_PREFIX)) == [policy_part(honest.engine.revision or "")]
    decisions = parse_strict(parts[DECISIONS_PART])["predicate"]["decisions"]
    assert [(d["allow"], d["decided_by"], d["policy_revision"]) for d in decisions] == \
        [(True, "policy", honest.engine.revision)] * 2
    subset = parse_strict(parts[TRUST_PART])["predicate"]
    assert sorted({k["principal"] for k in subset["trust"]["keys"]}) == ["alice", "bob", "exec-bot", "plan-bot"]
    report = verify_offline(honest.raw, honest.trust_root)
    assert (report.decisions_replayed, report.policy_revisions) == (2, (honest.engine.revision,))


def test_bundle_decision_disagrees_with_included_policy(honest: Honest) -> None:
    # the gateway (or whoever writes the log) records an allow for a call that is not the plan's step
    inp = step_input(honest.plan.id, 0, matches=False)
    assert not honest.engine.decide(inp).allow  # what the policy really says
    forged = Decision(decision_id=new_decision_id(), allow=True, reasons=[], obligations=[],
                      policy_revision=honest.engine.revision, engine="embedded", duration_us=5)
    AuditLog(honest.world.store).append("decision", audit_payload(forged, inp))
    honest.raw = honest.build()  # every signature and proof genuine: only re-evaluation catches it
    refused_as(honest, honest.raw, "bundle_decision_disagrees_with_included_policy")


def test_bundle_requirement_lowered_in_recorded_statement(honest: Honest) -> None:
    honest.raw = honest.build(requirement=ApprovalRequirement(quorum=1))

    def drop(parts: Parts) -> None:
        del parts[max(n for n in parts if n.startswith("approvals/"))]
    refused_as(honest, honest.resigned(drop), "bundle_requirement_lowered_in_recorded_statement")


def test_recorded_requirement_that_differs_is_reported_and_not_used(honest: Honest) -> None:
    raw = honest.build(requirement=ApprovalRequirement(quorum=1))
    report = verify_offline(raw, honest.trust_root)  # both approvals are there: the policy's quorum 2 is met
    assert report.requirement_note is not None and "recorded requirement (quorum 1) differs" in report.requirement_note
    assert "note: the recorded requirement" in report.summary()


def subset_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[Parts], None]:
    """Change the trust subset's keys and recompute its digest (the attacker holds the instance key)."""
    from writ.plans.canonical import sha256_digest

    def change(parts: Parts) -> None:
        doc = parse_strict(parts[TRUST_PART])
        edit(doc["predicate"]["trust"])
        doc["predicate"]["digest"] = sha256_digest(canonical_bytes(doc["predicate"]["trust"]))
        parts[TRUST_PART] = canonical_bytes(doc)
    return change


def test_bundle_trust_subset_key_not_in_auditor_root(honest: Honest) -> None:
    mallory = PrivateKey.generate()
    raw = honest.resigned(subset_edit(lambda t: t["keys"].append(
        {"principal": "alice", "role": "approver", "public_key": mallory.public_key.to_base64(),
         "not_before": None, "not_after": None, "revoked_at": None})))
    refused_as(honest, raw, "bundle_trust_subset_key_not_in_auditor_root")


def test_bundle_trust_subset_key_moved_to_another_principal(honest: Honest) -> None:
    def edit(trust: dict[str, Any]) -> None:
        for k in trust["keys"]:
            if k["principal"] == "exec-bot":
                k.update(principal="alice", role="approver")
    refused_as(honest, honest.resigned(subset_edit(edit)), "bundle_trust_subset_key_moved_to_another_principal")


def test_revocation_in_the_bundles_subset_applies(honest: Honest) -> None:
    # the instance knew of bob's revocation (before he signed) and the auditor's older root does not: it applies
    def edit(trust: dict[str, Any]) -> None:
        for k in trust["keys"]:
            if k["principal"] == "bob":
                k["revoked_at"] = "2026-11-22T09:00:00Z"
    refused(honest, honest.resigned(subset_edit(edit)), "approvals", r"has 1/2 approvals; missing: 1 more approval")


def test_bundle_policy_swapped_for_another_revision(honest: Honest, policy_dir: Path, tmp_path: Path) -> None:
    import shutil

    from writ.engine.policy.bundle import bundle_bytes
    from writ.engine.policy.policyset import load_policy_set

    mine = tmp_path / "policies"
    shutil.copytree(policy_dir, mine, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    tools = mine / "writ" / "tools.json"
    tools.write_text(tools.read_text().replace('"git_commit": "write"', '"git_commit": "read"'))
    other = load_policy_set(mine)
    assert other.revision != honest.engine.revision
    name = policy_part(honest.engine.revision or "")
    raw = honest.resigned(lambda parts: parts.__setitem__(name, bundle_bytes(other)))
    refused_as(honest, raw, "bundle_policy_swapped_for_another_revision")


def test_bundle_decision_dropped_from_decisions_part(honest: Honest) -> None:
    raw = honest.resigned(statement_edit(DECISIONS_PART, lambda p: p["decisions"].pop()))
    refused_as(honest, raw, "bundle_decision_dropped_from_decisions_part")


def test_gateway_refusal_is_listed_and_not_re_evaluated(honest: Honest) -> None:
    inp = step_input(honest.plan.id, 1)  # the policy would allow it: the gateway refused first (principal locked)
    locked = Decision(decision_id=new_decision_id(), allow=False, obligations=[], policy_revision=None,
                      reasons=[Reason(code=reasons.PRINCIPAL_LOCKED, message="locked")], engine="embedded",
                      duration_us=0)
    AuditLog(honest.world.store).append("decision", {**audit_payload(locked, inp), "decided_by": "gateway"})
    report = verify_offline(honest.build(), honest.trust_root)
    assert report.decisions_replayed == 2
    decisions = parse_strict(split_bundle(honest.build())[0][DECISIONS_PART])["predicate"]["decisions"]
    assert [d["decided_by"] for d in decisions] == ["policy", "policy", "gateway"]


def test_bundle_gateway_allow_without_policy(honest: Honest) -> None:
    inp = step_input(honest.plan.id, 1)
    forged = Decision(decision_id=new_decision_id(), allow=True, reasons=[], obligations=[],
                      policy_revision=None, engine="embedded", duration_us=0)
    AuditLog(honest.world.store).append("decision", {**audit_payload(forged, inp), "decided_by": "gateway"})
    refused_as(honest, honest.build(), "bundle_gateway_allow_without_policy")


def test_legacy_gateway_deny_is_known_by_its_reason_codes(honest: Honest) -> None:
    inp = step_input(honest.plan.id, 1)
    legacy = Decision(decision_id=new_decision_id(), allow=False, obligations=[], policy_revision=None,
                      reasons=[Reason(code=reasons.PRINCIPAL_DISABLED, message="disabled")], engine="embedded",
                      duration_us=0)
    AuditLog(honest.world.store).append("decision", audit_payload(legacy, inp))  # written before decided_by
    assert verify_offline(honest.build(), honest.trust_root).decisions_replayed == 2


def test_export_refuses_a_plan_whose_policy_revision_was_never_recorded(honest: Honest) -> None:
    honest.world.sql("DELETE FROM policy_bundles")
    with pytest.raises(NotFoundError, match=f"policy revision {honest.engine.revision} decided this plan but its "
                       "policy bundle was never recorded"):
        honest.build()


def test_each_policy_revision_an_engine_reloads_is_recorded(store: Database, policy_dir: Path,
                                                            tmp_path: Path) -> None:
    import shutil

    from writ.attestations.policy_bundles import PolicyBundles
    from writ.engine.policy.offline import policy_set_of

    mine = tmp_path / "policies"
    shutil.copytree(policy_dir, mine, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    engine = EmbeddedEngine(mine)
    watch_embedded(store, engine)
    first = engine.revision
    tools = mine / "writ" / "tools.json"
    tools.write_text(tools.read_text().replace('"git_commit": "write"', '"git_commit": "read"'))
    assert engine.reload_if_changed(force=True)
    stored = PolicyBundles(store)
    assert [r for r, _ in stored.revisions()] == [first, engine.revision]
    assert policy_set_of(stored.get(first) or b"").revision == first  # the bytes re-hash to their revision


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migration_0011_matches_the_policy_bundles_table(store: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    with store.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert [d for d in diffs if "policy_bundles" in repr(d)] == []


# -- a LATER checkpoint the auditor holds: the operator proves the bundle's tree is a prefix of it -------------


def later_world(honest: Honest) -> tuple[Checkpoint, list[str]]:
    """The log grows after the bundle was made, the instance signs a checkpoint the auditor keeps; its tree's hashes."""
    from writ.attestations.merkle import MemoryTree
    from writ.attestations.tree import entry_leaf

    honest.world.pending(now=NOW - timedelta(minutes=8))
    later = honest.checkpointer.checkpoint().checkpoint
    hashes = [e.entry_hash for e in AuditLog(honest.world.store).tail(later.size)]
    assert MemoryTree(entry_leaf(h) for h in hashes).root() == later.root
    return later, hashes


def test_bundle_checkpoint_consistent_with_later_held_checkpoint(honest: Honest) -> None:
    bundle_cp = open_checkpoint(split_bundle(honest.raw)[0][CHECKPOINT_PART].decode(), honest.instance.public_key)
    later, _ = later_world(honest)
    assert later.size > bundle_cp.size
    note = sign_checkpoint(later, honest.instance)
    with pytest.raises(BundleError, match="give the consistency proof between them"):
        verify_offline(honest.raw, honest.trust_root, held_note=note)
    from writ.attestations.held import consistency_document
    from writ.attestations.tree import AuditTree

    tree = AuditTree(honest.world.store)
    proof = json.dumps(consistency_document(tree.root(bundle_cp.size), tree.root(later.size),
                                            tree.consistency_proof(bundle_cp.size, later.size))).encode()
    report = verify_offline(honest.raw, honest.trust_root, held_note=note, held_proof=proof)
    assert report.checkpoint_size == bundle_cp.size


def test_bundle_checkpoint_of_a_rewritten_log_against_later_held_checkpoint(honest: Honest) -> None:
    # the auditor holds a later checkpoint; the operator then rewrote an entry the bundle covers and re-signed
    # the bundle's own checkpoint over the rewritten tree: no proof from the bundle's tree to the held one exists
    from writ.attestations.held import consistency_document
    from writ.attestations.merkle import MemoryTree
    from writ.attestations.tree import entry_leaf

    bundle_cp = open_checkpoint(split_bundle(honest.raw)[0][CHECKPOINT_PART].decode(), honest.instance.public_key)
    later, hashes = later_world(honest)
    note = sign_checkpoint(later, honest.instance)
    forged = MemoryTree(entry_leaf(h) for h in ["sha256:" + "ee" * 32, *hashes[1:]])  # entry 1 rewritten
    proof = json.dumps(consistency_document((bundle_cp.size, forged.root(bundle_cp.size)),
                                            (later.size, forged.root()),
                                            forged.consistency_proof(bundle_cp.size, later.size))).encode()
    rewritten = sign_checkpoint(Checkpoint(bundle_cp.origin, bundle_cp.size, forged.root(bundle_cp.size)),
                                honest.instance).encode()
    raw = honest.resigned(lambda parts: parts.__setitem__(CHECKPOINT_PART, rewritten))
    with pytest.raises(BundleError, match=f"the log was rewritten between the bundle's checkpoint and the one of "
                       f"{later.size} entries you hold") as caught:
        verify_offline(raw, honest.trust_root, held_note=note, held_proof=proof)
    assert caught.value.check == "held checkpoint"
    with pytest.raises(BundleError, match="the consistency proof is from"):
        verify_offline(honest.raw, honest.trust_root, held_note=note, held_proof=json.dumps(
            {**json.loads(proof), "old_size": bundle_cp.size - 1}).encode())


def test_cli_audit_consistency_then_attest_verify_with_a_later_checkpoint(tmp_path: Path, engine: EmbeddedEngine
                                                                           ) -> None:
    from writ.engine.core.settings import Settings
    from writ.engine.wiring.services import open_services

    home = tmp_path / "home"
    assert writ_cli(home, "init").exit_code == 0
    with open_services(Settings(home=home)) as w:
        world = make_world(w.store, engine)
        watch_embedded(w.store, engine)
        plan = world.executing()
        for i in range(2):
            world.claim(plan, i)
            world.plans.record_result(plan.id, i, "sha256:" + "cd" * 32, "succeeded", now=NOW)
        world.plans.finish(plan.id, "completed", now=NOW)
    bundle, root, proof = tmp_path / "plan.bundle.json", tmp_path / "root.json", tmp_path / "proof.json"
    assert writ_cli(home, "attest", "export", plan.id, "-o", str(bundle)).exit_code == 0
    assert writ_cli(home, "trust", "export", "-o", str(root)).exit_code == 0
    with open_services(Settings(home=home)) as w:
        w.audit.append("plan_event", {"event": "later", "plan_id": "sha256:" + "00" * 32})  # the log grows
    later = writ_cli(home, "audit", "checkpoint")
    assert later.exit_code == 0, later.output
    held = tmp_path / "later.note"
    held.write_text(later.output)
    size = int(later.output.splitlines()[1])  # a checkpoint's body: origin, size, root
    old_size = int(split_bundle(bundle.read_bytes())[0][CHECKPOINT_PART].decode().splitlines()[1])
    assert size > old_size
    made = writ_cli(home, "audit", "consistency", "--old", str(old_size), "--new", str(size), "-o", str(proof))
    assert made.exit_code == 0, made.output
    elsewhere = tmp_path / "elsewhere"
    ok = writ_cli(elsewhere, "attest", "verify", str(bundle), "--trust", str(root), "--checkpoint", str(held),
                  "--proof", str(proof))
    assert ok.exit_code == 0 and ok.output.startswith("bundle OK"), ok.output


def test_beside_opa_the_local_bundle_is_recorded_only_when_opa_runs_its_revision(store: Database, policy_dir: Path,
                                                                                  tmp_path: Path) -> None:
    import shutil

    from tests.support.opa_rest_server import spawn
    from writ.attestations.policy_bundles import PolicyBundles
    from writ.engine.policy.bundle import write_bundle
    from writ.engine.policy.policyset import load_policy_set
    from writ.engine.policy.sidecar import OpaSidecarEngine
    from writ.engine.wiring.policy_record import record_sidecar

    ps = load_policy_set(policy_dir)
    write_bundle(ps, tmp_path / "writ.tar.gz")
    other = tmp_path / "other"  # the local directory changed since OPA loaded its bundle
    shutil.copytree(policy_dir, other, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    tools = other / "writ" / "tools.json"
    tools.write_text(tools.read_text().replace('"git_commit": "write"', '"git_commit": "read"'))
    with spawn(tmp_path / "writ.tar.gz") as server:
        engine = OpaSidecarEngine(server.url)
        assert not record_sidecar(store, engine, policy_dir)  # OPA has not answered yet: its revision is unknown
        engine.decide(step_input("sha256:" + "ab" * 32, 0))
        assert engine.revision == ps.revision
        assert not record_sidecar(store, engine, other)
        assert PolicyBundles(store).revisions() == []
        assert record_sidecar(store, engine, policy_dir)
    assert [r for r, _ in PolicyBundles(store).revisions()] == [ps.revision]
