"""The parts ADR 0022 adds to a plan's bundle: its decisions, the policy that made them, the trust subset.

    decisions_of(entries)                      # the plan's `decision` audit entries, as the decisions part lists them
    needed_revisions(decisions, requirement_revision)   # the policy revisions a verifier must re-run
    trust_subset(plans.trust.export_trust_root(), principals, instance)   # the keys the plan needs
    step_attempts(rows, entries)               # every attempt of every step, earlier ones from the log

A decision the gateway gave without asking policy (``decided_by: gateway``; in entries written
before that field, a deny whose every reason is one Writ itself gives: see ``NOT_POLICY_CODES``)
is listed but needs no policy revision and is not re-evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from writ.engine.core import reasons
from writ.engine.core.timeutil import iso, parse_iso
from writ.plans.canonical import canonical_bytes, sha256_digest

__all__ = ["NOT_POLICY_CODES", "decided_by", "decision_record", "needed_revisions", "step_attempts", "trust_subset"]

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


Entry = tuple[int, str, Mapping[str, Any]]  # (seq, kind, payload) of an audit entry about the plan


def step_attempts(rows: Sequence[Mapping[str, Any]], entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Every attempt of every step, by step and attempt: each store row (its latest attempt), earlier ones from the log.

    A retry updates the row; its ``step_claim`` and ``step_result`` entries stay. An earlier
    attempt's result is the step's first ``step_result`` after its claim.
    """
    by_step: dict[Any, list[Entry]] = {}
    for seq, kind, p in sorted(entries, key=lambda e: e[0]):
        if kind in ("step_claim", "step_result"):
            by_step.setdefault(p.get("step_index"), []).append((seq, kind, p))
    out: list[dict[str, Any]] = []
    for row in rows:
        if row["attempt"] > 1:
            out += _earlier(row["step_index"], row["attempt"], by_step.get(row["step_index"], []))
        out.append(dict(row))
    return sorted(out, key=lambda s: (s["step_index"], s["attempt"]))


def _earlier(index: int, attempt: int, entries: Sequence[Entry]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for _seq, kind, p in entries:
        if kind == "step_claim" and p.get("claimed") is True:
            current = None
            if (p.get("attempt") or 1) < attempt:
                current = {"step_index": index, "executor": p.get("executor"),
                           "claimed_at": iso(parse_iso(str(p.get("at")), "a claim's time")),
                           "args_digest": p.get("args_digest"), "result_digest": None, "outcome": None,
                           "finished_at": None, "attempt": p.get("attempt") or 1}
                out.append(current)
        elif kind == "step_result" and current is not None and current["outcome"] is None:
            current.update(result_digest=p.get("result_digest"), outcome=p.get("outcome"),
                           finished_at=iso(parse_iso(str(p.get("at")), "a result's time")))
    return out
