"""The one decision interface both engines implement, and the fail-closed logic they share.

An engine implements two primitives:

- ``revision``: the policy revision it evaluates (``sha256:...``), or None.
- ``_evaluate(path, input_json)``: the JSON value of ``data.<path>`` for the input, or raise
  ``PolicyEvaluationError`` (code ``policy_undefined`` when the document is undefined).

``decide()`` is written once, here: it bounds the input, evaluates ``writ.authz.decision``,
validates the result against ``PolicyResult``, and turns *every* failure (engine error,
timeout, panic, undefined result, malformed result, oversized input) into a deny with a
specific reason code. It never raises.
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import pydantic

from writ.engine.core import reasons
from writ.engine.core.bounds import check_depth, check_size
from writ.engine.core.errors import InputError, PolicyEvaluationError
from writ.engine.core.settings import Limits
from writ.engine.policy.models import Decision, PolicyInput, PolicyResult, Reason

DECISION_PATH = "writ.authz.decision"

# Messages for the reason codes Writ itself produces when no policy decision could be made.
FAIL_CLOSED_MESSAGES: dict[str, str] = {
    reasons.ENGINE_ERROR: "the policy engine failed; the call is denied (fail closed)",
    reasons.ENGINE_TIMEOUT: "the policy engine did not answer in time; the call is denied (fail closed)",
    reasons.ENGINE_UNAVAILABLE: "the policy engine cannot be reached; the call is denied (fail closed)",
    reasons.POLICY_UNDEFINED: "the policy gave no decision for this input; the call is denied (fail closed)",
    reasons.POLICY_RESULT_INVALID: "the policy returned a decision of the wrong shape; the call is denied",
    reasons.INPUT_TOO_LARGE: "the input is larger than the configured limit",
    reasons.INPUT_TOO_DEEP: "the input nests deeper than the configured limit",
    reasons.INPUT_INVALID: "the input does not match the policy input schema",
    reasons.INPUT_NOT_JSON: "the input is not valid JSON",
    reasons.AUDIT_UNAVAILABLE: "the decision could not be written to the audit log; the call is denied",
    reasons.UPSTREAM_UNAVAILABLE: "the upstream MCP server is not running; the call was not made",
    reasons.UPSTREAM_TIMEOUT: "the upstream MCP server did not answer in time",
    reasons.GATEWAY_ERROR: "the gateway failed while handling the call; the call is denied (fail closed)",
    reasons.OBLIGATION_UNFULFILLED: "the policy attached an obligation the gateway cannot fulfil; the call is denied",
}


def new_decision_id() -> str:
    return uuid.uuid4().hex


def deny(code: str, detail: str | None = None, *, engine: Literal["embedded", "opa"],
         revision: str | None, duration_us: int = 0, decision_id: str | None = None) -> Decision:
    """A fail-closed deny with one reason (``detail`` replaces the stock message when given)."""
    message = FAIL_CLOSED_MESSAGES.get(code, "denied")
    if detail:
        message = f"{message}: {detail}"
    return Decision(
        decision_id=decision_id or new_decision_id(),
        allow=False,
        reasons=[Reason(code=code, message=message)],
        obligations=[],
        policy_revision=revision,
        engine=engine,
        duration_us=duration_us,
    )


def canonical_input_json(inp: PolicyInput | dict[str, Any]) -> str:
    """An input as compact JSON text with sorted keys (what the audit log digests)."""
    doc = inp.model_dump(mode="json", by_alias=True) if isinstance(inp, PolicyInput) else inp
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def engine_input_json(inp: PolicyInput | dict[str, Any]) -> str:
    """The JSON text both engines receive for an input: a model is serialized once, by pydantic.

    The same values as ``canonical_input_json`` (keys in field order, not sorted; floats as
    pydantic writes them), at half the cost: this is on every decision's path.
    """
    if isinstance(inp, PolicyInput):
        return inp.model_dump_json(by_alias=True)
    return canonical_input_json(inp)


class PolicyEngine(ABC):
    """Evaluates Rego policies. Subclasses: ``EmbeddedEngine`` (regorus) and ``OpaSidecarEngine``.

        engine: PolicyEngine = make_engine(settings)      # writ.engine.policy.pdp
        decision = engine.decide(policy_input)            # never raises: a failure is a deny with a code
        requirement = engine.evaluate("writ.approval.requirement", doc)   # raises typed errors

    A subclass implements ``revision`` and ``_evaluate``; ``decide`` is written once, here.
    """

    name: ClassVar[Literal["embedded", "opa"]]

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    @property
    @abstractmethod
    def revision(self) -> str | None:
        """Digest of the policy set being evaluated, or None if none is loaded."""

    @abstractmethod
    def _evaluate(self, path: str, input_json: str) -> Any:
        """Value of ``data.<path>`` for the input; raise ``PolicyEvaluationError`` on any failure."""

    def evaluate(self, path: str, input_doc: PolicyInput | dict[str, Any] | None = None) -> Any:
        """Evaluate any document (e.g. ``writ.approval.result``); raises typed errors, unlike ``decide``."""
        input_json = "{}" if input_doc is None else self._bounded_json(input_doc)
        return self._evaluate(path, input_json)

    def decide(self, inp: PolicyInput | dict[str, Any]) -> Decision:
        """Decide one tool call. Never raises: every failure is a deny with a reason code."""
        decision_id = new_decision_id()
        start = time.perf_counter_ns()

        def elapsed() -> int:
            return (time.perf_counter_ns() - start) // 1000

        revision = None
        try:
            revision = self.revision
            # Depth first, on whatever we were given: a model's args are as unbounded as a dict.
            check_depth(inp.args if isinstance(inp, PolicyInput) else inp, self.limits.max_json_depth)
            if not isinstance(inp, PolicyInput):
                inp = PolicyInput.model_validate(inp)
            raw = self._evaluate(DECISION_PATH, self._bounded_json(inp))
            revision = self.revision  # as evaluated: the sidecar learns it from OPA's answer
            result = PolicyResult.model_validate(raw)
        except InputError as e:
            return deny(e.code, e.message, engine=self.name, revision=revision,
                        duration_us=elapsed(), decision_id=decision_id)
        except pydantic.ValidationError as e:
            code = reasons.POLICY_RESULT_INVALID if "raw" in locals() else reasons.INPUT_INVALID
            detail = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in e.errors()[:3]
            )
            return deny(code, detail, engine=self.name, revision=revision,
                        duration_us=elapsed(), decision_id=decision_id)
        except PolicyEvaluationError as e:
            revision = self.revision  # an undefined answer from OPA still names its revision
            return deny(e.code, e.message, engine=self.name, revision=revision,
                        duration_us=elapsed(), decision_id=decision_id)
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            return deny(reasons.ENGINE_ERROR, f"{type(e).__name__}: {str(e)[:200]}", engine=self.name,
                        revision=revision, duration_us=elapsed(), decision_id=decision_id)
        return _decision(result, decision_id, revision, self.name, elapsed())

    def _bounded_json(self, inp: PolicyInput | dict[str, Any]) -> str:
        text = engine_input_json(inp)
        check_size(len(text) if text.isascii() else len(text.encode("utf-8")), self.limits)
        return text

    def close(self) -> None:  # noqa: B027 - an optional hook: most engines hold nothing to release
        """Release connections or engines; the default has nothing to release."""


def _decision(
    result: PolicyResult, decision_id: str, revision: str | None, engine: Literal["embedded", "opa"], duration_us: int
) -> Decision:
    """The decision a well-formed policy result makes."""
    # Reasons are deny reasons: an allow that carries one is a deny, and a deny
    # must say why, so a bare ``allow: false`` gets a reason of its own.
    allow = result.allow and not result.reasons
    found = list(result.reasons)
    if not allow and not found:
        found.append(Reason(code=reasons.DENIED_WITHOUT_REASON, message="the policy denied the call and gave no reason"))
    return Decision(
        decision_id=decision_id,
        allow=allow,
        reasons=sorted(found, key=lambda r: (r.code, r.message)),
        obligations=sorted(result.obligations, key=lambda o: (o.code, o.message)),
        policy_revision=revision,
        engine=engine,
        duration_us=duration_us,
    )
