"""What the offline verifier re-checks with the bundle's own policy and the auditor's trust root (ADR 0022).

    policies = load_policies(parts, replayer)                 # revision -> ReplayedPolicy, each checked
    trust = effective_trust(parts, plan_id, auditor, instance) # the bundle's keys, as the auditor's root allows
    required, note = replay_requirement(parts, plan_id, policies, plan)
    replay_decisions(parts, plan_id, entries, policies)       # every policy decision given again

The evaluator comes from above (``writ.engine.policy.offline`` wires regorus in): this layer
imports no policy engine, only the small ``PolicyReplayer`` protocol it calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from writ.attestations.bundle_format import (
    DECISIONS_PART,
    POLICY_PREFIX,
    REQUIREMENT_PART,
    TRUST_PART,
    policy_part,
    statement_predicate,
)
from writ.attestations.bundle_parts import decided_by, decision_record
from writ.engine.core.errors import BundleError, WritError
from writ.plans.approval_result import ApprovalRequirement
from writ.plans.assessment import requirement_for
from writ.plans.canonical import canonical_bytes
from writ.plans.keys import PublicKey, short_key_id
from writ.plans.models import Plan
from writ.plans.trust import TrustedKey, TrustSet
from writ.plans.trust_store import load_trust_root

__all__ = ["PolicyReplayer", "ReplayedPolicy", "effective_trust", "load_policies", "replay_decisions",
           "replay_requirement", "requirement_policy"]


class ReplayedPolicy(Protocol):
    """One policy revision loaded from its OPA bundle, ready to evaluate offline."""

    @property
    def revision(self) -> str:
        """The revision its files hash to (never what its manifest merely claims)."""

    def evaluate(self, path: str, input_doc: dict[str, Any] | None = None) -> Any:
        """The value of ``data.<path>`` for the input; ``WritError`` if it cannot say."""

    def decide(self, input_doc: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
        """(allow, reason codes) exactly as the gateway's engine decides this input."""


class PolicyReplayer(Protocol):
    """Loads policy bundles: ``writ.engine.policy.offline.RegorusReplayer`` (regorus, compiled once per revision)."""

    def load(self, bundle: bytes) -> ReplayedPolicy:
        """The policy of an OPA bundle (``.tar.gz``); ``WritError`` if it is not one."""


def load_policies(parts: Mapping[str, bytes], replayer: PolicyReplayer) -> dict[str, ReplayedPolicy]:
    """Every ``policy/*.tar.gz`` part, loaded; a part whose files are another revision than its name is refused."""
    out: dict[str, ReplayedPolicy] = {}
    for name, data in sorted(parts.items()):
        if not name.startswith(POLICY_PREFIX):
            continue
        try:
            policy = replayer.load(data)
        except WritError as e:
            raise BundleError("policy bundle", f"part {name} is not a policy bundle: {e.message}") from None
        if policy_part(policy.revision) != name:
            raise BundleError("policy bundle", f"part {name} holds the policy of revision {policy.revision}, "
                              "not the revision its name says: a bundle swapped for another revision")
        out[policy.revision] = policy
    return out


def _policy(policies: Mapping[str, ReplayedPolicy], revision: Any, what: str) -> ReplayedPolicy:
    if not isinstance(revision, str) or revision not in policies:
        raise BundleError("policy bundle", f"{what} was decided by policy revision {revision}, "
                          "and the bundle carries no policy bundle of it")
    return policies[revision]


def requirement_policy(parts: Mapping[str, bytes], plan_id: str, policies: Mapping[str, ReplayedPolicy]
                       ) -> tuple[str, ReplayedPolicy]:
    """The revision that gave the approval requirement and its included policy (it also answers retries)."""
    revision = statement_predicate(parts, REQUIREMENT_PART, plan_id).get("policy_revision")
    return str(revision), _policy(policies, revision, "the approval requirement")


def replay_requirement(parts: Mapping[str, bytes], plan_id: str, policies: Mapping[str, ReplayedPolicy],
                       plan: Plan) -> tuple[ApprovalRequirement, str | None]:
    """The requirement the included policy gives the plan at its creation, and a note if the recorded one differs."""
    recorded_doc = statement_predicate(parts, REQUIREMENT_PART, plan_id)
    policy = _policy(policies, recorded_doc.get("policy_revision"), "the approval requirement")
    try:
        required = requirement_for(policy, plan, plan.created_at)
    except WritError as e:
        raise BundleError("approval requirement", f"the included policy gives no requirement: {e.message}") from None
    try:
        recorded = ApprovalRequirement.model_validate(recorded_doc.get("requirement"))
    except ValueError:
        return required, "the recorded requirement is malformed; the included policy's is used"
    if recorded == required:
        return required, None
    return required, (f"the recorded requirement ({_show(recorded)}) differs from the one the included policy "
                      f"gives ({_show(required)}); the policy's is used")


def _show(r: ApprovalRequirement) -> str:
    groups = f", groups {', '.join(r.required_groups)}" if r.required_groups else ""
    return f"quorum {r.quorum}{groups}"


def replay_decisions(parts: Mapping[str, bytes], plan_id: str, entries: list[dict[str, Any]],
                     policies: Mapping[str, ReplayedPolicy]) -> int:
    """Every decision entry listed, as logged; each policy decision given again by its revision. How many replayed."""
    listed = statement_predicate(parts, DECISIONS_PART, plan_id).get("decisions")
    if not isinstance(listed, list):
        raise BundleError("decisions", "the decisions part has no list of decisions")
    logged = {e["seq"]: e["payload"] for e in entries if e["kind"] == "decision"}
    by_seq = {d.get("seq"): d for d in listed}
    if missing := sorted(set(logged) - set(by_seq)):
        raise BundleError("decisions", f"the decision in audit entry {missing[0]} is not in the decisions part")
    replayed = 0
    for seq, record in sorted(by_seq.items()):
        payload = logged.get(seq)
        if payload is None:
            raise BundleError("decisions", f"decision {seq} has no audit entry in the signed log")
        if record != decision_record(seq, payload):
            raise BundleError("decisions", f"decision {seq} differs from its audit entry")
        if decided_by(payload) == "gateway":
            if record["allow"] is not False:
                raise BundleError("decision replay", f"decision {seq} is an allow the gateway gave without policy")
            continue
        _replay_one(record, _policy(policies, record["policy_revision"], f"decision {seq}"))
        replayed += 1
    return replayed


def _replay_one(record: dict[str, Any], policy: ReplayedPolicy) -> None:
    inp = record["input"]
    if isinstance(inp, dict) and set(inp) == {"json_text"}:
        try:  # logged as text: it held numbers RFC 8785 cannot encode
            inp = json.loads(inp["json_text"])
        except (TypeError, ValueError, RecursionError):
            raise BundleError("decision replay", f"decision {record['seq']} was logged with an input that is not "
                              "JSON (or nests too deeply to read)") from None
    if not isinstance(inp, dict):
        raise BundleError("decision replay", f"decision {record['seq']} was logged without its input")
    allow, codes = policy.decide(inp)
    recorded = (record["allow"], sorted(record["reason_codes"]))
    if (allow, sorted(codes)) != recorded:
        raise BundleError("decision replay", (
            f"decision {record['seq']} ({record['decision_id']}) was recorded as allow={recorded[0]} "
            f"{recorded[1]}, but the included policy {short_key_id(policy.revision)} gives allow={allow} "
            f"{sorted(codes)}"))


def _merged(theirs: TrustedKey, mine: TrustedKey) -> TrustedKey:
    """The bundle's key as the auditor's root allows it: the later start, the earlier end and revocation."""
    def first(a: Any, b: Any) -> Any:
        return min(x for x in (a, b) if x is not None) if a is not None or b is not None else None

    starts = [t for t in (theirs.not_before, mine.not_before) if t is not None]
    return mine.model_copy(update={"not_before": max(starts) if starts else None,
                                   "not_after": first(theirs.not_after, mine.not_after),
                                   "revoked_at": first(theirs.revoked_at, mine.revoked_at)})


def effective_trust(parts: Mapping[str, bytes], plan_id: str, auditor: TrustSet, instance: PublicKey) -> TrustSet:
    """The trust subset the bundle carries, every key checked against the auditor's root; revocations in either apply."""
    doc = statement_predicate(parts, TRUST_PART, plan_id)
    try:
        subset = load_trust_root(canonical_bytes(doc))
    except WritError as e:
        raise BundleError("trust subset", f"the bundle's trust subset is not a trust root: {e.message}") from None
    inst = doc.get("instance_key")
    if not isinstance(inst, dict) or inst.get("public_key") != instance.to_base64():
        raise BundleError("trust subset", "the bundle's instance key is not the one in your trust root")
    keys = []
    for k in subset.keys:
        mine = auditor.key(k.key_id)
        if mine is None:
            raise BundleError("trust subset", f"key {short_key_id(k.key_id)} of {k.principal} ({k.role}) "
                              "in the bundle is not in your trust root")
        if (mine.principal, mine.role) != (k.principal, k.role):
            raise BundleError("trust subset", f"key {short_key_id(k.key_id)} is {k.principal}'s ({k.role}) in the "
                              f"bundle, {mine.principal}'s ({mine.role}) in your trust root")
        keys.append(_merged(k, mine))
    return TrustSet(keys=tuple(keys), groups=auditor.groups)
