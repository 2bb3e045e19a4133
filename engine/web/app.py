"""Writ's HTTP API (served by ``writ serve``): module-level routes on one ``APIRouter``.

    app = create_app(Settings())          # PolicyLoadError / StoreError if it cannot start
    uvicorn.run(app, host="127.0.0.1", port=8420)

Endpoints:

- ``POST /v1/decisions``: body = a policy input document, for an ``auditor`` or ``admin`` with a
  bearer token, JSON only, rate-limited; answer = the ``Decision``, already in the audit log as
  an ``api_decision`` with its caller (``?dry_run=1``: not logged). See ``writ.engine.web.decisions``.
- ``GET /v1/policy``: the policy revision in force, the engine, and the last reload error.
- ``GET /v1/bundle``: the policy set as an OPA bundle (ETag = revision) for OPA sidecars to pull.
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (the engine decides, the database
  takes entries: ``writ.engine.web.ready``).
- ``/mcp`` (with ``writ serve --config``): the MCP gateway over streamable HTTP, bearer tokens per
  principal (``writ.engine.gateway.http``).
- The approval form for people: ``/``, ``/plans``, ``/plans/{id}`` (``writ.engine.web.pages``),
  ``/enrol/{token}``, ``/login``, ``/logout`` (``writ.engine.web.auth``), and the plans API
  ``/v1/plans`` (``writ.engine.web.api``), with the headers, CSRF and Origin checks of
  ``writ.engine.web.security`` on every response and POST.

What a route needs comes from ``app.state`` (set once by ``create_app``) through ``Annotated``
dependencies (``writ.engine.web.deps``): ``PdpDep`` (the decision point), ``SettingsDep``,
``StoreDep``. Errors have one JSON shape: ``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Route

from writ.engine.core import reasons
from writ.engine.core.db import Database, open_database
from writ.engine.core.errors import WritError
from writ.engine.core.settings import Settings
from writ.engine.gateway.origins import LOCAL_HOSTS
from writ.engine.gateway.tokens import TokenStore
from writ.engine.policy.bundle import bundle_bytes
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.pdp import DecisionPoint
from writ.engine.web import api, auth, decisions, pages, ready
from writ.engine.web.context import STATIC, WebContext
from writ.engine.web.deps import PdpDep, StoreDep, error_response
from writ.engine.web.security import SecurityHeaders, WebRefused, WebSettings, refused_json

if TYPE_CHECKING:
    from writ.engine.gateway.http import HttpGateway
    from writ.engine.wiring.services import Services

__all__ = ["PdpDep", "StoreDep", "create_app", "error_response", "router"]

router = APIRouter()


@router.get("/v1/policy")
def policy_info(pdp: PdpDep) -> dict[str, Any]:
    """The engine, the policy revision in force and, for the embedded engine, the last reload error."""
    engine = pdp.engine
    info: dict[str, Any] = {"engine": engine.name, "revision": engine.revision}
    if isinstance(engine, EmbeddedEngine):
        engine.reload_if_changed()
        info["policy_dir"] = str(engine.policy_dir)
        info["packages"] = engine.policy_set.packages
        err = engine.last_reload_error
        info["last_reload_error"] = err.message if err else None
    return info


@router.get("/v1/bundle")
def bundle(request: Request, pdp: PdpDep) -> Response:
    """The policy set as an OPA bundle; 304 when the client already has this revision."""
    engine = pdp.engine
    if not isinstance(engine, EmbeddedEngine):
        return error_response(404, reasons.NO_BUNDLE, "this Writ uses an OPA sidecar; it serves no bundle")
    engine.reload_if_changed()
    ps = engine.policy_set
    etag = f'"{ps.revision}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(bundle_bytes(ps), media_type="application/gzip", headers={"ETag": etag})


async def writ_error(_: Request, exc: Exception) -> JSONResponse:
    """A ``WritError`` that escaped a route: 400 with its code, in the one error shape."""
    if not isinstance(exc, WritError):  # registered for WritError only
        raise exc
    return error_response(400, exc.code, exc.message)


async def web_refused(_: Request, exc: Exception) -> Response:
    """A web check that refused before a route ran (no session, no CSRF token): its refusal, in the one shape."""
    if not isinstance(exc, WebRefused):  # registered for WebRefused only
        raise exc
    return refused_json(exc.refusal)


async def request_invalid(_: Request, exc: Exception) -> JSONResponse:
    """A request FastAPI could not read into a route's parameters: 400, in the one error shape."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors[:3])
    return error_response(400, reasons.INPUT_INVALID, f"the request is malformed: {where or exc}")


async def http_error(_: Request, exc: Exception) -> JSONResponse:
    """An HTTP error of the router (no such path, a method it does not take), in the one error shape."""
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    code = reasons.NOT_FOUND if status == 404 else reasons.INPUT_INVALID
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else str(exc)
    return error_response(status, code, str(detail), dict(exc.headers or {}) if isinstance(exc, StarletteHTTPException)
                          else None)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs the MCP gateway's session manager while the app serves, when there is a gateway."""
    gateway: HttpGateway | None = app.state.gateway
    try:
        if gateway is None:
            yield
            return
        async with gateway.lifespan():
            yield
    finally:
        if app.state.own_store:
            app.state.store.close()


def create_app(settings: Settings, *, host: str = "127.0.0.1", pdp: DecisionPoint | None = None,
               gateway: HttpGateway | None = None, store: Database | None = None, services: Services | None = None,
               web: WebSettings | None = None) -> FastAPI:
    """The API for ``settings``; with ``gateway``, also the MCP gateway at ``/mcp``.

    ``store`` is the data directory's database (tokens, readiness): the gateway's when there is
    one, else opened here (``store_missing`` if ``writ init`` never ran) and closed with the app.
    ``services``: the stores the approval form uses (wired on ``store`` when not given); ``web``:
    its lifetimes and rate limits. The form's approval client is attached by ``writ serve``
    (``writ.engine.web.context.attach_approvals``) or connected on the first decision.
    """
    app = FastAPI(title="Writ", version="0.1.0", description="Policy decisions for AI agents' tool calls.",
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.pdp = pdp or DecisionPoint.from_settings(settings)
    app.state.gateway = gateway
    app.state.own_store = store is None and gateway is None
    app.state.store = store or (gateway.stores.store if gateway is not None else open_database(settings, create=False))
    app.state.tokens = TokenStore(app.state.store)
    app.state.limiter = decisions.RateLimiter(settings.limits.api_decisions_per_minute)
    app.state.local = host in LOCAL_HOSTS
    if services is None:
        from writ.engine.wiring.services import wire_services

        services = gateway.stores if gateway is not None else wire_services(
            settings, app.state.store, engine=app.state.pdp.engine, audit=app.state.pdp.audit)
    app.state.web = WebContext.build(services, web or WebSettings())
    app.add_middleware(SecurityHeaders)
    if host in LOCAL_HOSTS:
        # Bound to loopback: refuse other Host headers, so a web page cannot reach us by DNS rebinding.
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "testserver"])
    app.add_exception_handler(WritError, writ_error)
    app.add_exception_handler(WebRefused, web_refused)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.include_router(router)
    app.include_router(decisions.router)
    app.include_router(ready.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(auth.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if gateway is not None:
        app.router.routes.append(Route("/mcp", endpoint=gateway))  # an ASGI app: it answers every method
    return app
