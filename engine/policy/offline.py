"""Verify an attestation bundle offline with its own policy: the auditor's entry point (ADR 0022).

    report = verify_offline(Path("plan.bundle.json").read_bytes(), Path("trust-root.json").read_bytes())
    print(report.summary())          # or BundleError naming the first failed check

    $ writ-verify-bundle plan.bundle.json --trust trust-root.json [--checkpoint held.note [--proof proof.json]] \\
          [--policy policies/ | --policy policy.tar.gz]     # every revision used must be your policy's
    $ python -m writ.engine.policy.offline plan.bundle.json --trust trust-root.json

``writ.attestations.verify_bundle`` does every check; this module gives it ``RegorusReplayer``,
which loads each policy bundle the attestation bundle carries, recomputes its revision from its
files, compiles it once (cached per revision, for the process) and evaluates it as the embedded
engine does: the approval requirement, and each decision through ``PolicyEngine.decide``, so a
replayed decision fails closed exactly as a live one. Nothing here imports the gateway, the web
app, the CLI, the workflows or a database driver (a test runs it in a fresh process and checks).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

from writ.attestations.verify_bundle import BundleReport, verify_bundle
from writ.engine.core.errors import InputError, PolicyEvaluationError, WritError
from writ.engine.core.settings import Limits
from writ.engine.policy.base import PolicyEngine
from writ.engine.policy.bundle import bundle_members
from writ.engine.policy.compiled import CompiledPolicy, ThreadVm, compile_policy_set
from writ.engine.policy.embedded import build_regorus, query_value
from writ.engine.policy.policyset import PolicySet, load_policy_set, regorus_error_text, set_revision
from writ.plans.models import PlanLimits

__all__ = ["BundleEngine", "RegorusReplayer", "main", "policy_revision_of", "policy_set_of", "verify_offline"]

MAX_CACHED = 32  # policy revisions kept compiled in one process


def policy_set_of(raw: bytes) -> PolicySet:
    """The policy set an OPA bundle holds, its revision recomputed from the files; ``InputError`` if it is not one."""
    files = bundle_members(raw)
    try:
        manifest = json.loads(files[".manifest"])
        data = json.loads(files.get("data.json", b"{}"))
        modules = {name: text.decode() for name, text in files.items() if name.endswith(".rego")}
    except (KeyError, ValueError) as e:
        raise InputError(f"policy bundle: no readable .manifest, data.json or modules ({type(e).__name__})") from None
    if not isinstance(data, dict) or not modules:
        raise InputError("policy bundle: it holds no modules, or its data.json is not an object")
    revision = set_revision(modules, data)
    if not isinstance(manifest, dict) or manifest.get("revision") != revision:
        claimed = manifest.get("revision") if isinstance(manifest, dict) else None
        raise InputError(f"policy bundle: its manifest says revision {claimed}, its files are {revision}")
    return PolicySet(root=Path("<bundle>"), modules=modules, data=data, revision=revision)


class BundleEngine(PolicyEngine):
    """The embedded engine's evaluation of one policy set taken from a bundle: compiled first, then interpreted.

        engine = BundleEngine(policy_set_of(raw))
        engine.decide(recorded_input).allow, engine.evaluate("writ.approval.requirement", doc)
    """

    name = "embedded"

    def __init__(self, ps: PolicySet, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self.policy_set = ps
        self.compiled: CompiledPolicy = compile_policy_set(ps)
        self._local = threading.local()  # regorus objects belong to the thread that made them

    @property
    def revision(self) -> str:
        return self.policy_set.revision

    def _evaluate(self, path: str, input_json: str) -> Any:
        if path in self.compiled.compiled:
            try:
                vm = getattr(self._local, "vm", None) or ThreadVm(self.compiled, self.policy_set)
                self._local.vm = vm
                text = vm.run(path, input_json)
                if text is not None:
                    return json.loads(text)
            except BaseException as e:
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                self._local.vm = None  # the interpreter answers, as in the embedded engine
        try:
            engine = getattr(self._local, "engine", None) or build_regorus(self.policy_set)
            self._local.engine = engine
            engine.set_input_json(input_json)
            return query_value(engine, path)
        except PolicyEvaluationError:
            raise
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self._local.engine = None
            raise PolicyEvaluationError(f"embedded engine failed: {regorus_error_text(e)}") from None

    def decide_codes(self, input_doc: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
        """(allow, reason codes) of ``decide``: what the verifier compares with the recorded decision."""
        decision = self.decide(input_doc)
        return decision.allow, tuple(decision.reason_codes)


class _Replayed:
    """``ReplayedPolicy`` over a ``BundleEngine``."""

    def __init__(self, engine: BundleEngine) -> None:
        self._engine = engine

    @property
    def revision(self) -> str:
        return self._engine.revision

    def evaluate(self, path: str, input_doc: dict[str, Any] | None = None) -> Any:
        return self._engine.evaluate(path, input_doc)

    def decide(self, input_doc: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
        return self._engine.decide_codes(input_doc)


class RegorusReplayer:
    """``PolicyReplayer`` with regorus: each bundle's policy compiled once per process (by the bundle's sha256).

        verify_bundle(raw, root, replayer=RegorusReplayer())
    """

    _cache: dict[str, BundleEngine] = {}
    _lock = threading.Lock()

    def load(self, bundle: bytes) -> _Replayed:
        key = hashlib.sha256(bundle).hexdigest()
        with self._lock:
            engine = self._cache.get(key)
        if engine is None:
            engine = BundleEngine(policy_set_of(bundle))
            with self._lock:
                if len(self._cache) >= MAX_CACHED:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = engine
        return _Replayed(engine)


def policy_revision_of(path: Path) -> str:
    """The revision of the auditor's policy: a policy directory (as the engine loads it) or an OPA bundle file.

    Computed as the engine computes its own (``set_revision`` of the modules and data, tests left
    out); ``WritError`` (``PolicyLoadError``, ``InputError``) if it is neither.
    """
    if path.is_dir():
        return load_policy_set(path).revision
    raw = path.read_bytes()
    return policy_set_of(raw).revision


def verify_offline(raw: bytes, trust_root: bytes, *, held_note: str | None = None,
                   limits: PlanLimits | None = None, held_proof: bytes | None = None,
                   policy_revision: str | None = None) -> BundleReport:
    """``verify_bundle`` with the included policies re-evaluated by regorus; ``BundleError`` naming the first failure.

    ``held_note``: a checkpoint kept apart; ``held_proof``: when it is later than the bundle's, the
    consistency proof to it (``writ audit consistency``). ``policy_revision``: the auditor's policy
    (``policy_revision_of``); every revision the bundle uses must be it.
    """
    return verify_bundle(raw, trust_root, replayer=RegorusReplayer(), held_note=held_note, held_proof=held_proof,
                         limits=limits, policy_revision=policy_revision)


def main(argv: list[str] | None = None) -> int:
    """``writ-verify-bundle BUNDLE --trust ROOT [--checkpoint NOTE [--proof FILE]] [--policy DIR_OR_BUNDLE]``.

    Exit 0 verified, 1 refused, 2 unreadable (a file, or a --policy that is no policy).
    """
    parser = argparse.ArgumentParser(
        prog="writ-verify-bundle", description="Verify a Writ attestation bundle offline, re-running its policy.",
        epilog="example: writ-verify-bundle plan.bundle.json --trust trust-root.json")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--trust", type=Path, required=True, help="the trust root (`writ trust export`)")
    parser.add_argument("--checkpoint", type=Path, help="a signed checkpoint you kept apart")
    parser.add_argument("--proof", type=Path, help="for a later --checkpoint: `writ audit consistency`'s proof to it")
    parser.add_argument("--policy", type=Path, help="your policy (a policy directory or an OPA bundle file): every "
                        "policy revision the bundle uses must be its revision")
    parser.add_argument("--json", action="store_true", help="print the report, or the refusal, as one JSON object "
                        "on stdout: {ok: true, plan_id, ...} or {ok: false, check, code, message}")
    args = parser.parse_args(argv)
    try:
        held = args.checkpoint.read_text(errors="replace") if args.checkpoint else None
        proof = args.proof.read_bytes() if args.proof else None
        revision = policy_revision_of(args.policy) if args.policy else None
        bundle, trust = args.bundle.read_bytes(), args.trust.read_bytes()
    except OSError as e:
        print(f"error: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except WritError as e:  # only --policy's reading raises one here
        print(f"error: --policy {args.policy}: {e.message}", file=sys.stderr)
        return 2
    try:
        report = verify_offline(bundle, trust, held_note=held, held_proof=proof, policy_revision=revision)
    except WritError as e:  # a BundleError names the failed check
        if args.json:
            print(json.dumps({"ok": False, "check": None, **e.as_json()}, sort_keys=True))
        else:
            print(f"bundle REFUSED: {e.message}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_json(), sort_keys=True) if args.json else report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
