"""What the HTTP routes share: Writ's one JSON error shape and the ``Annotated`` dependencies of ``app.state``.

    @router.get("/v1/policy")
    def policy_info(pdp: PdpDep) -> dict[str, Any]: ...
    return error_response(415, reasons.CONTENT_TYPE_UNSUPPORTED, "send Content-Type: application/json")

``create_app`` sets ``app.state`` once: ``settings``, ``pdp`` (the decision point), ``store`` (the
database of the data directory), ``tokens`` (``TokenStore``) and ``limiter`` (``RateLimiter``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from writ.engine.core.db import Database
from writ.engine.core.settings import Settings
from writ.engine.policy.pdp import DecisionPoint


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Writ's one JSON error shape: ``{"error": {"code": ..., "message": ...}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _pdp(request: Request) -> DecisionPoint:
    pdp: DecisionPoint = request.app.state.pdp
    return pdp


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _store(request: Request) -> Database:
    store: Database = request.app.state.store
    return store


PdpDep = Annotated[DecisionPoint, Depends(_pdp)]
SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Database, Depends(_store)]
