"""The gateway over streamable HTTP: ``/mcp`` of ``writ serve --config writ.toml``.

    gateway = HttpGateway(pdp, config, stores, TokenStore(store))
    app = create_app(settings, pdp=pdp, gateway=gateway)     # mounts /mcp, runs gateway.lifespan

Every request carries ``Authorization: Bearer <token>`` (``writ tokens new``): no token, an unknown
or a revoked one is 401 (a live token is looked up at most once per ``WRIT_LIMITS__TOKEN_CACHE_S``,
so a revoked one stops within that bound); an ``Origin`` that is not local (when bound to loopback)
is 403. The token names the principal; an MCP session belongs to the principal that opened it
(another token on that session is 403); a disabled principal's token is 403
(``principal_disabled``), at once: its state is read on every request. A locked principal's
sessions are refused call by call (``principal_locked``, see ``sessions``). Each MCP session gets
its own ``Gateway`` (its principal, its session lock, its bound plan); the upstream servers are
started once and shared by all sessions. A session ends when the client deletes it or after
``gateway.session_idle_timeout_s`` without a request; either way it is forgotten and a
``session_ended`` audit entry written. The agent's token stops here: the ``Authorization`` header
is removed before the MCP layer sees the request, and upstreams are called with the gateway's own
configuration only.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from writ.engine.core import reasons
from writ.engine.core.errors import WritError
from writ.engine.gateway.approvals import ApprovalLink
from writ.engine.gateway.config import GatewayConfig
from writ.engine.gateway.governance import resolve_principal
from writ.engine.gateway.origins import LOCAL_HOSTS, bearer_token, local_origin
from writ.engine.gateway.results import audit_or_log
from writ.engine.gateway.server import Gateway, build_server
from writ.engine.gateway.sessions import STATE_KEY
from writ.engine.gateway.tokens import TokenCache, TokenHolder, TokenStore
from writ.engine.gateway.upstream import UpstreamManager
from writ.engine.policy.pdp import DecisionPoint
from writ.engine.wiring.services import Services
from writ.plans.principal_status import PrincipalState

log = logging.getLogger(__name__)

SESSION_HEADER = "mcp-session-id"
PRINCIPAL_KEY = "writ_principal"


class HttpGateway:
    """One per process: the shared upstreams, the MCP session manager, one ``Gateway`` per MCP session.

        gateway = HttpGateway(pdp, config, stores, TokenStore(db), host="127.0.0.1")
        async with gateway.lifespan():               # upstreams started, sessions served
            await gateway(scope, receive, send)      # an ASGI app: mount it at /mcp
    """

    def __init__(self, pdp: DecisionPoint, config: GatewayConfig, stores: Services, tokens: TokenStore, *,
                 host: str = "127.0.0.1", key_file: Path | None = None) -> None:
        self.pdp = pdp
        self.config = config
        self.stores = stores
        self.tokens = TokenCache(tokens, ttl_s=stores.settings.limits.token_cache_s)
        self.key_file = key_file
        self.local = host in LOCAL_HOSTS
        self.upstreams = UpstreamManager(config, on_tools_changed=self._tools_changed, audit=self._audit)
        self.approvals = ApprovalLink(stores)  # one Temporal client for every session
        self.sessions: dict[str, Gateway] = {}  # MCP session id -> its gateway
        self._owners: dict[str, str] = {}  # MCP session id -> the principal that opened it
        self._reported: set[str] = set()  # tokens of disabled principals already refused in the audit log
        self.server = build_server(self._gateway)
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        ) if self.local else TransportSecuritySettings(enable_dns_rebinding_protection=False)
        self.manager = _SessionManager(app=self.server, security_settings=security,
                                       session_idle_timeout=config.gateway.session_idle_timeout_s,
                                       on_discard=self._session_closed)

    # --- lifecycle -------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Start the upstreams and the session manager; stop both on the way out."""
        async with anyio.create_task_group() as tg:
            await self.upstreams.start(tg)
            self._audit("gateway_started", {"transport": "http", "upstreams": self.upstreams.status(),
                                            "tools": {t.exposed_name: t.digest for t in self.upstreams.tools()}})
            try:
                async with self.manager.run():
                    yield
            finally:
                for key in list(self.sessions):
                    self._end(key)
                self.upstreams.stop()
                tg.cancel_scope.cancel()

    # --- HTTP: who is calling ----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app of ``/mcp``: origin, token and session owner checked, then the SDK's session manager."""
        if scope["type"] != "http":
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and self.local and not local_origin(origin):
            return await _refuse(send, 403, reasons.ORIGIN_FORBIDDEN, "requests from another origin are refused")
        token = bearer_token(headers.get("authorization"))
        if token is None:
            return await _refuse(send, 401, reasons.TOKEN_MISSING,
                                 "send Authorization: Bearer <token> (writ tokens new --principal NAME)")
        try:
            holder, state = await self._holder(token)
        except WritError as e:
            log.error("token lookup failed: %s", e.message)
            return await _refuse(send, 503, e.code, "the token could not be checked")
        if holder is None:
            return await _refuse(send, 401, reasons.TOKEN_INVALID, "the token is unknown or revoked")
        principal = holder.principal
        if holder.disabled:
            if holder.token_id not in self._reported:  # once per token and process: no log flood from a dead token
                self._reported.add(holder.token_id)
                self._audit("http_refused", {"path": "/mcp", "principal": principal, "token_id": holder.token_id,
                                             "code": reasons.PRINCIPAL_DISABLED, "status": 403})
            return await _refuse(send, 403, reasons.PRINCIPAL_DISABLED,
                                 f"principal {principal!r} is disabled: its tokens no longer work")
        session_id = headers.get(SESSION_HEADER)
        owner = self._owners.get(session_id) if session_id else None
        if owner is not None and owner != principal:
            return await _refuse(send, 403, reasons.SESSION_FORBIDDEN, "this MCP session belongs to another principal")
        # The agent's credential goes no further than this check.
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]}
        scope["state"] = {**scope.get("state", {}), PRINCIPAL_KEY: principal, STATE_KEY: state}

        async def send_noting_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                for k, v in message.get("headers", []):
                    if k.lower() == SESSION_HEADER.encode():
                        self._owners.setdefault(v.decode("latin-1"), principal)
            await send(message)

        await self.manager.handle_request(scope, receive, send_noting_session)

    async def _holder(self, token: str) -> tuple[TokenHolder | None, PrincipalState | None]:
        """Who ``token`` acts for, with its principal's locked and disabled state as of now.

        The token is looked up at most once per ``token_cache_s`` (``TokenCache``); when it comes from
        the cache, the principal's state is read again (one primary-key read) and returned too: the
        call this request carries is decided on it (``sessions.request_state``), not on another read.
        """
        cached = self.tokens.cached(token)
        if cached is None:
            since = self.tokens.now()
            holder = await run_in_threadpool(self.tokens.tokens.holder, token)
            self.tokens.remember(token, holder, since)
            return holder, None
        state = self.stores.trust.principal_state(cached.principal)  # a disable stops the token at once
        return replace(cached, locked=state.locked, disabled=state.disabled), state

    async def _session_closed(self, key: str) -> None:
        """The session manager discarded a session (DELETE, idle timeout, or a crash)."""
        for server, uri in self._end(key):
            await self.upstreams.unsubscribe(server, uri)

    def _end(self, key: str) -> list[tuple[str, str]]:
        self._owners.pop(key, None)
        gateway = self.sessions.pop(key, None)
        if gateway is None:
            return []
        orphaned = gateway.end_session()
        self._audit("session_ended", {"session_id": gateway.session.id, "transport": "http",
                                      "principal": gateway.principal.name})
        return orphaned

    # --- MCP: one Gateway per session ---------------------------------------------------------

    def _gateway(self, ctx: ServerRequestContext[Any, Any]) -> Gateway:
        request = ctx.request
        principal = getattr(getattr(request, "state", None), PRINCIPAL_KEY, None)
        if principal is None:  # never without the checks of __call__
            raise MCPError(types.INVALID_REQUEST, "unauthenticated request")
        key = getattr(request, "headers", {}).get(SESSION_HEADER)
        if not key:
            # A sessionless request (protocol 2026-07-28) would get a fresh gateway every time, so a
            # session lock or a bound plan would not hold: refused, fail closed.
            raise MCPError(types.INVALID_REQUEST, "Writ's gateway needs an MCP session (Mcp-Session-Id): "
                           "connect with protocol version 2025-11-25 or older")
        gateway = self.sessions.get(key)
        if gateway is None:
            try:
                who = resolve_principal(self.stores.trust, principal)
            except WritError as e:
                raise MCPError(types.INVALID_REQUEST, f"{e.code}: {e.message}") from None
            gateway = Gateway(self.pdp, self.config, who, self.stores, key_file=self.key_file,
                              upstreams=self.upstreams, session_id=f"s-{uuid.uuid4().hex}", transport="http",
                              approvals=self.approvals)
            self.sessions[key] = gateway
            gateway.guard.started()
            self._audit("session_started", {"session_id": gateway.session.id, "transport": "http",
                                            "principal": who.name, "role": who.role, "groups": list(who.groups)})
        elif gateway.principal.name != principal:
            raise MCPError(types.INVALID_REQUEST, "this MCP session belongs to another principal")
        return gateway

    async def _tools_changed(self) -> None:
        """An upstream's tools changed: every session audits the new digests and tells its client."""
        for gateway in list(self.sessions.values()):
            await gateway.tools_changed()

    def _audit(self, kind: str, payload: dict[str, Any]) -> None:
        audit_or_log(self.pdp.audit, kind, payload)


class _SessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, telling us when it lets a session go, however it ended."""

    def __init__(self, *args: Any, on_discard: Callable[[str], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_discard = on_discard

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        # The SDK's one place where a session ends (DELETE, idle timeout, crash); private, so
        # tests/test_gateway_http.py checks that both a DELETE and an idle timeout still get here.
        await super()._discard_session(session_id, transport)
        with anyio.CancelScope(shield=True):
            try:
                await self._on_discard(session_id)
            except Exception:
                log.exception("ending session %s failed", session_id)


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="writ"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
