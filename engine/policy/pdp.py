"""The policy decision point: decide, then log, and deny whenever either fails.

    pdp = DecisionPoint.from_settings(Settings())
    decision = pdp.decide(policy_input)        # already in the audit log when it returns

An allow is only ever returned after its audit entry is committed. If the append
fails, the decision becomes a deny with reason ``audit_unavailable`` (and, since the
log cannot take it, the denial is written to the process log instead).
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

from writ.attestations.audit import AuditLog
from writ.engine.core import reasons
from writ.engine.core.bounds import parse_json_bounded
from writ.engine.core.db import open_database
from writ.engine.core.errors import AuditError, InputError
from writ.engine.core.settings import Settings
from writ.engine.policy.base import PolicyEngine, canonical_input_json, deny
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.models import Decision, PolicyInput
from writ.engine.policy.sidecar import OpaSidecarEngine

log = logging.getLogger(__name__)

# Inputs refused for their size or depth are not copied into the log, only named.
_UNLOGGABLE = {reasons.INPUT_TOO_LARGE, reasons.INPUT_TOO_DEEP}


def make_engine(settings: Settings) -> PolicyEngine:
    """The engine the settings ask for (PolicyLoadError / ConfigError if it cannot start)."""
    if settings.engine == "opa":
        return OpaSidecarEngine(settings.opa_url, settings.limits)
    return EmbeddedEngine(settings.effective_policy_dir, settings.limits)


def audit_payload(decision: Decision, inp: PolicyInput | dict[str, Any]) -> dict[str, Any]:
    """The ``decision`` entry's payload: the decision, the input (as data, or its JSON text), the input's sha256.

    A model input is dumped once (this runs on every gateway call); its digest text and the
    encodability check both read that dump. Input RFC 8785 cannot encode (an integer beyond 2**53)
    is kept as its exact JSON text.
    """
    payload: dict[str, Any] = {"decision": decision.model_dump(mode="json")}
    if set(decision.reason_codes) & _UNLOGGABLE:
        payload["input"] = None
        return payload
    doc = _input_doc(inp)
    text = canonical_input_json(doc)
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    payload["input"] = doc if jcs_encodable(doc) else {"json_text": text}
    payload["input_sha256"] = digest
    return payload


def _input_doc(inp: PolicyInput | dict[str, Any]) -> Any:
    return inp.model_dump(mode="json", by_alias=True) if isinstance(inp, PolicyInput) else inp


_JCS_INT = 2**53 - 1  # rfc8785 refuses integers beyond the doubles' exact range


def jcs_encodable(value: Any) -> bool:
    """Whether ``rfc8785.dumps(value)`` succeeds, decided without building its output (a fifth of the time).

        jcs_encodable({"n": 2**53})     # False: rfc8785 raises IntegerDomainError
        jcs_encodable({"a": [1.5, None, "\u00e9"]})    # True

    The same rules as ``rfc8785.dump``: None, bool, int within +-(2**53 - 1), finite float, str
    that encodes as UTF-8 (no lone surrogates), list or tuple, dict with str keys; anything else
    is refused. ``tests/unit/test_pdp.py`` checks it against ``rfc8785.dumps`` with hypothesis.
    """
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_JCS_INT <= value <= _JCS_INT
    if isinstance(value, str):
        return _utf8(value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(jcs_encodable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _utf8(k) and jcs_encodable(v) for k, v in value.items())
    return False


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class DecisionPoint:
    """Decide one request and log it before answering: no audit entry, no allow.

        pdp = DecisionPoint(EmbeddedEngine(Path("policies")), AuditLog(open_database(settings)))
        decision = pdp.decide(policy_input)       # in the audit log (kind "decision") when it returns
        pdp.decide_json(b"[1, 2]").reason_codes   # ['input_invalid']: refused input is logged too
    """

    def __init__(self, engine: PolicyEngine, audit: AuditLog) -> None:
        self.engine = engine
        self.audit = audit

    @classmethod
    def from_settings(cls, settings: Settings) -> DecisionPoint:
        return cls(make_engine(settings), AuditLog(open_database(settings), flush_s=settings.audit.flush_s))

    def decide_json(self, raw: bytes | str) -> Decision:
        """Decide an input given as JSON text from outside (size and depth bounded first)."""
        try:
            doc = parse_json_bounded(raw, self.engine.limits)
        except InputError as e:
            return self.refuse_input(e)
        if not isinstance(doc, dict):
            return self.refuse_input(InputError("the input must be a JSON object", code=reasons.INPUT_INVALID))
        return self.decide(doc)

    def refuse_input(self, err: InputError) -> Decision:
        """A logged deny for input that could not even be parsed."""
        decision = deny(err.code, err.message, engine=self.engine.name, revision=self.engine.revision)
        return self._log(decision, {"decision": decision.model_dump(mode="json"), "input": None, "decided_by": "gateway"})

    def decide(self, inp: PolicyInput | dict[str, Any], *, durable: bool = True) -> Decision:
        """Decide, then log; the decision returned is in the audit log (or is an ``audit_unavailable`` deny).

        ``durable=False`` (the gateway's read calls): the entry is committed when this returns and
        fsynced within ``WRIT_AUDIT__FLUSH_S``; a decision that obliges a plan step (a write) is
        fsynced before it returns all the same (ADR 0021).
        """
        decision = self.engine.decide(inp)
        durable = durable or decision.has_obligation(reasons.PLAN_REQUIRED)
        return self._log(decision, audit_payload(decision, inp), durable=durable)

    def _log(self, decision: Decision, payload: dict[str, Any], *, durable: bool = True) -> Decision:
        try:
            self.audit.append("decision", payload, durable=durable)
        except AuditError as e:
            denied = deny(reasons.AUDIT_UNAVAILABLE, e.message, engine=self.engine.name,
                          revision=decision.policy_revision, duration_us=decision.duration_us,
                          decision_id=decision.decision_id)
            log.error("decision %s denied: audit log unavailable (%s); policy said allow=%s reasons=%s",
                      decision.decision_id, e.message, decision.allow, decision.reason_codes)
            return denied
        return decision

    def close(self) -> None:
        self.engine.close()
