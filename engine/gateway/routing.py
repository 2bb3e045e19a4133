"""Which agent session an upstream's own messages belong to (ADR 0011): sampling, elicitation, logs, updates.

    router = Router(audit)                     # one per gateway process, shared by its sessions
    with router.exchange("git", gateway, session, request_id):
        await upstream.call(...)               # meanwhile git's own requests go to this session
    router.target("git")                       # Exchange(gateway, session, request_id) or Nowhere(code, why)

On stdio there is one agent session and every message goes to it. Over HTTP the upstreams are
shared by all sessions, and an upstream's request says nothing about which call it belongs to
(stdio has no such field on the wire). The ``Router`` therefore sends it to the session with a
request in flight on that upstream, or, with none in flight, to the only session there is. When
two sessions have requests in flight on that upstream (or there are several sessions and none
has), the message is not delivered to anyone: a sampling request is refused with an error to
the upstream, a log message stays in the process log. A message meant for one principal is
never shown to another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import mcp_types as types

from writ.engine.core import reasons
from writ.engine.gateway.names import expose_uri

if TYPE_CHECKING:
    from mcp.server.session import ServerSession

    from writ.engine.gateway.server import Gateway

log = logging.getLogger(__name__)
SamplingResult = types.CreateMessageResult | types.CreateMessageResultWithTools


class Relay(Protocol):
    """Where an upstream's own requests and notifications go: the ``Router`` of the gateway's sessions.

        Upstream("git", config, options, relay=router)    # git's sampling requests go to router.sampling
    """

    async def sampling(self, server: str, params: types.CreateMessageRequestParams) -> SamplingResult | types.ErrorData:
        """``sampling/createMessage`` of ``server``: the agent's answer, or an error for the upstream."""
        ...

    async def elicitation(self, server: str, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        """``elicitation/create`` of ``server``: the agent's answer, or an error for the upstream."""
        ...

    async def log(self, server: str, params: types.LoggingMessageNotificationParams) -> None:
        """A log message of ``server``."""
        ...

    async def notification(self, server: str, message: types.ServerNotification) -> None:
        """Any other notification of ``server`` (resource updates, list changes)."""
        ...


@dataclass(frozen=True, eq=False)
class Exchange:
    """An agent's request being served by an upstream: where that upstream's own messages go meanwhile.

        target = router.target("git")     # an Exchange: answer on target.session, tied to target.request_id
    """

    gateway: Gateway
    session: ServerSession | None
    request_id: Any  # the agent's JSON-RPC request id: HTTP replies travel on that request's stream


@dataclass(frozen=True)
class Nowhere:
    """Why an upstream's message goes to no session: ``session_ambiguous`` or ``no_session``."""

    code: str
    message: str


class Router:
    """The agent sessions of one gateway process, what each has in flight, and what each subscribed to.

        router.attach(gateway)                          # a session started
        first = router.subscribe("fs", uri, gateway)    # True: forward resources/subscribe upstream
        orphaned = router.detach(gateway)               # it ended: [(server, uri)] nobody holds any more

    ``audit(kind, payload)`` records the upstream requests it refuses.
    """

    def __init__(self, audit: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.audit = audit
        self.gateways: list[Gateway] = []
        self._inflight: dict[str, list[Exchange]] = {}
        self.subscriptions: dict[tuple[str, str], list[Gateway]] = {}

    def attach(self, gateway: Gateway) -> None:
        """A session started: upstream messages may go to it."""
        if gateway not in self.gateways:
            self.gateways.append(gateway)

    def detach(self, gateway: Gateway) -> list[tuple[str, str]]:
        """Forget a session; returns the ``(server, uri)`` subscriptions nobody holds any more."""
        if gateway in self.gateways:
            self.gateways.remove(gateway)
        # Its requests still in flight leave ``_inflight`` themselves, when ``exchange`` exits.
        orphaned = []
        for key, holders in list(self.subscriptions.items()):
            if gateway in holders:
                holders.remove(gateway)
                if not holders:
                    del self.subscriptions[key]
                    orphaned.append(key)
        return orphaned

    @contextmanager
    def exchange(self, server: str, gateway: Gateway, session: ServerSession | None,
                 request_id: Any) -> Iterator[None]:
        """While the block runs, ``server``'s own messages may belong to this request."""
        x = Exchange(gateway, session, request_id)
        self._inflight.setdefault(server, []).append(x)
        try:
            yield
        finally:
            self._inflight[server].remove(x)

    def target(self, server: str) -> Exchange | Nowhere:
        """Where a message of ``server`` goes, or why it goes nowhere."""
        inflight = self._inflight.get(server, [])
        owners = {id(x.gateway) for x in inflight}
        if len(owners) == 1:
            return inflight[-1]
        if len(owners) > 1:
            return Nowhere(reasons.SESSION_AMBIGUOUS, f"{len(owners)} agent sessions have requests in flight on "
                           f"upstream {server!r}, so Writ cannot tell which one this is for")
        if len(self.gateways) == 1:
            only = self.gateways[0]
            return Exchange(only, only.client, None)
        if not self.gateways:
            return Nowhere(reasons.NO_SESSION, "no agent session is connected")
        return Nowhere(reasons.SESSION_AMBIGUOUS, f"{len(self.gateways)} agent sessions are connected and none has a "
                       f"request in flight on upstream {server!r}, so Writ cannot tell which one this is for")

    def subscribe(self, server: str, uri: str, gateway: Gateway) -> bool:
        """Record a subscription; True when it is the first for this resource (forward it upstream)."""
        holders = self.subscriptions.setdefault((server, uri), [])
        first = not holders
        if gateway not in holders:
            holders.append(gateway)
        return first

    def unsubscribe(self, server: str, uri: str, gateway: Gateway) -> bool:
        """Drop a subscription; True when nobody holds this resource any more (forward it upstream)."""
        holders = self.subscriptions.get((server, uri))
        if not holders or gateway not in holders:
            return False
        holders.remove(gateway)
        if holders:
            return False
        del self.subscriptions[(server, uri)]
        return True

    def subscribers(self, server: str, uri: str) -> list[Gateway]:
        """The sessions subscribed to ``uri`` of ``server``."""
        return list(self.subscriptions.get((server, uri), []))

    # --- what the upstreams send of their own accord (``Relay``) ------------------------------------

    async def sampling(self, server: str, params: types.CreateMessageRequestParams) -> SamplingResult | types.ErrorData:
        """An upstream asks for an LLM completion: put to the session it belongs to, or refused."""
        target = self.target(server)
        if isinstance(target, Nowhere):
            return self.refuse(server, "sampling/createMessage", target.code, target.message)
        answer = await target.gateway.passthrough.ask(server, "sampling/createMessage", params, target)
        return cast("SamplingResult | types.ErrorData", answer)

    async def elicitation(self, server: str, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        """An upstream asks the user for input: put to the session it belongs to, or refused."""
        target = self.target(server)
        if isinstance(target, Nowhere):
            return self.refuse(server, "elicitation/create", target.code, target.message)
        answer = await target.gateway.passthrough.ask(server, "elicitation/create", params, target)
        return cast("types.ElicitResult | types.ErrorData", answer)

    async def log(self, server: str, params: types.LoggingMessageNotificationParams) -> None:
        """An upstream's log message: to the session it belongs to, else only to the process log."""
        target = self.target(server)
        if isinstance(target, Nowhere):
            log.info("upstream %s log message (%s) not relayed: %s", server, params.level, target.message)
            return
        await target.gateway.passthrough.relay_log(server, params, target)

    async def notification(self, server: str, message: types.ServerNotification) -> None:
        """Resource updates to their subscribers; list changes of resources and prompts to every session."""
        if isinstance(message, types.ResourceUpdatedNotification):
            for gateway in self.subscribers(server, message.params.uri):
                await gateway.notify(lambda s: s.send_resource_updated(expose_uri(server, message.params.uri)))
        elif isinstance(message, types.ResourceListChangedNotification):
            for gateway in list(self.gateways):
                await gateway.notify(lambda s: s.send_resource_list_changed())
        elif isinstance(message, types.PromptListChangedNotification):
            for gateway in list(self.gateways):
                await gateway.notify(lambda s: s.send_prompt_list_changed())
        # Progress arrives through the request's own callback; anything else is not relayed.

    def refuse(self, server: str, method: str, code: str, why: str, **where: Any) -> types.ErrorData:
        """An upstream's request that reaches no agent: logged, audited, answered with its reason code."""
        log.warning("upstream %s: %s refused (%s): %s", server, method, code, why)
        if self.audit is not None:
            self.audit("upstream_request_refused", {"server": server, "method": method, "code": code,
                                                    "message": why, **where})
        return types.ErrorData(code=types.INVALID_REQUEST,
                               message=f"refused [{code}]: Writ did not pass {method} on to an agent: {why}")
