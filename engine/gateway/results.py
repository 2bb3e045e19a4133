"""How the gateway's own answers look to an agent: denials, errors, the decision in ``_meta``, result digests.

    deny_result(decision)        # isError result, one "denied [planner_cannot_write]: ..." line per reason
    error_result(reasons.UPSTREAM_TIMEOUT, "upstream 'git' did not answer within 30 s; ...", decision)
    decision_meta(decision)      # {"writ/decision": {"decision_id": ..., "allow": ..., "reasons": [...]}}
    result_digest(result)        # 'sha256:...' of a result as JSON, for the audit log
    result_size(result, limit)   # about how many bytes the result is (counting stops past ``limit``)
    oversize(result, limit)      # (size, sha256) of a result too large to pass on, else None

An allowed call's result goes back unchanged; everything here is for what the gateway says
itself. ``listable`` is the rule for what listings leave out, and ``audit_or_log`` how the
gateway writes entries it cannot fail the call over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from writ.engine.core import reasons
from writ.engine.core.errors import InputError, WritError
from writ.engine.core.ports import AuditSink
from writ.engine.policy.models import Decision
from writ.plans.canonical import digest

log = logging.getLogger(__name__)

META = "writ/"  # prefix of the gateway's _meta keys
# A tool (or prompt, or resource) is left out of a listing only when the role alone denies it: the
# role can never call it, whatever the arguments or plan. Planners still see write tools: a plan
# names them and pins their digest, and calling one is denied (planner_cannot_write) at call time.
HIDDEN_WHEN_ONLY = frozenset({reasons.ROLE_NOT_PERMITTED, reasons.ROLE_CANNOT_WRITE})


@dataclass(frozen=True)
class Failed:
    """A forwarded request that failed in a way the gateway reports itself, with a reason code.

        Failed(reasons.UPSTREAM_UNAVAILABLE, "upstream 'git' is down ...; the call was not made")
    """

    code: str
    message: str


def listable(dry_run: Decision) -> bool:
    """Whether an item is listed, given the engine's undelivered decision for calling it with no arguments."""
    return dry_run.allow or not dry_run.reasons or not set(dry_run.reason_codes) <= HIDDEN_WHEN_ONLY


def deny_text(decision: Decision, *, note: str = "") -> str:
    """``denied [code]: sentence`` per reason, the plan ``note`` and a ``lock_session`` obligation, one per line."""
    lines = [f"denied [{r.code}]: {r.message}" for r in decision.reasons]
    if note:
        lines.append(f"plan: {note}")
    lines += [f"obligation [{o.code}]: {o.message}" for o in decision.obligations if o.code == reasons.LOCK_SESSION]
    return "\n".join(lines)


def deny_result(decision: Decision, *, note: str = "") -> types.CallToolResult:
    """A denied call, as the ``isError`` result the agent reads (``deny_text``)."""
    return _result(deny_text(decision, note=note), decision)


def refused_result(code: str, message: str, decision: Decision) -> types.CallToolResult:
    """Allowed by policy, refused by the plan store (the claim): a denial the agent reads like any other."""
    return _result(f"denied [{code}]: {message}", decision, code=code)


def error_result(code: str, message: str, decision: Decision) -> types.CallToolResult:
    """Allowed, then failed in the gateway or the upstream: ``error [code]: message``."""
    return _result(f"error [{code}]: {message}", decision, code=code)


def decision_meta(decision: Decision, code: str | None = None) -> dict[str, Any]:
    """``{"writ/decision": ...}``: the decision id, outcome and reasons, for the agent and its operator."""
    meta: dict[str, Any] = {
        "decision_id": decision.decision_id, "allow": decision.allow,
        "reasons": [r.model_dump() for r in decision.reasons], "policy_revision": decision.policy_revision,
    }
    if code:
        meta["error"] = code
    return {f"{META}decision": meta}


def _result(text: str, decision: Decision, *, code: str | None = None) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True,
                                meta=decision_meta(decision, code))


def result_digest(result: BaseModel) -> str:
    """``sha256:`` of the result as JSON: RFC 8785 when it has a canonical form, else sorted-key JSON text."""
    doc = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        return digest(doc)
    except InputError:
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def result_size(result: BaseModel, limit: int) -> int:
    """About how many bytes ``result`` takes as JSON, counted without serializing it; stops soon after ``limit``.

    Each string counts its UTF-8 bytes plus its quotes (escapes are not counted), each key its
    length plus three, each other value one byte. Only strings that could still fit under
    ``limit`` are encoded, so a huge result costs no more than a huge ``len()``.
    """
    total = 0
    stack: list[Any] = [result]
    while stack and total <= limit:
        value = stack.pop()
        if isinstance(value, str):
            n = len(value)
            total += (n if value.isascii() or n > limit - total else len(value.encode("utf-8", "surrogatepass"))) + 2
        elif isinstance(value, BaseModel):
            extra = value.__pydantic_extra__ or {}
            for fields in (value.__dict__, extra):
                for key, item in fields.items():
                    if item is not None:
                        total += len(key) + 3
                        stack.append(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                total += len(key) + 3 if isinstance(key, str) else 8
                stack.append(item)
        elif isinstance(value, (list, tuple)):
            total += 2
            stack.extend(value)
        else:
            total += 1
    return total


def oversize(result: BaseModel, limit: int) -> tuple[int, str] | None:
    """``(size, sha256)`` of a result over ``limit`` that must not reach the agent; None if it may pass.

    The tool-call and pass-through paths both refuse such a result (``result_too_large``) and log only these.
    """
    if result_size(result, limit) <= limit:  # counted without serializing
        return None
    return result_size(result, sys.maxsize), refused_digest(result)


def bounded_error(error: MCPError, limit: int) -> MCPError:
    """An upstream's own JSON-RPC error as the agent gets it: unchanged, unless its message and data are over ``limit``.

    An error is bounded like a result (``limits.max_result_bytes``): a hostile upstream could
    otherwise send anything through one. Over the limit the agent gets ``result_too_large`` instead.
    """
    size = result_size(types.ErrorData(code=error.code, message=error.message, data=error.data), limit)
    if size <= limit:
        return error
    message = (f"error [{reasons.RESULT_TOO_LARGE}]: the upstream's error (code {error.code}) is more than "
               f"limits.max_result_bytes ({limit}): it was not passed on")
    return MCPError(error.code, message, data={"code": reasons.RESULT_TOO_LARGE})


def refused_digest(result: BaseModel) -> str:
    """``sha256:`` of a result too large to pass on: its compact JSON as received (one fast serialization, never RFC 8785)."""
    try:
        text = result.model_dump_json(by_alias=True, exclude_none=True)
    except PydanticSerializationError:  # a lone surrogate, say: the slower serializer that keeps it
        text = json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"),
                          ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def audit_or_log(audit: AuditSink, kind: str, payload: Mapping[str, Any], *, durable: bool = True) -> None:
    """Append an entry about something that already happened; if the log refuses it, say so in the process log.

    Only for entries the gateway cannot fail closed over (a result already returned, a session
    that ended). Claims and decisions are audited by the plan store and the decision point,
    which refuse the call when their entry cannot be written.
    """
    try:
        audit.append(kind, payload, durable=durable)
    except WritError as e:
        log.error("audit entry %s not written (%s): %s", kind, e.message, json.dumps(payload, default=str)[:1000])
