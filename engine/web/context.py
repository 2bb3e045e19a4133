"""What the approval form's routes share: the stores, the approval workflows' client, limits, and templates.

    web = WebContext.build(services, WebSettings())       # create_app does this: app.state.web
    attach_approvals(app, ApprovalClient(client, settings, audit=services.audit))   # writ serve's own client
    viewer = await current_viewer(request, web)           # Viewer, or the Refusal to render

The approval client is the one ``writ serve`` made for its worker when it attaches one;
otherwise the first decision connects one in the serving event loop (``WorkflowUnavailable``
if Temporal cannot be reached: nothing is counted).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import jinja2
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from writ.engine.core import reasons
from writ.engine.core.errors import NotFoundError
from writ.engine.core.timeutil import iso
from writ.engine.web.decisions import RateLimiter, Refusal
from writ.engine.web.invites import InviteStore
from writ.engine.web.security import (
    SESSION_COOKIE,
    WebRefused,
    WebSettings,
    csrf_token,
    refusal_of,
    with_csrf_cookie,
)
from writ.engine.web.sessions import SessionStore
from writ.engine.web.views import Viewer
from writ.engine.wiring.services import Services
from writ.workflows.approval.client import ApprovalClient

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ViewerDep", "WebContext", "WebDep", "attach_approvals", "current_viewer", "render"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


def _environment() -> jinja2.Environment:
    """Jinja2 with autoescape on for every template: text from a plan is always text."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["iso"] = iso
    return env


@dataclass
class WebContext:
    """The approval form's shared parts (``app.state.web``)."""

    services: Services
    invites: InviteStore
    sessions: SessionStore
    config: WebSettings
    login_limiter: RateLimiter
    invite_limiter: RateLimiter
    env: jinja2.Environment
    approvals: ApprovalClient | None = None
    _connecting: asyncio.Lock | None = field(default=None, repr=False)

    @classmethod
    def build(cls, services: Services, config: WebSettings) -> WebContext:
        return cls(services=services, invites=InviteStore(services.store, services.trust, audit=services.audit),
                   sessions=SessionStore(services.store, services.trust, audit=services.audit,
                                         lifetime=timedelta(minutes=config.session_minutes)),
                   config=config, login_limiter=RateLimiter(config.logins_per_minute),
                   invite_limiter=RateLimiter(config.invite_redemptions_per_minute), env=_environment())

    async def approval_client(self) -> ApprovalClient:
        """The client of the approval workflows, connected on first use (``WorkflowUnavailable`` if it cannot)."""
        if self.approvals is None:
            if self._connecting is None:
                self._connecting = asyncio.Lock()
            async with self._connecting:
                if self.approvals is None:
                    self.approvals = await ApprovalClient.connect(self.services.settings, audit=self.services.audit)
        return self.approvals


def attach_approvals(app: FastAPI, approvals: ApprovalClient) -> None:
    """Give the form the approval client ``writ serve`` already holds (one Temporal connection per process)."""
    app.state.web.approvals = approvals


def _web(request: Request) -> WebContext:
    web: WebContext = request.app.state.web
    return web


WebDep = Annotated[WebContext, Depends(_web)]


def _viewer(web: WebContext, token: str) -> Viewer | Refusal:
    session = web.sessions.current(token)
    if session is None:
        return refusal_of(reasons.LOGIN_REQUIRED, "your session ended or you have not logged in: log in with the key "
                          "this browser enrolled")
    trust = web.services.trust
    try:
        principal = trust.principal(session.principal)
    except NotFoundError:
        return refusal_of(reasons.LOGIN_REQUIRED, "your session's principal no longer exists")
    refusal = trust.principal_state(principal.name).refusal()
    if refusal is not None:
        return refusal_of(*refusal)
    if principal.role != "approver":
        return refusal_of(reasons.WEB_ROLE_FORBIDDEN, f"{principal.name} is not an approver")
    return Viewer(principal, session)


async def current_viewer(request: Request, web: WebContext) -> Viewer | Refusal:
    """The logged-in approver of this request, checked now (disabled or locked principals are refused)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return refusal_of(reasons.LOGIN_REQUIRED, "log in first, with the key this browser enrolled")
    return await run_in_threadpool(_viewer, web, token)


async def _required_viewer(request: Request) -> Viewer:
    viewer = await current_viewer(request, _web(request))
    if isinstance(viewer, Refusal):
        raise WebRefused(viewer)
    return viewer


ViewerDep = Annotated[Viewer, Depends(_required_viewer)]
"""The logged-in approver, for the API: refused (``WebRefused``, answered in JSON) before the body is read."""


def render(request: Request, web: WebContext, template: str, *, status: int = 200, viewer: Viewer | None = None,
           **context: Any) -> HTMLResponse:
    """A page from ``templates/``, with this browser's CSRF token (its cookie set if new)."""
    html = web.env.get_template(template).render(csrf=csrf_token(request), viewer=viewer, **context)
    return with_csrf_cookie(request, HTMLResponse(html, status_code=status))  # type: ignore[return-value]


def refused_page(request: Request, web: WebContext, refusal: Refusal, viewer: Viewer | None = None) -> HTMLResponse:
    """A refusal as a page: its status, its code and the reason, like datasette's CSRF page."""
    response = render(request, web, "refused.html", status=refusal.status, viewer=viewer, refusal=refusal)
    if refusal.retry_after_s is not None:
        response.headers["Retry-After"] = str(max(1, round(refusal.retry_after_s)))
    return response
