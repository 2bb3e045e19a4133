"""Writ's HTTP API (served by ``writ serve``): module-level routes on one ``APIRouter``.

    app = create_app(Settings())          # PolicyLoadError / StoreError if it cannot start
    uvicorn.run(app, host="127.0.0.1", port=8420)

Endpoints:

- ``POST /v1/decisions``: body = a policy input document; answer = the ``Decision``, already in
  the audit log. Malformed, oversized or too deep input is a logged deny, not a 500.
- ``GET /v1/policy``: the policy revision in force, the engine, and the last reload error.
- ``GET /v1/bundle``: the policy set as an OPA bundle (ETag = revision) for OPA sidecars to pull.
- ``GET /healthz``.
- ``/mcp`` (with ``writ serve --config``): the MCP gateway over streamable HTTP, bearer tokens per
  principal (``writ.engine.gateway.http``).

What a route needs comes from ``app.state`` (set once by ``create_app``) through ``Annotated``
dependencies: ``PdpDep`` (the decision point), ``SettingsDep``. Errors have one JSON shape:
``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Route

from writ.engine.core import reasons
from writ.engine.core.bounds import check_size
from writ.engine.core.errors import InputError, WritError
from writ.engine.core.settings import Settings
from writ.engine.policy.bundle import bundle_bytes
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.pdp import DecisionPoint

if TYPE_CHECKING:
    from writ.engine.gateway.http import HttpGateway

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """Writ's one JSON error shape."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _pdp(request: Request) -> DecisionPoint:
    pdp: DecisionPoint = request.app.state.pdp
    return pdp


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PdpDep = Annotated[DecisionPoint, Depends(_pdp)]
SettingsDep = Annotated[Settings, Depends(_settings)]

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.post("/v1/decisions")
async def decide(request: Request, pdp: PdpDep, settings: SettingsDep) -> Response:
    """Decide one policy input; a body too large or not JSON is a logged deny with its reason."""
    declared = request.headers.get("content-length")
    body = b""
    try:
        if declared is not None and declared.isdigit():
            check_size(int(declared), settings.limits)
        async for chunk in request.stream():
            body += chunk
            check_size(len(body), settings.limits)
        # Off the event loop: the audit append may wait on a database lock.
        decision = await run_in_threadpool(pdp.decide_json, body)
    except InputError as e:
        decision = await run_in_threadpool(pdp.refuse_input, e)
    return Response(decision.model_dump_json(), media_type="application/json")


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


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs the MCP gateway's session manager while the app serves, when there is a gateway."""
    gateway: HttpGateway | None = app.state.gateway
    if gateway is None:
        yield
        return
    async with gateway.lifespan():
        yield


def create_app(settings: Settings, *, host: str = "127.0.0.1", pdp: DecisionPoint | None = None,
               gateway: HttpGateway | None = None) -> FastAPI:
    """The API for ``settings``; with ``gateway``, also the MCP gateway at ``/mcp``."""
    app = FastAPI(title="Writ", version="0.1.0", description="Policy decisions for AI agents' tool calls.",
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.pdp = pdp or DecisionPoint.from_settings(settings)
    app.state.gateway = gateway
    if host in LOCAL_HOSTS:
        # Bound to loopback: refuse other Host headers, so a web page cannot reach us by DNS rebinding.
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "testserver"])
    app.add_exception_handler(WritError, writ_error)
    app.include_router(router)
    if gateway is not None:
        app.router.routes.append(Route("/mcp", endpoint=gateway))  # an ASGI app: it answers every method
    return app
