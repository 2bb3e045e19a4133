"""Attestation bundles (ADR 0020): one honest bundle of a completed plan verifies offline; each attack is refused.

The bundle is built from a real store (SQLite) by ``build_bundle`` and verified by
``verify_bundle`` with only the exported trust root, as an auditor would. Each mutation is
what an operator with the database or the file could do, named for the attack.
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

from tests.integration.test_plan_store import NOW, World, make_world
from writ.attestations.bundle import build_bundle
from writ.attestations.bundle_format import (
    AUDIT_PART,
    CHECKPOINT_PART,
    EXECUTION_PART,
    MANIFEST_PAYLOAD_TYPE,
    bundle_document,
    manifest_payload,
    split_bundle,
)
from writ.attestations.checkpoints import Checkpointer, default_origin
from writ.attestations.notes import Checkpoint, note_key_id, open_checkpoint, sign_checkpoint
from writ.engine.core.db import Database
from writ.engine.core.errors import BundleError
from writ.engine.policy.embedded import EmbeddedEngine
from writ.plans import dsse
from writ.plans.approval_result import ApprovalRequirement
from writ.plans.canonical import canonical_bytes, digest, parse_strict
from writ.plans.keys import PrivateKey
from writ.plans.lifecycle import PlanState
from writ.plans.statements import sign_approval

REQUIREMENT = ApprovalRequirement(quorum=2, required_groups=("code-owners",), max_ttl_seconds=86400)
Parts = dict[str, bytes]


@pytest.fixture(scope="module")
def engine(policy_dir: Path) -> EmbeddedEngine:
    return EmbeddedEngine(policy_dir)


class Honest:
    """A completed plan, its bundle, the instance key and the trust root an auditor holds."""

    def __init__(self, world: World, instance: PrivateKey) -> None:
        self.world, self.instance = world, instance
        self.checkpointer = Checkpointer(world.store, instance)
        self.plan = world.executing()
        for i in range(2):
            world.claim(self.plan, i)
            world.plans.record_result(self.plan.id, i, "sha256:" + "cd" * 32, "succeeded", now=NOW)
        assert world.plans.finish(self.plan.id, "completed", now=NOW) is PlanState.COMPLETED
        self.raw = self.build()
        root = world.trust.export_trust_root()
        origin = default_origin(instance.public_key)
        root["instance_key"] = {"public_key": instance.public_key.to_base64(), "key_id": instance.public_key.key_id,
                                "checkpoint_origin": origin,
                                "note_key_id": note_key_id(origin, instance.public_key).hex()}
        self.trust_root = json.dumps(root).encode()

    def build(self, plan_id: str | None = None) -> bytes:
        return build_bundle(self.world.plans, self.world.store, self.checkpointer, self.instance,
                            plan_id or self.plan.id, REQUIREMENT)

    def resigned(self, change: Callable[[Parts], None], key: PrivateKey | None = None) -> bytes:
        """The bundle with its parts changed and the manifest re-signed (an attacker holding the instance key)."""
        parts, manifest = split_bundle(self.raw)
        change(parts)
        created = parse_strict(manifest.payload)["created_at"]
        env = dsse.Envelope.create(MANIFEST_PAYLOAD_TYPE, manifest_payload(self.plan.id, created, parts))
        return bundle_document(parts, dsse.sign(env, key or self.instance))


@pytest.fixture
def honest(store: Database, engine: EmbeddedEngine) -> Honest:
    return Honest(make_world(store, engine), PrivateKey.generate())


def refused(honest: Honest, raw: bytes, check: str, match: str) -> None:
    from writ.attestations.verify_bundle import verify_bundle

    with pytest.raises(BundleError, match=match) as caught:
        verify_bundle(raw, honest.trust_root)
    assert caught.value.check == check


def statement_edit(part: str, edit: Callable[[dict[str, Any]], None]) -> Callable[[Parts], None]:
    def change(parts: Parts) -> None:
        doc = parse_strict(parts[part])
        edit(doc["predicate"])
        parts[part] = canonical_bytes(doc)
    return change


def test_honest_bundle_verifies_offline(honest: Honest) -> None:
    from writ.attestations.verify_bundle import verify_bundle

    report = verify_bundle(honest.raw, honest.trust_root)
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
    from writ.attestations.verify_bundle import verify_bundle

    failed = honest.world.executing(now=NOW - timedelta(minutes=7))
    honest.world.claim(failed, 0)
    honest.world.plans.record_result(failed.id, 0, None, "failed", now=NOW)
    assert verify_bundle(honest.build(failed.id), honest.trust_root).state == "failed"


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
    from writ.attestations.verify_bundle import verify_bundle

    held = open_checkpoint(split_bundle(honest.raw)[0][CHECKPOINT_PART].decode(), honest.instance.public_key)
    assert verify_bundle(honest.raw, honest.trust_root, held_note=sign_checkpoint(held, honest.instance)).entries
    other = Checkpoint(held.origin, held.size, bytes(32))  # what the auditor kept, before the operator rewrote
    with pytest.raises(BundleError, match="the log was rewritten: the tree of") as caught:
        verify_bundle(honest.raw, honest.trust_root, held_note=sign_checkpoint(other, honest.instance))
    assert caught.value.check == "held checkpoint"


def test_standalone_verifier_imports_only_attestations_plans_and_core(honest: Honest, tmp_path: Path) -> None:
    import subprocess
    import sys

    bundle, root = tmp_path / "b.json", tmp_path / "root.json"
    bundle.write_bytes(honest.raw)
    root.write_bytes(honest.trust_root)
    code = ("import sys; from writ.attestations.verify_bundle import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in sys.modules if m.startswith('writ.') and not "
            "m.startswith(('writ.attestations', 'writ.plans', 'writ.engine.core')))); sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code, str(bundle), str(root)], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("bundle OK: plan " + honest.plan.id)
    assert run.stdout.splitlines()[-1] == "['writ.engine']", run.stdout  # the package itself: no gateway, no web

    bundle.write_bytes(honest.resigned(statement_edit(AUDIT_PART, lambda p: p["entries"].append({"seq": "x"}))))
    bad = subprocess.run([sys.executable, "-m", "writ.attestations.verify_bundle", str(bundle), str(root)],
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
    from writ.attestations.verify_bundle import verify_bundle

    held = open_checkpoint(split_bundle(honest.raw)[0][CHECKPOINT_PART].decode(), honest.instance.public_key)
    honest.world.pending(now=NOW - timedelta(minutes=8))  # the log grows after the auditor took its copy
    later = honest.build()
    report = verify_bundle(later, honest.trust_root, held_note=sign_checkpoint(held, honest.instance))
    assert report.checkpoint_size > held.size
    rewritten = Checkpoint(held.origin, held.size, bytes(32))  # what the auditor holds is not a prefix of the log
    with pytest.raises(BundleError, match=f"the log was rewritten since the checkpoint of {held.size} entries"):
        verify_bundle(later, honest.trust_root, held_note=sign_checkpoint(rewritten, honest.instance))
    unknown = Checkpoint(held.origin, held.size - 1, bytes(32))  # no stored checkpoint of that size: no proof
    with pytest.raises(BundleError, match="carries no consistency proof between them"):
        verify_bundle(later, honest.trust_root, held_note=sign_checkpoint(unknown, honest.instance))
