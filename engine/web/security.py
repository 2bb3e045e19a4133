"""Boring, explicit web security for the approval form: headers, cookies, CSRF, Origin, rate limits, refusals.

    app.add_middleware(SecurityHeaders)                   # CSP and friends on every response
    refusal = check_post(request, form_token)             # Origin, then the CSRF token: None means go ahead
    return refused_page(request, refusal) / refused_json(refusal)    # the reason, with its status

Each check, and why:

- **Content-Security-Policy** ``default-src 'self'; frame-ancestors 'none'`` (plus ``base-uri
  'none'``, ``form-action 'self'``): the pages load one script and one stylesheet from this
  origin and nothing inline, so text from a plan can never run as script; no site can frame a
  page to trick a click. ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``
  (an invite token in the URL never leaks to another site; ``no-referrer`` would make Chromium
  send ``Origin: null`` with the form's own POSTs), ``Cache-Control: no-store``.
- **Origin** on every state-changing request: it must be this server's own origin (as the
  request reached it, or ``WRIT_PUBLIC_URL``). Browsers send it on every POST, so a page of
  another origin, even another port of the same host (same *site*, so SameSite cookies still
  go), is refused ``origin_forbidden``; a POST without it is refused ``origin_missing``.
- **CSRF token** (double submit): a random ``writ_csrf`` cookie (HttpOnly, SameSite=Strict) and
  the same value in each form (``csrf_token``) or, for the page's script, the ``X-CSRF-Token``
  header. A page elsewhere can neither read the cookie nor the page holding the token.
- **Session cookie** ``writ_session``: HttpOnly, SameSite=Strict, ``Secure`` when the request
  came over TLS or ``WRIT_PUBLIC_URL`` is https, and as short-lived as the session.
- **Rate limits** per client address on login and on invite redemption (``WebSettings``):
  429 ``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import hmac
import math
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from writ.engine.core import reasons
from writ.engine.core.errors import WritError
from writ.engine.web.decisions import Refusal
from writ.engine.web.deps import error_response

__all__ = ["CSP", "CSRF_COOKIE", "CSRF_HEADER", "SESSION_COOKIE", "SecurityHeaders", "WebRefused", "WebSettings",
           "check_post", "csrf_token", "post_guard", "refusal_of", "refused_json", "set_cookie", "status_of"]

CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
CSRF_COOKIE = "writ_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_COOKIE = "writ_session"


@dataclass(frozen=True)
class WebSettings:
    """The approval form's lifetimes and rate limits (defaults for ``writ serve``; tests shorten them)."""

    session_minutes: float = 30.0
    logins_per_minute: int = 10
    invite_redemptions_per_minute: int = 10


# HTTP status of each refusal code the web pages and the plans API give (anything else: 400).
STATUS: dict[str, int] = {
    reasons.LOGIN_REQUIRED: 401, reasons.LOGIN_FAILED: 401,
    reasons.ORIGIN_FORBIDDEN: 403, reasons.ORIGIN_MISSING: 403, reasons.CSRF_TOKEN_MISSING: 403,
    reasons.CSRF_TOKEN_INVALID: 403, reasons.WEB_ROLE_FORBIDDEN: 403, reasons.PRINCIPAL_DISABLED: 403,
    reasons.PRINCIPAL_LOCKED: 403, reasons.PLAN_FORBIDDEN: 403, reasons.SELF_APPROVAL: 403,
    reasons.APPROVER_MISMATCH: 403, reasons.INVITE_ROLE_FORBIDDEN: 403, reasons.NOT_PERMITTED: 403,
    reasons.INVITE_NOT_FOUND: 404, reasons.PLAN_NOT_FOUND: 404, reasons.PRINCIPAL_NOT_FOUND: 404,
    reasons.INVITE_USED: 410, reasons.INVITE_EXPIRED: 410,
    reasons.PLAN_EXPIRED: 409, reasons.PLAN_NOT_PENDING: 409, reasons.PLAN_STATE_CONFLICT: 409,
    reasons.CONTENT_TYPE_UNSUPPORTED: 415, reasons.RATE_LIMITED: 429,
    reasons.WORKFLOW_UNAVAILABLE: 503, reasons.WORKFLOW_MISSING: 503, reasons.WORKFLOW_FAILED: 503,
    reasons.STORE_UNAVAILABLE: 503, reasons.AUDIT_UNAVAILABLE: 503,
}


def status_of(code: str) -> int:
    """The HTTP status a refusal with ``code`` is answered with: approval refusals are 403, others 400."""
    if code in STATUS:
        return STATUS[code]
    return 403 if code.startswith("approval_") else 400


def refusal_of(code: str, message: str, retry_after_s: float | None = None) -> Refusal:
    return Refusal(status_of(code), code, message, logged=False, retry_after_s=retry_after_s)


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response (streaming ones too, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in HEADERS if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def own_origins(request: Request) -> set[str]:
    """The server's own origins: as the request reached it (its Host), and ``WRIT_PUBLIC_URL``'s."""
    found = {_origin_of(f"{request.url.scheme}://{request.headers.get('host', '')}/")}
    found.add(_origin_of(request.app.state.settings.public_url))
    return {o for o in found if o}


def request_origin(request: Request) -> str:
    """The origin the page that sent this request was served from (for statements the browser signs)."""
    return request.headers.get("origin") or (_origin_of(str(request.base_url)) or "")


def check_origin(request: Request) -> Refusal | None:
    """None if the request's ``Origin`` is this server's own; else why it is refused."""
    origin = request.headers.get("origin")
    if origin is None:
        return refusal_of(reasons.ORIGIN_MISSING, "this request has no Origin header: a browser sends one with every "
                          "form and script POST; refused so that no other site can act for you")
    if _origin_of(origin) not in own_origins(request) or origin.lower() == "null":
        return refusal_of(reasons.ORIGIN_FORBIDDEN, f"a page of another origin ({origin[:80]}) may not act on Writ: "
                          "open Writ's own page and send it from there")
    return None


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser: its ``writ_csrf`` cookie, or a new one (set it with ``set_cookie``)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) >= 32 and token.isascii():
        return token
    cached: str | None = getattr(request.state, "new_csrf", None)
    if cached is None:
        cached = request.state.new_csrf = secrets.token_urlsafe(32)
    return cached


def check_post(request: Request, sent: str | None) -> Refusal | None:
    """Origin first, then the CSRF token ``sent`` in the form or header against the cookie; None: go ahead."""
    refusal = check_origin(request)
    if refusal is not None:
        return refusal
    cookie = request.cookies.get(CSRF_COOKIE)
    if not sent:
        return refusal_of(reasons.CSRF_TOKEN_MISSING, "this form was sent without its CSRF token: reload Writ's page "
                          "and send it again")
    if not cookie or not hmac.compare_digest(cookie.encode("utf-8", "replace"), sent.encode("utf-8", "replace")):
        return refusal_of(reasons.CSRF_TOKEN_INVALID, "this form's CSRF token is not this browser's: reload Writ's "
                          "page and send it again")
    return None


class WebRefused(WritError):
    """A request a web check refused before its route ran (a route dependency); the app answers ``refusal``."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message, code=refusal.code)
        self.refusal = refusal


async def post_guard(request: Request) -> None:
    """A route dependency: ``check_post`` with the ``X-CSRF-Token`` header, before the body is even read."""
    refusal = check_post(request, request.headers.get(CSRF_HEADER))
    if refusal is not None:
        raise WebRefused(refusal)


def secure(request: Request) -> bool:
    """Whether cookies get ``Secure``: the request came over TLS, or Writ is published at an https URL."""
    public: str = request.app.state.settings.public_url
    return request.url.scheme == "https" or public.lower().startswith("https://")


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None) -> None:
    """A cookie as every Writ cookie is: HttpOnly, SameSite=Strict, path /, Secure over TLS."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=secure(request))


def with_csrf_cookie(request: Request, response: Response) -> Response:
    """Set the ``writ_csrf`` cookie if ``csrf_token`` made a new one for this request."""
    new: str | None = getattr(request.state, "new_csrf", None)
    if new is not None:
        set_cookie(response, request, CSRF_COOKIE, new, max_age=None)
    return response


def refused_json(refusal: Refusal) -> JSONResponse:
    """A refusal in Writ's one JSON error shape, with ``Retry-After`` when it says when to come back."""
    headers = {"Retry-After": str(math.ceil(refusal.retry_after_s))} if refusal.retry_after_s is not None else None
    return error_response(refusal.status, refusal.code, refusal.message, headers)
