"""The upstream MCP servers: one client session each, supervised, with their tools and definition digests.

    manager = UpstreamManager(config)
    async with anyio.create_task_group() as tg:
        await manager.start(tg)                       # every upstream started (or reported down), bounded
        entry = manager.tool("git__git_status")       # UpstreamTool(server="git", digest="sha256:...")
        result = await manager.call(entry, {"repo_path": "/srv/repo"})   # UpstreamUnavailable, UpstreamTimeout
        manager.stop(); tg.cancel_scope.cancel()

An upstream that dies is restarted at most ``max_restarts`` times, after a doubling backoff;
while it is down, and for good once its restarts are spent, its calls fail at once with
``UpstreamUnavailable``. A call to a live upstream waits at most ``call_timeout_s``. Tools are
listed at start, after every restart, on ``notifications/tools/list_changed``, on ``refresh()``
(scheduled) and on ``Upstream.refresh_now()`` (awaited: the gateway's check before a plan step).
What a listing holds, and the definition digests, are in ``writ.engine.gateway.listing``.

Everything else an upstream offers goes through ``Upstream.request`` (same bounds and errors as a
call), and what an upstream sends of its own accord (sampling and elicitation requests, log
messages, resource and prompt notifications) goes to the manager's ``Router``, which decides
which agent session it belongs to (``writ.engine.gateway.routing``). Roots are never offered to an
upstream: what a server may touch is the operator's configuration, not the agent's.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from mcp.client.session import ClientRequestContext, ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import SessionMessage

from writ.engine.core import reasons
from writ.engine.core.errors import WritError
from writ.engine.gateway.config import SEPARATOR, GatewayConfig, GatewayOptions, UpstreamConfig
from writ.engine.gateway.listing import UpstreamTool, all_pages, exposable
from writ.engine.gateway.routing import Relay, Router, SamplingResult
from writ.engine.gateway.streams import WatchedStream

# Logging, resources/subscribe and the like are deprecated as of protocol 2026-07-28, but the
# gateway serves (and talks to upstreams on) the 2025-11-25 handshake, where they are current.
# Scoped to the gateway's own modules; the gateway's entry points (server, http) import this one.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning, module=r"writ\.engine\.gateway(\.|$)")

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
State = Literal["starting", "ready", "restarting", "down"]
Streams = tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]
T = TypeVar("T")


class UpstreamUnavailable(WritError):
    """The upstream server is not running or its connection is gone; the call was not made (or was cut off)."""

    code = reasons.UPSTREAM_UNAVAILABLE


class UpstreamTimeout(WritError):
    """The upstream did not answer within the call timeout; it may or may not have acted."""

    code = reasons.UPSTREAM_TIMEOUT


class Upstream:
    """One upstream server and the task that keeps its client session (``run``).

        upstream = manager.upstreams["git"]
        upstream.state, upstream.problem                  # "ready", None
        changed = await upstream.refresh_now()            # list its tools again, now; True if a digest changed
        result = await upstream.request(lambda s: s.list_prompts())   # bounded by its call timeout
    """

    def __init__(self, name: str, config: UpstreamConfig, options: GatewayOptions,
                 on_tools_changed: Callable[[], Awaitable[None]] | None = None, relay: Relay | None = None) -> None:
        self.name = name
        self.config = config
        self.call_timeout_s = config.call_timeout_s or options.call_timeout_s
        self.start_timeout_s = options.start_timeout_s
        self.max_restarts = options.max_restarts if config.max_restarts is None else config.max_restarts
        self.backoff_s = options.restart_backoff_s
        self.state: State = "starting"
        self.problem: str | None = None
        self.restarts = 0
        self.tools: dict[str, UpstreamTool] = {}
        self._on_tools_changed = on_tools_changed
        self.relay = relay
        self._session: ClientSession | None = None
        self._refresh: MemoryObjectSendStream[None] | None = None
        self._stopping = False

    # --- calls ------------------------------------------------------------------------

    async def call(self, tool: str, args: dict[str, Any],
                   progress: ProgressFnT | None = None) -> types.CallToolResult:
        """Call ``tool``; the upstream's JSON-RPC errors come back as ``MCPError``, unchanged."""
        return await self.request(lambda s: s.call_tool(tool, args, read_timeout_seconds=self.call_timeout_s,
                                                        progress_callback=progress))

    @property
    def capabilities(self) -> types.ServerCapabilities | None:
        """What the upstream declared when it started (None while it is not connected)."""
        session = self._session
        return session.server_capabilities if session is not None else None

    async def request(self, send: Callable[[ClientSession], Awaitable[T]]) -> T:
        """Send one request on the live session, bounded by the call timeout.

        ``UpstreamUnavailable`` when there is no session or it breaks, ``UpstreamTimeout`` when the
        answer does not come in time; the upstream's own JSON-RPC errors are ``MCPError``, unchanged.
        """
        session = self._session
        if session is None:
            raise UpstreamUnavailable(self._down_message())
        try:
            # Belt and braces: the SDK's own timeout starts only once the request is written.
            with anyio.fail_after(self.call_timeout_s + 1.0):
                return await send(session)
        except MCPError as e:
            if e.code == types.CONNECTION_CLOSED:
                raise UpstreamUnavailable(f"the connection to upstream {self.name!r} closed during the call "
                                          "(the server exited?); it may or may not have acted") from None
            if e.code == types.REQUEST_TIMEOUT:
                raise self._timeout() from None
            raise
        except TimeoutError:
            raise self._timeout() from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
            raise UpstreamUnavailable(f"the connection to upstream {self.name!r} failed: {type(e).__name__}") from None

    def _timeout(self) -> UpstreamTimeout:
        return UpstreamTimeout(f"upstream {self.name!r} did not answer within {self.call_timeout_s:g} s; "
                               "it may still act on the call, so check before retrying")

    def _down_message(self) -> str:
        why = f" ({self.problem})" if self.problem else ""
        if self.state == "starting":
            return f"upstream {self.name!r} is still starting; the call was not made"
        if self.state == "restarting":
            return f"upstream {self.name!r} is down{why} and being restarted; the call was not made, retry shortly"
        return (f"upstream {self.name!r} is down{why} and will not be restarted; the call was not made. "
                "Ask the operator to check the server and restart the gateway")

    async def refresh_now(self) -> bool:
        """List the tools now and wait for the answer; True if any definition changed.

        ``UpstreamUnavailable`` when the upstream is not connected or the listing fails: a definition
        that cannot be listed cannot be trusted, so the caller fails closed. (``request_refresh``
        only schedules a listing on the supervising task.)
        """
        session = self._session
        if session is None:
            raise UpstreamUnavailable(f"upstream {self.name!r} is {self.state}: its tool definitions cannot be "
                                      "checked now, so the call was not made")
        try:
            with anyio.fail_after(self.start_timeout_s):
                return await self._list_tools(session)
        except Exception as e:  # noqa: BLE001 - an unlisted definition cannot be trusted: fail closed
            raise UpstreamUnavailable(f"listing the tools of upstream {self.name!r} failed "
                                      f"({describe(e, self.start_timeout_s)}); the call was not made") from None

    def request_refresh(self) -> None:
        """List the tools again soon (on the supervising task)."""
        if self._refresh is not None:
            try:
                self._refresh.send_nowait(None)
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # a refresh is already due, or the session is gone (the next one lists anyway)

    # --- supervision ------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep a session to the upstream; reports ``started`` once the first attempt is ready or failed."""
        reported = False
        backoff = self.backoff_s
        while True:
            try:
                async with self._connect() as (session, closed):
                    with anyio.fail_after(self.start_timeout_s):
                        changed = await self._list_tools(session)
                    self._session, self.state, self.problem = session, "ready", None
                    log.info("upstream %s ready: %d tools", self.name, len(self.tools))
                    if not reported:
                        reported = True
                        task_status.started()
                    elif changed and self._on_tools_changed is not None:  # a restart brought other definitions
                        await self._on_tools_changed()
                    await self._serve(session, closed)
                self.problem = "the server closed the connection"
            except Exception as e:  # noqa: BLE001 - any failure to start or keep the session means "down"
                self.problem = describe(e, self.start_timeout_s)
            finally:
                self._session = None
            if self.restarts >= self.max_restarts or self._stopping:
                self.state = "down"
                log.error("upstream %s is down (%s); not restarting it (%d restarts of %d used)",
                          self.name, self.problem, self.restarts, self.max_restarts)
            else:
                self.state = "restarting"
            if not reported:
                reported = True
                task_status.started()
            if self.state == "down":
                return
            self.restarts += 1
            log.warning("upstream %s is down (%s); restart %d of %d in %.1f s",
                        self.name, self.problem, self.restarts, self.max_restarts, backoff)
            await anyio.sleep(backoff)
            backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF_S)

    async def _serve(self, session: ClientSession, closed: anyio.Event) -> None:
        """Until the connection closes: list the tools whenever a refresh is asked for."""
        send, receive = anyio.create_memory_object_stream[None](1)
        self._refresh = send
        async with anyio.create_task_group() as tg:

            async def refresher() -> None:
                async for _ in receive:
                    try:
                        with anyio.fail_after(self.start_timeout_s):
                            changed = await self._list_tools(session)
                    except Exception as e:  # noqa: BLE001 - a failed refresh keeps the last good list
                        log.warning("upstream %s: listing tools failed: %s", self.name, describe(e, 0))
                        continue
                    if changed and self._on_tools_changed is not None:
                        await self._on_tools_changed()

            tg.start_soon(refresher)
            await closed.wait()
            tg.cancel_scope.cancel()
        self._refresh = None
        send.close()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[tuple[ClientSession, anyio.Event]]:
        """A ready session, and an event set when the upstream's side of the connection ends."""
        closed = anyio.Event()
        async with (
            self._transport() as (read, write),
            ClientSession(WatchedStream(read, closed), write, message_handler=self._on_message,
                          sampling_callback=self._on_sampling, elicitation_callback=self._on_elicitation,
                          logging_callback=self._on_log) as session,
        ):
            with anyio.fail_after(self.start_timeout_s):
                await session.initialize()
            yield session, closed

    def _transport(self) -> AbstractAsyncContextManager[Streams]:
        if self.config.url is not None:
            return streamable_http_client(self.config.url)
        if self.config.command is None:  # load_config guarantees a url or a command
            raise UpstreamUnavailable(f"upstream {self.name!r} has neither a url nor a command")
        params = StdioServerParameters(command=self.config.command, args=self.config.args,
                                       env=self.config.env or None, cwd=self.config.cwd)
        return stdio_client(params)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.request_refresh()
        elif isinstance(message, Exception):
            log.warning("upstream %s sent something unreadable: %s", self.name, describe(message, 0))
        elif isinstance(message, types.LoggingMessageNotification):
            pass  # delivered by _on_log
        elif self.relay is not None:
            await self.relay.notification(self.name, message)

    async def _on_sampling(self, context: ClientRequestContext,
                           params: types.CreateMessageRequestParams) -> SamplingResult | types.ErrorData:
        if self.relay is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message="no agent session to ask")
        return await self.relay.sampling(self.name, params)

    async def _on_elicitation(self, context: ClientRequestContext,
                              params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        if self.relay is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message="no agent session to ask")
        return await self.relay.elicitation(self.name, params)

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        if self.relay is not None:
            await self.relay.log(self.name, params)

    async def _list_tools(self, session: ClientSession) -> bool:
        """Replace ``tools`` with the upstream's current list (every page); True if any definition changed."""
        tools = await all_pages(lambda params: session.list_tools(params=params), lambda page: page.tools)
        listed = exposable(self.name, tools, trust_annotations=self.config.trust_annotations,
                           audit=getattr(self.relay, "audit", None), previous=self.tools)
        changed = {n: t.digest for n, t in listed.items()} != {n: t.digest for n, t in self.tools.items()}
        self.tools = listed
        return changed

    def stop(self) -> None:
        """No more restarts: the gateway is shutting down."""
        self._stopping = True


class UpstreamManager:
    """Every upstream of a config, and the namespaced view of their tools.

        manager = UpstreamManager(config, on_tools_changed=notify_agents, audit=audit_log.append)
        await manager.start(tg)                           # in the caller's task group
        manager.tool("git__git_status")                   # UpstreamTool, or None
        manager.status()                                  # {"git": {"state": "ready", "tools": 12, ...}}
    """

    def __init__(self, config: GatewayConfig, on_tools_changed: Callable[[], Awaitable[None]] | None = None,
                 audit: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.router = Router(audit)  # the agent sessions the upstreams' own messages go to
        self.upstreams = {name: Upstream(name, up, config.gateway, on_tools_changed, self.router)
                          for name, up in config.upstreams.items()}

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Start every upstream in ``tg`` at once; returns when each is ready or has failed its first start."""
        async with anyio.create_task_group() as starting:
            for upstream in self.upstreams.values():
                starting.start_soon(tg.start, upstream.run)

    def tools(self) -> list[UpstreamTool]:
        """Every tool of every upstream, by exposed name. A down upstream keeps its last list (calls fail fast)."""
        out = [t for up in self.upstreams.values() for t in up.tools.values()]
        return sorted(out, key=lambda t: t.exposed_name)

    def tool(self, exposed_name: str) -> UpstreamTool | None:
        """The tool exposed as ``exposed_name`` (``<server>__<tool>``), as its upstream last listed it."""
        server, sep, name = exposed_name.partition(SEPARATOR)
        upstream = self.upstreams.get(server)
        return upstream.tools.get(name) if sep and upstream else None

    def upstream_of(self, exposed_name: str) -> Upstream | None:
        """The upstream an exposed name belongs to by its prefix (even if that upstream never listed tools)."""
        server, sep, _ = exposed_name.partition(SEPARATOR)
        return self.upstreams.get(server) if sep else None

    async def call(self, entry: UpstreamTool, args: dict[str, Any],
                   progress: ProgressFnT | None = None) -> types.CallToolResult:
        """Call ``entry`` on its upstream (``Upstream.call``)."""
        return await self.upstreams[entry.server].call(entry.tool.name, args, progress)

    async def unsubscribe(self, server: str, uri: str) -> None:
        """Stop ``server``'s updates of ``uri`` (nobody is subscribed any more); a failure is only logged."""
        upstream = self.upstreams.get(server)
        if upstream is None or upstream.capabilities is None:
            return
        try:
            await upstream.request(lambda s: s.unsubscribe_resource(uri))
        except (WritError, MCPError) as e:
            log.info("upstream %s: resources/unsubscribe %s failed: %s", server, uri, describe(e, 0))

    def ready(self, capability: str) -> list[Upstream]:
        """The connected upstreams that declared ``capability`` (``resources``, ``prompts``, ``logging``, ...)."""
        out = []
        for upstream in self.upstreams.values():
            caps = upstream.capabilities
            if caps is not None and getattr(caps, capability, None) is not None:
                out.append(upstream)
        return out

    def refresh(self, server: str | None = None) -> None:
        """Ask one upstream (or all) to list their tools again."""
        for name, upstream in self.upstreams.items():
            if server is None or name == server:
                upstream.request_refresh()

    def status(self) -> dict[str, dict[str, Any]]:
        """Each upstream's state, tool count, restarts and problem (for the audit log and operators)."""
        return {name: {"state": up.state, "tools": len(up.tools), "restarts": up.restarts, "problem": up.problem}
                for name, up in self.upstreams.items()}

    def stop(self) -> None:
        """No more restarts of any upstream: the gateway is shutting down."""
        for upstream in self.upstreams.values():
            upstream.stop()


def describe(e: BaseException, timeout_s: float) -> str:
    """One line for a failure to start or talk to an upstream."""
    if isinstance(e, BaseExceptionGroup) and e.exceptions:
        return describe(e.exceptions[0], timeout_s)
    if isinstance(e, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(e, FileNotFoundError):
        return f"command not found: {e.filename or e}"
    if isinstance(e, MCPError):
        return f"MCP error {e.code}: {e.message}"
    if isinstance(e, WritError):
        return e.message
    text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
