"""The parts ADR 0022 adds to a plan's bundle: its decisions, the policy that made them, the trust subset.

    decisions_of(entries)                      # the plan's `decision` audit entries, as the decisions part lists them
    needed_revisions(decisions, requirement_revision)   # the policy revisions a verifier must re-run
    trust_subset(plans.trust.export_trust_root(), principals, instance)   # the keys the plan needs

A decision the gateway gave without asking policy (``decided_by: gateway``; in entries written
before that field, a deny whose every reason is one Writ itself gives: see ``NOT_POLICY_CODES``)
is listed but needs no policy revision and is not re-evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from writ.engine.core import reasons
from writ.plans.canonical import canonical_bytes, sha256_digest

__all__ = ["NOT_POLICY_CODES", "decided_by", "decision_record", "needed_revisions", "trust_subset"]

NOT_POLICY_CODES: Final = frozenset({
    reasons.PRINCIPAL_LOCKED, reasons.PRINCIPAL_DISABLED, reasons.AUDIT_UNAVAILABLE, reasons.ENGINE_ERROR,
    reasons.ENGINE_TIMEOUT, reasons.ENGINE_UNAVAILABLE, reasons.POLICY_UNDEFINED, reasons.POLICY_RESULT_INVALID,
    reasons.INPUT_TOO_LARGE, reasons.INPUT_TOO_DEEP, reasons.INPUT_INVALID, reasons.INPUT_NOT_JSON,
    reasons.GATEWAY_ERROR, reasons.UPSTREAM_UNAVAILABLE, reasons.UPSTREAM_TIMEOUT, reasons.OBLIGATION_UNFULFILLED,
})
"""Reasons Writ gives when no policy answer decided: a legacy deny made only of these is the gateway's."""


def decided_by(payload: Mapping[str, Any]) -> str:
    """``policy`` or ``gateway``: who made a logged decision (legacy entries: by their reason codes)."""
    if payload.get("decided_by") is not None:
        return str(payload["decided_by"])
    decision = payload.get("decision") or {}
    codes = {r.get("code") for r in decision.get("reasons") or []}
    if decision.get("allow") is False and codes and codes <= NOT_POLICY_CODES:
        return "gateway"
    return "policy"


def decision_record(seq: int, payload: Mapping[str, Any]) -> dict[str, Any]:
    """One item of the decisions part: the entry's seq, its recorded input and what was decided, by which revision."""
    decision = payload.get("decision") or {}
    return {
        "seq": seq,
        "decision_id": decision.get("decision_id"),
        "decided_by": decided_by(payload),
        "input": payload.get("input"),
        "allow": decision.get("allow"),
        "reason_codes": [r.get("code") for r in decision.get("reasons") or []],
        "policy_revision": decision.get("policy_revision"),
    }


def needed_revisions(decisions: Iterable[Mapping[str, Any]], requirement_revision: str | None) -> list[str]:
    """Every policy revision a verifier re-runs: the requirement's and each policy decision's."""
    found = {d["policy_revision"] for d in decisions if d["decided_by"] == "policy" and d["policy_revision"]}
    if requirement_revision:
        found.add(requirement_revision)
    return sorted(found)


def trust_subset(root: Mapping[str, Any], principals: Sequence[str], instance_key: Mapping[str, str]
                 ) -> dict[str, Any]:
    """The trust root (``writ trust export`` format) cut to ``principals``' keys and groups, with the instance key."""
    wanted = set(principals)
    trust = root["trust"]
    keys = [k for k in trust.get("keys", []) if k["principal"] in wanted]
    groups = {g: [m for m in members if m in wanted] for g, members in (trust.get("groups") or {}).items()}
    subset = {"keys": keys, "groups": {g: m for g, m in groups.items() if m}}
    return {"_type": root["_type"], "exported_at": root["exported_at"], "digest": sha256_digest(canonical_bytes(subset)),
            "trust": subset, "instance_key": dict(instance_key)}
