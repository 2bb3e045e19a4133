"""Write the adversarial corpus of attestation bundles (issue 12): one honest bundle, one file per attack.

    $ .venv/bin/python tests/vectors/bundles/make_corpus.py      # from the repository root; rewrites corpus/

Each attack is made by RUNNING its named test (tests/integration/test_attest_bundle.py or
test_attest_bundle_attacks.py) on a fresh honest bundle, with the test module's ``refused``
wrapped: the test still asserts its own refusal, and the bundle (and trust root) it handed the
verifier is written to ``corpus/<attack>.bundle.json``, with the check and message regex the test
expects in ``corpus.json``. The mutation is therefore exactly the named test's: an operator's
edits re-signed with the instance key where the test assumes the operator holds it.

Every bundle comes from its own SQLite database (an attack may change the log before export) but
with the same principals' keys and instance key, generated once per run: one trust root,
``corpus/trust-root.json``, verifies them all. An attack that changes the auditor's trust root
instead (a key revoked before it signed) gets ``corpus/<attack>.trust-root.json``. Re-running
rewrites every file with new keys and times under the same names; nothing secret is written.
tests/integration/test_attest_bundle_corpus.py checks the committed files against the verifier.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CORPUS = HERE / "corpus"
INDEX = HERE / "corpus.json"

# The attacks of issue 12's list ("Adversarial corpus"), by the name of the test that makes each.
ISSUE_ATTACKS: dict[str, str] = {
    "step_added_after_approval": "a step the approved plan does not have is added to the execution record",
    "step_arguments_changed": "a step's executed arguments are changed in the execution record",
    "approval_removed_quorum_not_met": "one of the two approvals is dropped from the bundle (quorum not met)",
    "approval_by_a_key_revoked_before_it_signed": "the auditor's trust root revokes bob's key a minute before "
    "bob's approval was signed; the bundle is unchanged",
    "approval_by_plan_author": "the second approval is replaced by one the plan's author signed with its own key",
    "bundle_decision_disagrees_with_included_policy": "the log records an allow for a call the included policy "
    "denies; every signature and proof is genuine",
    "audit_entry_removed_with_proof_recomputed": "step 1's result entry is dropped from the audit part; the "
    "remaining entries' proofs still verify",
    "checkpoint_signed_by_another_key": "the checkpoint (same origin, size and root) is signed by another key",
    "manifest_digest_mismatch": "the execution part is replaced after the manifest was signed (not re-signed)",
    "part_swapped_from_another_plans_bundle": "the execution part is taken from another plan's bundle",
    "failed_plan_presented_as_completed": "a plan whose step failed is presented as completed, its step as "
    "succeeded",
}

# A few more named attacks, each refused by a check (or a branch of one) the lists above do not reach.
MORE_ATTACKS: dict[str, str] = {
    "audit_entry_edited": "an audit entry's payload is edited (the planner's name)",
    "manifest_signed_by_another_key": "the manifest is re-signed by a key that is not the instance's",
    "step_run_by_the_planner": "the store and the log say the planner ran the steps",
    "step_claimed_before_the_approvals_were_signed": "the store and the log say both steps were claimed half an "
    "hour before the approvals were signed",
}


@dataclass(frozen=True)
class Refusal:
    """What a named test handed the verifier, and what it expects the verifier to say."""

    raw: bytes
    trust_root: bytes
    check: str
    match: str


@contextmanager
def recording(modules: list[ModuleType]) -> Iterator[list[Refusal]]:
    """Each module's ``refused`` still asserts the refusal, and records it."""
    seen: list[Refusal] = []
    originals = {m: m.refused for m in modules}

    def wrap(original: Callable[..., None]) -> Callable[..., None]:
        def record(honest: Any, raw: bytes, check: str, match: str) -> None:
            original(honest, raw, check, match)
            seen.append(Refusal(raw, honest.trust_root, check, match))
        return record

    for module, original in originals.items():
        module.refused = wrap(original)  # type: ignore[attr-defined]
    try:
        yield seen
    finally:
        for module, original in originals.items():
            module.refused = original  # type: ignore[attr-defined]


class Worlds:
    """Fresh honest bundles, each in its own SQLite database, all with the same keys and policy."""

    def __init__(self, stack: ExitStack, tmp: Path) -> None:
        from tests.integration.test_plan_store import PRINCIPALS
        from writ.engine.core.settings import shipped_policy_dir
        from writ.engine.policy.embedded import EmbeddedEngine
        from writ.plans.keys import PrivateKey

        self.stack, self.tmp, self.count = stack, tmp, 0
        self.policy_dir = shipped_policy_dir()
        self.engine = EmbeddedEngine(self.policy_dir)
        self.keys = {name: PrivateKey.generate() for name, _ in PRINCIPALS}
        self.instance = PrivateKey.generate()

    def fresh(self) -> Path:
        self.count += 1
        path = self.tmp / f"world-{self.count}"
        path.mkdir()
        return path

    def honest(self) -> Any:
        from tests.support.bundles import Honest, keyed_world
        from writ.engine.core.db import open_database
        from writ.engine.core.settings import Settings

        store = self.stack.enter_context(open_database(Settings(home=self.fresh() / "home")))
        return Honest(keyed_world(store, self.engine, self.keys), self.instance, self.engine)


def trust_of(root: bytes) -> Any:
    """The part of a trust root verification reads (not when it was exported)."""
    doc = json.loads(root)
    return doc["trust"], doc["instance_key"]


def run_attack(name: str, worlds: Worlds, modules: list[ModuleType]) -> tuple[Refusal, bytes]:
    """Run ``test_<name>`` on a fresh honest bundle; its one refusal and the trust root of the world it began in."""
    test = next(getattr(m, f"test_{name}") for m in modules if hasattr(m, f"test_{name}"))
    honest = worlds.honest()
    root = honest.trust_root
    given = {"honest": honest, "policy_dir": worlds.policy_dir, "tmp_path": worlds.fresh()}
    with recording(modules) as seen:
        test(**{p: given[p] for p in inspect.signature(test).parameters})
    if len(seen) != 1:
        raise SystemExit(f"test_{name} asked the verifier to refuse {len(seen)} bundles, expected 1")
    return seen[0], root


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data if data.endswith(b"\n") else data + b"\n")
    return path.relative_to(HERE).as_posix()


def make(worlds: Worlds) -> dict[str, Any]:
    """Write corpus/ and return corpus.json's document."""
    from tests.integration import test_attest_bundle, test_attest_bundle_attacks
    from writ.engine.policy.offline import verify_offline

    modules = [test_attest_bundle, test_attest_bundle_attacks]
    CORPUS.mkdir(exist_ok=True)
    for old in CORPUS.glob("*.json"):
        old.unlink()
    honest = worlds.honest()
    report = verify_offline(honest.raw, honest.trust_root)
    listed = json.loads((HERE / "mutations.json").read_text())["mutations"]
    words = {**ISSUE_ATTACKS, **{m["name"]: m["attack"] for m in listed}, **MORE_ATTACKS}
    attacks = []
    for name, attack in words.items():
        refusal, start = run_attack(name, worlds, modules)
        if trust_of(start) != trust_of(honest.trust_root):
            raise SystemExit(f"test_{name}'s world has another trust set: the corpus needs one trust root")
        entry = {"name": name, "attack": attack, "issue": name in ISSUE_ATTACKS,
                 "test": next(f"tests/integration/{m.__name__.rsplit('.', 1)[-1]}.py::test_{name}"
                              for m in modules if hasattr(m, f"test_{name}")),
                 "file": write(CORPUS / f"{name}.bundle.json", refusal.raw)}
        if trust_of(refusal.trust_root) != trust_of(honest.trust_root):
            entry["trust_root"] = write(CORPUS / f"{name}.trust-root.json", refusal.trust_root)
        attacks.append({**entry, "check": refusal.check, "match": refusal.match})
        print(f"{name}: refused by {refusal.check}", file=sys.stderr)
    return {
        "description": "The adversarial corpus of attestation bundles (issue 12), written by make_corpus.py from "
                       "the named tests: the honest bundle verifies under trust_root; each attack's bundle is "
                       "refused by `writ-verify-bundle` (verify_offline) with this check and a message matching "
                       "this regular expression, under its own trust_root if it names one.",
        "trust_root": write(CORPUS / "trust-root.json", honest.trust_root),
        "honest": {"file": write(CORPUS / "honest.bundle.json", honest.raw), "plan_id": report.plan_id,
                   "approvers": list(report.approvers), "steps_run": report.steps_run, "state": report.state},
        "attacks": attacks,
    }


def main() -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # as pytest's rootdir and pythonpath = ["tests"] do
    for name in [n for n in os.environ if n.startswith("WRIT_")]:
        del os.environ[name]  # the developer's settings are not the corpus's
    with tempfile.TemporaryDirectory(prefix="writ-corpus-") as tmp, ExitStack() as stack:
        os.environ["WRIT_HOME"] = str(Path(tmp) / "writ-home")
        doc = make(Worlds(stack, Path(tmp)))
    INDEX.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {len(doc['attacks'])} attacks, the honest bundle and the trust root to {CORPUS}", file=sys.stderr)


if __name__ == "__main__":
    main()
