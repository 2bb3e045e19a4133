"""Verify an attestation bundle offline: no database, no network, nothing above ``writ.attestations``.

    report = verify_bundle(raw, trust_root_bytes, replayer=RegorusReplayer())
    print(report.summary())          # or BundleError: "approvals: ..." naming the first failed check

    report = verify_offline(raw, trust_root_bytes)       # the same, regorus wired in (writ.engine.policy.offline)
    $ writ-verify-bundle plan.bundle.json --trust trust-root.json                # standalone

Checks, in order: the manifest signed by the instance key of the trust root; every part's
sha256 as the manifest lists it, no part missing or extra; the trust subset the bundle carries,
each key in the auditor's root for the same principal and role (revocations in either apply;
the keys below are the subset's, so verified); every included policy bundle hashing to the
revision its name says; the plan signed by a planner key of its own planner valid when it was
made; the approval requirement RE-EVALUATED by the included policy of the recorded revision
(the recorded requirement is only compared, a difference reported); the approvals meeting it;
every executed step one of the plan's steps, with the approved arguments, each attempt once
and a retry only after a failure the included policy let retry (attestations/bundle_attempts.py),
a constrained step's arguments taken from the decision that allowed its call and matched against
the plan's constraints, every policy revision the one the auditor gave (``policy_revision``), by the
executor that began the plan (never the planner), claimed before the plan expired, every logged
claim on the approved tool (attestations/bundle_steps.py), and only approvals logged and signed
before the first claim counted; the
checkpoint signed by the instance key; every audit entry intact, about this plan and included
in the checkpoint's tree; an audit entry for every submission, approval, claim, result and end
the other parts state; a plan presented as completed had every step succeed; every decision
about the plan's calls listed as logged, and each policy decision given again by its
revision's included policy (allow and reason codes), those the gateway gave alone excepted.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from writ.attestations.bundle_attempts import check_attempts, check_constrained_calls, check_retries
from writ.attestations.bundle_format import (
    AUDIT_PART,
    CHECKPOINT_PART,
    DECISIONS_PART,
    EXECUTION_PART,
    MANIFEST_PAYLOAD_TYPE,
    MANIFEST_TYPE,
    PLAN_PART,
    REQUIREMENT_PART,
    TRUST_PART,
    entry_plan_id,
    split_bundle,
    statement_predicate,
)
from writ.attestations.bundle_steps import approvals_in_time, check_claims, check_executors, claim_time
from writ.attestations.chain import compute_entry_hash
from writ.attestations.held import held_against
from writ.attestations.merkle import verify_inclusion
from writ.attestations.notes import Checkpoint, open_checkpoint
from writ.attestations.replay import (
    PolicyReplayer,
    effective_trust,
    load_policies,
    replay_decisions,
    replay_requirement,
    requirement_policy,
)
from writ.attestations.tree import entry_leaf
from writ.engine.core.errors import BundleError, WritError
from writ.engine.core.timeutil import db_time
from writ.plans import dsse
from writ.plans.canonical import digest, parse_strict, sha256_digest
from writ.plans.keys import PublicKey
from writ.plans.models import Plan, PlanLimits
from writ.plans.trust import TrustSet
from writ.plans.trust_store import load_trust_root
from writ.plans.verify import require_approved, verify_plan_envelope

__all__ = ["BundleReport", "PolicyReplayer", "verify_bundle"]


@dataclass(frozen=True)
class BundleReport:
    """What a bundle proved: the plan, its approvers, the steps run and the entries in the checkpoint."""

    plan_id: str
    planner: str
    approvers: tuple[str, ...]
    steps_run: int
    state: str
    entries: int
    checkpoint_size: int
    decisions_replayed: int = 0
    policy_revisions: tuple[str, ...] = ()
    requirement_note: str | None = None  # the recorded requirement differed from the re-evaluated one
    retries: int = 0  # attempts after a step's first, each after a failure the included policy let retry
    policy_checked: bool = False  # every revision was the policy the auditor gave (--policy)

    def as_json(self) -> dict[str, Any]:
        """The report for a program (``--json``): ``ok`` true and every field above."""
        return {"ok": True, "plan_id": self.plan_id, "planner": self.planner, "approvers": list(self.approvers),
                "steps_run": self.steps_run, "retries": self.retries, "state": self.state, "entries": self.entries,
                "checkpoint_size": self.checkpoint_size, "decisions_replayed": self.decisions_replayed,
                "policy_revisions": list(self.policy_revisions), "policy_checked": self.policy_checked,
                "requirement_note": self.requirement_note}

    def summary(self) -> str:
        note = f"\nnote: {self.requirement_note}" if self.requirement_note else ""
        retried = f" ({self.retries} retried attempt(s))" if self.retries else ""
        given = ", the policy you gave" if self.policy_checked else ""
        return (f"bundle OK: plan {self.plan_id} by {self.planner}, approved by {', '.join(self.approvers)}; "
                f"{self.steps_run} step(s) run{retried}, state {self.state}; {self.entries} audit entries included "
                f"in the signed checkpoint of {self.checkpoint_size} entries; requirement and "
                f"{self.decisions_replayed} decision(s) re-evaluated under {len(self.policy_revisions)} included "
                f"policy revision(s){given}: {', '.join(self.policy_revisions)}{note}")


def _instance_key(trust_root: bytes) -> tuple[TrustSet, PublicKey, str]:
    trust = load_trust_root(trust_root)
    doc = parse_strict(trust_root)
    inst = doc.get("instance_key") if isinstance(doc, dict) else None
    if not isinstance(inst, dict) or not isinstance(inst.get("public_key"), str):
        raise BundleError("trust root", "it holds no instance_key: export it again with `writ trust export`")
    return trust, PublicKey.from_base64(inst["public_key"]), str(inst.get("checkpoint_origin", ""))


def _manifest(parts: dict[str, bytes], env: dsse.Envelope, key: PublicKey) -> dict[str, Any]:
    try:
        dsse.verify(env, {key.key_id: key}, 1, payload_type=MANIFEST_PAYLOAD_TYPE)
    except WritError as e:
        raise BundleError("manifest signature", f"not signed by this Writ instance's key: {e.message}") from None
    manifest = parse_strict(env.payload)
    if not isinstance(manifest, dict) or manifest.get("_type") != MANIFEST_TYPE:
        raise BundleError("manifest", f"expected _type {MANIFEST_TYPE!r}")
    listed = manifest.get("parts")
    if not isinstance(listed, dict) or set(listed) != set(parts):
        extra, missing = set(parts) - set(listed or {}), set(listed or {}) - set(parts)
        raise BundleError("manifest digests", f"parts not listed: {sorted(extra)}, listed but absent: {sorted(missing)}")
    for name, data in sorted(parts.items()):
        if sha256_digest(data) != listed[name]:
            raise BundleError("manifest digests", f"part {name} hashes to {sha256_digest(data)}, "
                              f"the manifest says {listed[name]}")
    return manifest


def _plan(parts: dict[str, bytes], trust: TrustSet, plan_id: str, limits: PlanLimits) -> Plan:
    try:
        env = dsse.Envelope.from_json(parts[PLAN_PART], max_bytes=limits.max_envelope_bytes)
        unverified = Plan.from_payload(env.payload, limits)
        plan = verify_plan_envelope(parts[PLAN_PART], trust, now=unverified.created_at, limits=limits)
    except WritError as e:
        raise BundleError("plan signature", e.message) from None
    if plan.id != plan_id:
        raise BundleError("plan signature", f"the signed plan is {plan.id}, the manifest is about {plan_id}")
    return plan


def _steps(plan: Plan, execution: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    steps = execution.get("steps")
    if not isinstance(steps, list):
        raise BundleError("executed steps", "the execution record has no list of steps")
    attempts = check_attempts(plan, steps)
    for s in steps:
        i = s["step_index"]
        approved = plan.steps[i].args
        if not plan.steps[i].constraints and s.get("args_digest") != digest(approved):
            raise BundleError("executed steps", f"step {i} ran with arguments {s.get('args_digest')}, "
                              f"the approved arguments are {digest(approved)}")
    return steps, attempts


Index = dict[tuple[str, Any], list[dict[str, Any]]]


def _logged(index: Index, kind: str, **fields: Any) -> bool:
    candidates = index.get((kind, fields.get("step_index")), [])
    return any(all(p.get(k) == v for k, v in fields.items()) for p in candidates)


def _audit_matches(entries: list[dict[str, Any]], plan: Plan, execution: dict[str, Any],
                   approvers: tuple[str, ...]) -> None:
    """Every fact the other parts state has its entry in the log: an entry removed from the log shows here."""
    wanted: list[tuple[str, str, dict[str, Any]]] = [("the plan's submission", "plan_event", {"event": "submit"})]
    wanted += [(f"{who}'s approval", "approval", {"approver": who, "decision": "approve"}) for who in approvers]
    for s in execution["steps"]:
        i = s["step_index"]
        k = s["attempt"]  # a claim entry names its attempt from the second on
        wanted.append((f"step {i}'s claim" + (f" (attempt {k})" if k > 1 else ""), "step_claim",
                       {"step_index": i, "args_digest": s["args_digest"], "claimed": True, "executor": s["executor"],
                        "at": db_time(claim_time(s)), "attempt": k if k > 1 else None}))
        if s.get("outcome") is not None:
            wanted.append((f"step {i}'s result", "step_result", {"step_index": i, "outcome": s["outcome"]}))
    state = execution.get("state")
    if state in ("completed", "failed", "aborted"):
        wanted.append((f"the plan's end ({state})", "plan_event", {"to": state}))
    index: Index = {}
    for e in entries:  # by kind, and by kind and step: one look-up per fact, linear in the plan's size
        index.setdefault((e["kind"], None), []).append(e["payload"])
        if (step := e["payload"].get("step_index")) is not None:
            index.setdefault((e["kind"], step), []).append(e["payload"])
    for what, kind, fields in wanted:
        if not _logged(index, kind, **fields):
            raise BundleError("audit completeness", f"{what} has no entry in the audit log")
    if state == "completed":
        ran = {s["step_index"] for s in execution["steps"] if s.get("outcome") == "succeeded"}
        if ran != set(range(len(plan.steps))):
            raise BundleError("plan outcome", f"the plan is presented as completed but only steps {sorted(ran)} "
                              f"of {len(plan.steps)} succeeded")


def _entries(audit: dict[str, Any], plan_id: str, checkpoint: Checkpoint) -> int:
    if audit.get("tree_size") != checkpoint.size:
        raise BundleError("audit inclusion", f"proofs are for a tree of {audit.get('tree_size')} entries, "
                          f"the checkpoint signs {checkpoint.size}")
    entries = audit.get("entries") or []
    for e in entries:
        seq = e["seq"]
        if entry_plan_id(e["payload"]) != plan_id:
            raise BundleError("audit inclusion", f"audit entry {seq} is about another plan")
        got = compute_entry_hash(seq, e["created_at"], e["kind"], e["payload"], e["prev_hash"])
        if got != e["entry_hash"]:
            raise BundleError("audit inclusion", f"audit entry {seq} was changed: it hashes to {got}")
        try:
            proof = [base64.b64decode(h, validate=True) for h in e["proof"]]
            verify_inclusion(seq - 1, checkpoint.size, entry_leaf(got), proof, checkpoint.root)
        except (WritError, binascii.Error, ValueError) as err:
            raise BundleError("audit inclusion", f"audit entry {seq} is not in the signed checkpoint: {err}") from None
    return len(entries)


def _checkpoint(note: str, instance: PublicKey, origin: str, what: str) -> Checkpoint:
    try:
        return open_checkpoint(note, instance, origin=origin or None)
    except WritError as e:
        raise BundleError("checkpoint signature", f"{what} is not signed by this Writ instance's key: "
                          f"{e.message}") from None


def verify_bundle(raw: bytes, trust_root: bytes, *, replayer: PolicyReplayer, held_note: str | None = None,
                  held_proof: bytes | None = None, limits: PlanLimits | None = None,
                  policy_revision: str | None = None) -> BundleReport:
    """Every check of the module docstring; ``BundleError`` naming the first that fails.

    ``replayer``: evaluates the included policy bundles (``writ.engine.policy.offline.RegorusReplayer``).
    ``held_note``: a checkpoint the auditor kept apart: of the bundle's tree, or of an older one the
    bundle carries a consistency proof from (the instance's stored checkpoints, the latest 64), or of
    a LATER tree with ``held_proof``, the proof ``writ audit consistency`` wrote from the bundle's to it.
    ``limits``: the plan bounds the instance used (``WRIT_LIMITS__PLAN__*``) when they are not the defaults.
    ``policy_revision``: the revision of the policy the auditor holds (``--policy``); every policy the bundle
    re-runs must be it. Without it the report lists the revisions, for the auditor to compare.
    """
    try:
        return _verify(raw, trust_root, replayer, (held_note, held_proof), limits or PlanLimits(), policy_revision)
    except BundleError:
        raise
    except WritError as e:  # e.g. a part that is not strict JSON: parse_strict's InputError
        raise BundleError("bundle format", f"a part is not readable: {e.message}") from None
    except (KeyError, TypeError, AttributeError, ValueError, UnicodeDecodeError, OverflowError, RecursionError) as e:
        # a part of the wrong shape (signed by the instance key, so made by whoever holds it)
        raise BundleError("bundle format", f"a part does not have the expected shape: {type(e).__name__} "
                          f"{str(e)[:200]}") from None


def _expected_policy(policies: dict[str, Any], expected: str | None) -> None:
    """With the auditor's policy (``--policy``): every revision the bundle re-runs must be that one."""
    if expected is None:
        return
    for revision in sorted(policies):
        if revision != expected:
            raise BundleError("policy revision", f"policy revision {revision} is not the policy you gave ({expected})")


def _verify(raw: bytes, trust_root: bytes, replayer: PolicyReplayer, held: tuple[str | None, bytes | None],
            limits: PlanLimits, expected_policy: str | None) -> BundleReport:
    auditor, instance, origin = _instance_key(trust_root)
    parts, envelope = split_bundle(raw)
    manifest = _manifest(parts, envelope, instance)
    plan_id = str(manifest.get("plan_id"))
    for needed in (PLAN_PART, REQUIREMENT_PART, EXECUTION_PART, AUDIT_PART, CHECKPOINT_PART, DECISIONS_PART,
                   TRUST_PART):
        if needed not in parts:
            raise BundleError("manifest", f"the bundle has no {needed}")
    trust = effective_trust(parts, plan_id, auditor, instance)
    policies = load_policies(parts, replayer)
    _expected_policy(policies, expected_policy)
    plan = _plan(parts, trust, plan_id, limits)
    requirement, note = replay_requirement(parts, plan_id, policies, plan)
    execution = statement_predicate(parts, EXECUTION_PART, plan_id)
    steps, attempts = _steps(plan, execution)
    revision, policy = requirement_policy(parts, plan_id, policies)
    check_retries(plan, attempts, policy, revision)
    check_executors(plan, execution, trust)
    audit = statement_predicate(parts, AUDIT_PART, plan_id)
    check_claims(plan, audit["entries"], execution)
    first = min(steps, key=claim_time, default=None)
    began = claim_time(first) if first else None
    approvals, late = approvals_in_time([data for name, data in sorted(parts.items()) if name.startswith("approvals/")],
                                        audit["entries"], began, first and first["step_index"])
    try:
        result = require_approved(plan, approvals, trust, now=began or plan.created_at, requirement=requirement,
                                  limits=limits)
    except WritError as e:
        raise BundleError("approvals", e.message + "".join(f"; not counted: {why}" for why in late)) from None
    checkpoint = _checkpoint(parts[CHECKPOINT_PART].decode(), instance, origin, "the bundle's checkpoint")
    if held[0] is not None:
        held_against(checkpoint, _checkpoint(held[0], instance, origin, "the checkpoint you hold"), audit, held[1])
    entries = _entries(audit, plan_id, checkpoint)
    approvers = tuple(a.principal for a in result.approvals)
    _audit_matches(audit["entries"], plan, execution, approvers)
    check_constrained_calls(plan, audit["entries"], steps, limits)
    replayed = replay_decisions(parts, plan_id, audit["entries"], policies)
    return BundleReport(plan.id, plan.planner, approvers, len(attempts), str(execution.get("state")), entries,
                        checkpoint.size, replayed, tuple(sorted(policies)), note, len(steps) - len(attempts),
                        expected_policy is not None)
