"""Enrolment and login: an invite link gives a browser its key; a signed challenge gives it a session.

    GET  /enrol/{token}       the enrolment page (the invite is looked up, never spent, on GET)
    POST /enrol/{token}       {"public_key", "proof"}: the key becomes the approver's (writ.engine.web.invites)
    GET  /login               the login page: the keys this browser holds, from IndexedDB
    POST /login/challenge     {"principal"}: a challenge to sign (writ.engine.web.sessions)
    POST /login               {"challenge_id", "key_id", "signature"}: the session cookie
    POST /logout              (form) the session ends

The POSTs here are sent by the page's script as JSON with the ``X-CSRF-Token`` header; each
checks the Origin and the token first (``security.check_post``), then the rate limit of the
client address, then the body. Refusals are Writ's JSON error shape with their status.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response

from writ.engine.core import reasons
from writ.engine.core.errors import WritError
from writ.engine.web.context import WebDep, refused_page, render
from writ.engine.web.decisions import RateLimiter, Refusal
from writ.engine.web.security import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    check_post,
    refusal_of,
    refused_json,
    request_origin,
    set_cookie,
)
from writ.plans.trust import PRINCIPAL_PATTERN

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
MAX_BODY = 4096


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _limited(limiter: RateLimiter, key: str, what: str) -> Refusal | None:
    wait = limiter.take(key)
    if wait is None:
        return None
    return refusal_of(reasons.RATE_LIMITED, f"more than {limiter.per_minute} {what} a minute from this address: wait "
                      f"{math.ceil(wait)} s", retry_after_s=wait)


async def _json_body(request: Request, fields: tuple[str, ...]) -> dict[str, str] | Refusal:
    """The JSON object of the request with these string fields (bounded); else the refusal."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        return refusal_of(reasons.CONTENT_TYPE_UNSUPPORTED, "send this as Content-Type: application/json")
    body = await request.body()
    if len(body) > MAX_BODY:
        return refusal_of(reasons.INPUT_TOO_LARGE, f"the body is larger than {MAX_BODY} bytes")
    try:
        doc: Any = json.loads(body)
    except (ValueError, RecursionError):
        return refusal_of(reasons.INPUT_NOT_JSON, "the body is not JSON")
    if not isinstance(doc, dict) or not all(isinstance(doc.get(f), str) for f in fields):
        return refusal_of(reasons.INPUT_INVALID, f"send a JSON object with the strings {', '.join(fields)}")
    return {f: doc[f] for f in fields}


async def _post_guard(request: Request, limiter: RateLimiter, what: str, fields: tuple[str, ...]
                      ) -> dict[str, str] | Refusal:
    """Origin and CSRF token, the address's rate limit, then the body."""
    refusal = check_post(request, request.headers.get(CSRF_HEADER)) or _limited(limiter, _client(request), what)
    if refusal is not None:
        return refusal
    return await _json_body(request, fields)


@router.get("/enrol/{token}")
async def enrol_page(request: Request, web: WebDep, token: str) -> Response:
    refusal = _limited(web.invite_limiter, _client(request), "invite redemptions")
    if refusal is not None:
        return refused_page(request, web, refusal)
    try:
        invite = await run_in_threadpool(web.invites.find, token)
    except WritError as e:
        return refused_page(request, web, refusal_of(e.code, e.message))
    return render(request, web, "enrol.html", invite=invite)


@router.post("/enrol/{token}")
async def enrol(request: Request, web: WebDep, token: str) -> Response:
    body = await _post_guard(request, web.invite_limiter, "invite redemptions", ("public_key", "proof"))
    if isinstance(body, Refusal):
        return refused_json(body)
    try:
        record = await run_in_threadpool(
            lambda: web.invites.enrol(token, body["public_key"], body["proof"], origin=request_origin(request),
                                      user_agent=request.headers.get("user-agent", "")))
    except WritError as e:
        return refused_json(refusal_of(e.code, e.message))
    return JSONResponse({"principal": record.principal, "key_id": record.key_id})


@router.get("/login")
async def login_page(request: Request, web: WebDep) -> Response:
    return render(request, web, "login.html")


@router.post("/login/challenge")
async def login_challenge(request: Request, web: WebDep) -> Response:
    body = await _post_guard(request, web.login_limiter, "login attempts", ("principal",))
    if isinstance(body, Refusal):
        return refused_json(body)
    principal = body["principal"]
    if not re.fullmatch(PRINCIPAL_PATTERN, principal):
        return refused_json(refusal_of(reasons.PRINCIPAL_INVALID, "that is not a principal name"))
    refusal = _limited(web.login_limiter, f"principal:{principal}", "login attempts for this principal")
    if refusal is not None:
        return refused_json(refusal)
    try:
        challenge = await run_in_threadpool(lambda: web.sessions.challenge(principal, origin=request_origin(request)))
    except WritError as e:
        return refused_json(refusal_of(e.code, e.message))
    return JSONResponse({"challenge_id": challenge.id, "payload": base64.b64encode(challenge.payload).decode()})


@router.post("/login")
async def login(request: Request, web: WebDep) -> Response:
    body = await _post_guard(request, web.login_limiter, "login attempts", ("challenge_id", "key_id", "signature"))
    if isinstance(body, Refusal):
        return refused_json(body)
    try:
        session, cookie = await run_in_threadpool(
            lambda: web.sessions.login(body["challenge_id"], body["key_id"], body["signature"],
                                       origin=request_origin(request)))
    except WritError as e:
        return refused_json(refusal_of(e.code, e.message))
    response = JSONResponse({"principal": session.principal, "expires_at": session.expires_at.isoformat(),
                             "next": "/"})
    set_cookie(response, request, SESSION_COOKIE, cookie, max_age=int(web.sessions.lifetime.total_seconds()))
    _rotate_csrf(request, response)
    return response


def _rotate_csrf(request: Request, response: Response) -> None:
    """A new CSRF token at login and logout, so a token seen before cannot be used with the new session."""
    set_cookie(response, request, CSRF_COOKIE, secrets.token_urlsafe(32), max_age=None)


@router.post("/logout")
async def logout(request: Request, web: WebDep, csrf_token: str = Form("")) -> Response:
    refusal = check_post(request, csrf_token)
    if refusal is not None:
        return refused_page(request, web, refusal)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await run_in_threadpool(web.sessions.end, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    _rotate_csrf(request, response)
    return response
