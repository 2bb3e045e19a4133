"""The committed adversarial corpus of attestation bundles (issue 12): a regression suite for the verifier.

tests/vectors/bundles/corpus/ holds one honest bundle of a completed two-step plan, the trust
root an auditor holds, and one bundle per attack, each made by its named test
(tests/vectors/bundles/make_corpus.py runs them); corpus.json gives each file's attack, the
check that must refuse it and a regex of the message. A verifier change that starts accepting
one of these files, or refuses it for another reason, fails here: nothing is rebuilt at test time.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from writ.attestations.bundle_format import PLAN_PART, split_bundle
from writ.engine.core.errors import BundleError
from writ.engine.core.timeutil import utc_now
from writ.engine.policy.offline import verify_offline
from writ.plans.dsse import Envelope
from writ.plans.models import Plan

VECTORS = Path(__file__).parents[1] / "vectors" / "bundles"
CORPUS = json.loads((VECTORS / "corpus.json").read_text())
ATTACKS: dict[str, dict[str, Any]] = {a["name"]: a for a in CORPUS["attacks"]}
TRUST_ROOT = VECTORS / CORPUS["trust_root"]
HONEST = VECTORS / CORPUS["honest"]["file"]

# issue 12, "Adversarial corpus": each attack of its list, by the name of its file
ISSUE_ATTACKS = [
    "step_added_after_approval",
    "step_arguments_changed",
    "approval_removed_quorum_not_met",
    "approval_by_a_key_revoked_before_it_signed",
    "approval_by_plan_author",
    "bundle_decision_disagrees_with_included_policy",
    "audit_entry_removed_with_proof_recomputed",
    "checkpoint_signed_by_another_key",
    "manifest_digest_mismatch",
    "part_swapped_from_another_plans_bundle",
    "failed_plan_presented_as_completed",
]


def trust_root_of(attack: dict[str, Any]) -> Path:
    return VECTORS / attack.get("trust_root", CORPUS["trust_root"])


def test_honest_bundle_verifies_with_the_committed_trust_root() -> None:
    report = verify_offline(HONEST.read_bytes(), TRUST_ROOT.read_bytes())
    want = CORPUS["honest"]
    assert (report.plan_id, list(report.approvers), report.steps_run, report.state) == (
        want["plan_id"], want["approvers"], want["steps_run"], want["state"])
    assert report.decisions_replayed == 2 and report.summary().startswith(f"bundle OK: plan {want['plan_id']}")


def test_honest_bundle_verifies_long_after_its_plan_expired() -> None:
    # verification reads the bundle's own times (the plan's creation, the claims), never the clock:
    # the plan expired hours after it was made, days before this test ran, and the bundle still verifies
    parts, _ = split_bundle(HONEST.read_bytes())
    plan = Plan.from_payload(Envelope.from_json(parts[PLAN_PART]).payload)
    assert plan.expires_at < utc_now()
    assert verify_offline(HONEST.read_bytes(), TRUST_ROOT.read_bytes()).state == "completed"


def test_honest_bundle_verifies_through_the_writ_verify_bundle_entry_point() -> None:
    script = Path(sys.executable).parent / "writ-verify-bundle"
    run = subprocess.run([str(script), str(HONEST), "--trust", str(TRUST_ROOT)], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"bundle OK: plan {CORPUS['honest']['plan_id']} by plan-bot, approved by alice, "
                                 "bob; 2 step(s) run, state completed"), run.stdout


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_corpus_attack_is_refused_with_its_check(name: str) -> None:
    attack = ATTACKS[name]
    raw, root = (VECTORS / attack["file"]).read_bytes(), trust_root_of(attack).read_bytes()
    with pytest.raises(BundleError, match=attack["match"]) as caught:
        verify_offline(raw, root)
    assert caught.value.check == attack["check"], caught.value.message


def test_corpus_attack_is_refused_by_the_module_in_a_process_of_its_own() -> None:
    attack = ATTACKS["manifest_digest_mismatch"]
    run = subprocess.run([sys.executable, "-m", "writ.engine.policy.offline", str(VECTORS / attack["file"]),
                          "--trust", str(trust_root_of(attack))], capture_output=True, text=True, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.startswith(f"bundle REFUSED: {attack['check']}: "), run.stderr


def test_revoked_key_attack_is_in_the_trust_root_not_the_bundle() -> None:
    # the bundle of this attack is honest; only the auditor's root (bob's key revoked before he signed) refuses it
    attack = ATTACKS["approval_by_a_key_revoked_before_it_signed"]
    assert "trust_root" in attack
    assert verify_offline((VECTORS / attack["file"]).read_bytes(), TRUST_ROOT.read_bytes()).state == "completed"


def test_every_attack_of_the_issue_has_its_file() -> None:
    missing = [n for n in ISSUE_ATTACKS if n not in ATTACKS or not (VECTORS / ATTACKS[n]["file"]).is_file()]
    assert missing == []
    assert sorted(n for n, a in ATTACKS.items() if a["issue"]) == sorted(ISSUE_ATTACKS)


def test_every_listed_mutation_has_its_file_with_the_same_check_and_message() -> None:
    listed = json.loads((VECTORS / "mutations.json").read_text())["mutations"]
    assert [(m["name"], m["check"], m["match"]) for m in listed] == [
        (m["name"], ATTACKS[m["name"]]["check"], ATTACKS[m["name"]]["match"]) for m in listed if m["name"] in ATTACKS]


def test_corpus_directory_holds_exactly_the_listed_files() -> None:
    listed = {CORPUS["trust_root"], CORPUS["honest"]["file"]}
    listed |= {a["file"] for a in ATTACKS.values()} | {a["trust_root"] for a in ATTACKS.values() if "trust_root" in a}
    assert {p.relative_to(VECTORS).as_posix() for p in (VECTORS / "corpus").iterdir()} == listed


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.data())
def test_any_byte_of_any_honest_part_changed_is_refused_by_the_manifest_digests(data: st.DataObject) -> None:
    doc = json.loads(HONEST.read_bytes())
    name = data.draw(st.sampled_from(sorted(doc["parts"])))
    part = bytearray(base64.b64decode(doc["parts"][name]))
    at = data.draw(st.integers(0, len(part) - 1))
    part[at] ^= data.draw(st.integers(1, 255))
    doc["parts"][name] = base64.b64encode(bytes(part)).decode()
    with pytest.raises(BundleError, match=f"part {name} hashes to") as caught:
        verify_offline(json.dumps(doc).encode(), TRUST_ROOT.read_bytes())
    assert caught.value.check == "manifest digests"


@pytest.mark.parametrize("command", [["writ", "attest", "verify"], ["writ-verify-bundle"]])
def test_verify_json_reports_the_honest_bundle_and_names_the_refused_check(command: list[str]) -> None:
    # an auditor's script reads --json: the honest report's fields, and an attack's failed check (exit 1)
    bin_dir = Path(sys.executable).parent
    argv = [str(bin_dir / command[0]), *command[1:]]
    honest = subprocess.run([*argv, str(HONEST), "--trust", str(TRUST_ROOT), "--json"], capture_output=True,
                            text=True, check=False)
    assert honest.returncode == 0, honest.stderr
    report = json.loads(honest.stdout)
    want = CORPUS["honest"]
    assert (report["ok"], report["plan_id"], report["approvers"], report["steps_run"], report["state"]) == (
        True, want["plan_id"], want["approvers"], want["steps_run"], want["state"])
    attack = ATTACKS["approval_by_plan_author"]
    refused = subprocess.run([*argv, str(VECTORS / attack["file"]), "--trust", str(trust_root_of(attack)), "--json"],
                             capture_output=True, text=True, check=False)
    assert refused.returncode == 1, refused.stderr
    answer = json.loads(refused.stdout)
    assert answer["ok"] is False and answer["check"] == attack["check"], answer
    assert re.search(attack["match"], answer["message"]), answer
