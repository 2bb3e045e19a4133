"""``POST /v1/decisions``: what policy says about one input, for an auditor or admin holding a token.

    $ writ principals add audit-bot --role auditor && writ tokens new --principal audit-bot > audit.token
    $ curl -s 127.0.0.1:8420/v1/decisions -H "Authorization: Bearer $(cat audit.token)" \\
        -H 'Content-Type: application/json' -d @examples/planner-write.json
    $ curl -s '127.0.0.1:8420/v1/decisions?dry_run=1' ...      # the same answer, not logged

The checks, in order; each refusal is Writ's JSON error shape with its code:

1. ``Origin``: when bound to loopback, a page of another site is refused (403 ``origin_forbidden``),
   as at ``/mcp``; the ``Host`` header is checked for the whole app (``create_app``).
2. A bearer token (``writ tokens new``): 401 ``token_missing`` / ``token_invalid``. These two and
   the origin refusal are not logged: whoever can reach the port could otherwise write into the
   audit log, which is what this endpoint must not allow.
3. A rate limit per token (``limits.api_decisions_per_minute``): 429 ``rate_limited`` with
   ``Retry-After``; the first refusal of a token each minute is logged (``http_refused``).
4. The token's principal: disabled or locked (403 ``principal_disabled`` / ``principal_locked``),
   or of a role other than ``auditor`` and ``admin`` (403 ``api_role_forbidden``): logged.
5. ``Content-Type: application/json``, else 415 ``content_type_unsupported`` (logged): a browser
   may send ``text/plain`` across sites without asking first, never ``application/json``.
6. The body: larger than ``limits.max_input_bytes``, too deep or not JSON is a logged deny.

The answer is the ``Decision``. It is logged as an ``api_decision`` entry with the caller
(principal, role, token id), never as a gateway ``decision``: nothing here was enforced. The
input is kept in the entry up to ``MAX_LOGGED_INPUT_BYTES``; a larger one only by its sha256 and
size. ``?dry_run=1`` decides the same way and logs nothing (like ``writ policy eval``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from writ.engine.core import reasons
from writ.engine.core.bounds import check_size, parse_json_bounded
from writ.engine.core.errors import AuditError, InputError, WritError
from writ.engine.gateway.origins import bearer_token, local_origin
from writ.engine.gateway.tokens import TokenHolder, TokenStore
from writ.engine.policy.base import deny
from writ.engine.policy.models import Decision
from writ.engine.policy.pdp import DecisionPoint, audit_payload
from writ.engine.web.deps import PdpDep, error_response

PATH = "/v1/decisions"
API_ROLES = ("auditor", "admin")
"""Who may ask: people who read decisions for a living. Agents (planners, executors) and approvers may not."""
MAX_LOGGED_INPUT_BYTES = 65_536
"""An input larger than this is logged by its sha256 and size only, so a post cannot grow the log by its size."""
_TRUE = ("1", "true", "yes")

router = APIRouter()


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, in bursts of at most that many.

        limiter = RateLimiter(600)
        limiter.take("tok-3f2a")          # None: go ahead; else the seconds until the next request may come
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens left, when counted)
        self._reported: dict[str, float] = {}  # key -> when its last refusal was logged
        self._lock = threading.Lock()

    def take(self, key: str) -> float | None:
        """Spend one request of ``key``'s allowance: None if there was one, else the seconds to wait."""
        rate = self.per_minute / 60.0
        with self._lock:
            now = self._clock()
            left, then = self._buckets.get(key, (float(self.per_minute), now))
            left = min(float(self.per_minute), left + (now - then) * rate)
            if left >= 1.0:
                self._buckets[key] = (left - 1.0, now)
                return None
            self._buckets[key] = (left, now)
            return (1.0 - left) / rate

    def first_refusal(self, key: str) -> bool:
        """True once a minute per key: whether this refusal goes to the audit log."""
        with self._lock:
            now = self._clock()
            if now - self._reported.get(key, -math.inf) < 60.0:
                return False
            self._reported[key] = now
            return True


@dataclass(frozen=True)
class Refusal:
    """A request refused before anything was decided: HTTP status, code, message, and whether to log it."""

    status: int
    code: str
    message: str
    logged: bool = True
    retry_after_s: float | None = None


def _caller(request: Request, tokens: TokenStore, limiter: RateLimiter,
            local: bool) -> tuple[TokenHolder | None, Refusal | None]:
    """Who is asking (None: nobody known), and why they may not (checks 1 to 5 of the module doc)."""
    origin = request.headers.get("origin")
    if origin is not None and local and not local_origin(origin):
        return None, Refusal(403, reasons.ORIGIN_FORBIDDEN, "requests from another origin are refused", logged=False)
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        return None, Refusal(401, reasons.TOKEN_MISSING, "send Authorization: Bearer <token> of an auditor or "
                             "admin (writ tokens new --principal NAME)", logged=False)
    holder = tokens.holder(token)
    if holder is None:
        return None, Refusal(401, reasons.TOKEN_INVALID, "the token is unknown or revoked", logged=False)
    wait = limiter.take(holder.token_id)
    if wait is not None:
        return holder, Refusal(429, reasons.RATE_LIMITED, f"more than {limiter.per_minute} decisions a minute with "
                               "this token (limits.api_decisions_per_minute)",
                               logged=limiter.first_refusal(holder.token_id), retry_after_s=wait)
    return holder, _forbidden(request, holder)


def _forbidden(request: Request, holder: TokenHolder) -> Refusal | None:
    """Why this token's principal may not ask, or what it sent may not be read; None: go ahead."""
    if holder.disabled:
        return Refusal(403, reasons.PRINCIPAL_DISABLED, f"principal {holder.principal!r} is disabled")
    if holder.locked:
        return Refusal(403, reasons.PRINCIPAL_LOCKED, f"principal {holder.principal!r} is locked: an operator "
                       "must review it (writ sessions list)")
    if holder.role not in API_ROLES:
        return Refusal(403, reasons.API_ROLE_FORBIDDEN, f"principal {holder.principal!r} has role {holder.role}; "
                       f"the decision API answers {' and '.join(API_ROLES)} principals only")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        return Refusal(415, reasons.CONTENT_TYPE_UNSUPPORTED,
                       f"send the input as Content-Type: application/json, not {media or 'no content type'!r}")
    return None


def _refuse(pdp: DecisionPoint, refusal: Refusal, holder: TokenHolder | None) -> Response:
    if refusal.logged:
        entry: dict[str, Any] = {"path": PATH, "code": refusal.code, "status": refusal.status}
        if holder is not None:
            entry.update(principal=holder.principal, role=holder.role, token_id=holder.token_id)
        try:
            pdp.audit.append("http_refused", entry)
        except AuditError:
            pass  # refused either way; the decision point's log says the audit log is down
    headers = {"Retry-After": str(math.ceil(refusal.retry_after_s))} if refusal.retry_after_s is not None else None
    if refusal.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="writ"'}
    return error_response(refusal.status, refusal.code, refusal.message, headers)


async def _read_body(request: Request, pdp: DecisionPoint) -> bytes:
    """The body, refused (``InputError``) as soon as it is larger than ``limits.max_input_bytes``."""
    limits = pdp.engine.limits
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        check_size(int(declared), limits)
    body = b""
    async for chunk in request.stream():
        body += chunk
        check_size(len(body), limits)
    return body


def _decided(pdp: DecisionPoint, body: bytes | InputError) -> tuple[Decision, dict[str, Any]]:
    """The decision on ``body`` (a refused input is a deny) and its audit payload, the input bounded."""
    engine = pdp.engine
    try:
        if isinstance(body, InputError):
            raise body
        doc = parse_json_bounded(body, engine.limits)
        if not isinstance(doc, dict):
            raise InputError("the input must be a JSON object", code=reasons.INPUT_INVALID)
    except InputError as e:
        decision = deny(e.code, e.message, engine=engine.name, revision=engine.revision)
        return decision, {"decision": decision.model_dump(mode="json"), "input": None, "input_bytes": None}
    decision = engine.decide(doc)
    payload = audit_payload(decision, doc)
    payload["input_bytes"] = len(body)
    if len(body) > MAX_LOGGED_INPUT_BYTES:
        payload["input"] = None  # its sha256 stays
    return decision, payload


def _decide(pdp: DecisionPoint, body: bytes | InputError, caller: TokenHolder, *, dry_run: bool) -> Decision:
    """Decide (off the event loop); unless ``dry_run``, log it as ``api_decision`` before answering."""
    decision, payload = _decided(pdp, body)
    if dry_run:
        return decision
    payload["caller"] = {"principal": caller.principal, "role": caller.role, "token_id": caller.token_id}
    engine = pdp.engine
    try:
        pdp.audit.append("api_decision", payload)
    except AuditError as e:
        return deny(reasons.AUDIT_UNAVAILABLE, e.message, engine=engine.name, revision=decision.policy_revision,
                    decision_id=decision.decision_id)
    return decision


@router.post(PATH)
async def decide(request: Request, pdp: PdpDep) -> Response:
    """Decide one policy input for an auditor or admin (bearer token); ``?dry_run=1``: not logged."""
    state = request.app.state
    try:
        caller, refusal = await run_in_threadpool(_caller, request, state.tokens, state.limiter, state.local)
    except WritError as e:  # the token store is down: nobody can be told apart, refuse
        return error_response(503, e.code, "the token could not be checked")
    if refusal is not None:
        return await run_in_threadpool(_refuse, pdp, refusal, caller)
    if caller is None:  # not reached: every path without a caller is a refusal
        return error_response(401, reasons.TOKEN_INVALID, "the token is unknown or revoked")
    dry_run = request.query_params.get("dry_run", "").lower() in _TRUE
    body: bytes | InputError
    try:
        body = await _read_body(request, pdp)
    except InputError as e:
        body = e
    decision = await run_in_threadpool(_decide, pdp, body, caller, dry_run=dry_run)
    headers = {"Writ-Dry-Run": "1"} if dry_run else None
    return Response(decision.model_dump_json(), media_type="application/json", headers=headers)
