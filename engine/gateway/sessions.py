"""Agent sessions of every gateway process, and the principal lock each of them checks before a call.

    guard = PrincipalGuard(stores, principal, session_id="s-1f0c", transport="stdio")
    guard.started()                      # a row in gateway_sessions (writ sessions list)
    guard.refusal()                      # None, or ('principal_locked', '...') / ('principal_disabled', '...')
    guard.lock(decision)                 # a decision obliged lock_session: the principal is locked, audited
    guard.ended()
    SessionRegistry(db).list()           # open sessions, newest first

A lock belongs to the principal (``writ.plans.principal_status``): the session that violated
policy, every other session of that principal in any gateway process, and any session started
later are refused until an operator runs ``writ principals unlock``. The check is one
primary-key read per call (over HTTP, the read made when the request arrived, ``request_state``,
unless a session of this process locked the principal since); when the database cannot answer,
the call is refused (fail closed).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Literal

from sqlmodel import col, select

from writ.engine.core.db import Database, db_errors
from writ.engine.core.errors import WritError
from writ.engine.core.tables import GatewaySessionRow
from writ.engine.core.timeutil import db_time, from_db_time, iso, utc_now
from writ.engine.gateway.config import Principal
from writ.engine.policy.models import Decision
from writ.engine.wiring.services import Services
from writ.plans.principal_status import PrincipalState

log = logging.getLogger(__name__)

Transport = Literal["stdio", "http"]
STATE_KEY = "writ_principal_state"  # request.state: the principal's state read when an HTTP request arrived

# Principals a session of this process locked: their state is never taken from a request's earlier read.
_LOCKED_HERE: set[str] = set()


def request_state(ctx: object) -> PrincipalState | None:
    """The principal's state the HTTP gateway read when ``ctx``'s request arrived (None: not read, or stdio)."""
    found = getattr(getattr(getattr(ctx, "request", None), "state", None), STATE_KEY, None)
    return found if isinstance(found, PrincipalState) else None


def this_process() -> str:
    """``host:pid`` of this process, as a session row names it."""
    return f"{socket.gethostname()}:{os.getpid()}"[:160]


@dataclass(frozen=True)
class SessionRecord:
    """One agent session as ``writ sessions list`` shows it (times RFC 3339; ``ended_at`` None: open).

        SessionRecord(id="s-1f0c...", principal="exec-bot", transport="http", process="host:4242",
                      started_at="2026-...Z", ended_at=None, locked_at=None)
    """

    id: str
    principal: str
    transport: str
    process: str
    started_at: str
    ended_at: str | None
    locked_at: str | None


def _record(row: GatewaySessionRow) -> SessionRecord:
    def shown(text: str | None) -> str | None:
        return iso(from_db_time(text)) if text else None

    return SessionRecord(row.id, row.principal, row.transport, row.process, iso(from_db_time(row.started_at)),
                         shown(row.ended_at), shown(row.locked_at))


class SessionRegistry:
    """The ``gateway_sessions`` rows: a session started, locked, ended; the list an operator reads.

        registry = SessionRegistry(db)
        registry.start("s-1f0c", "exec-bot", "stdio")
        registry.list(include_ended=True)
    """

    def __init__(self, store: Database) -> None:
        self._store = store

    def start(self, session_id: str, principal: str, transport: Transport) -> None:
        row = GatewaySessionRow(id=session_id, principal=principal, transport=transport, process=this_process(),
                                started_at=db_time(utc_now()))
        with db_errors(self._store, f"record session {session_id}"), self._store.session(write=True) as session:
            session.add(row)
            session.commit()

    def _set(self, session_id: str, field: Literal["ended_at", "locked_at"]) -> None:
        with db_errors(self._store, f"update session {session_id}"), self._store.session(write=True) as session:
            row = session.get(GatewaySessionRow, session_id)
            if row is None or getattr(row, field) is not None:
                return
            setattr(row, field, db_time(utc_now()))
            session.add(row)
            session.commit()

    def end(self, session_id: str) -> None:
        self._set(session_id, "ended_at")

    def mark_locked(self, session_id: str) -> None:
        self._set(session_id, "locked_at")

    def list(self, *, include_ended: bool = False, limit: int = 1000) -> list[SessionRecord]:
        """Sessions newest first: the open ones (``ended_at`` empty), or all of them."""
        query = select(GatewaySessionRow).order_by(col(GatewaySessionRow.started_at).desc()).limit(limit)
        if not include_ended:
            query = query.where(col(GatewaySessionRow.ended_at).is_(None))
        with db_errors(self._store, "list sessions"), self._store.session() as session:
            return [_record(r) for r in session.exec(query)]


class PrincipalGuard:
    """One gateway session's view of its principal's lock: checked before each call, set by a violation.

        guard = PrincipalGuard(stores, principal, session_id="s-1f0c", transport="http")
        code, message = guard.refusal() or ("", "")
    """

    def __init__(self, stores: Services, principal: Principal, *, session_id: str,
                 transport: Transport = "stdio") -> None:
        self.stores = stores
        self.principal = principal
        self.session_id = session_id
        self.transport: Transport = transport
        self.registry = SessionRegistry(stores.store)

    def refusal(self, read: PrincipalState | None = None) -> tuple[str, str] | None:
        """Why no call of this principal may run now (locked, disabled, or the lock unreadable); None: policy decides.

        ``read``: the principal's state as the HTTP gateway read it when this request arrived
        (``request_state``), used instead of reading it again, unless this process locked the
        principal since it started: then it is read now.
        """
        if read is not None and read.principal == self.principal.name and read.principal not in _LOCKED_HERE:
            return read.refusal()
        try:
            return self.stores.trust.principal_state(self.principal.name).refusal()
        except WritError as e:  # fail closed: a lock that cannot be read may be there
            log.error("cannot read the lock of %s: %s", self.principal.name, e.message)
            return e.code, f"whether principal {self.principal.name!r} is locked cannot be read: {e.message}"

    def lock(self, decision: Decision) -> None:
        """A decision obliged ``lock_session``: lock the principal in the database (audited ``principal_locked``).

        If that fails, the session stays locked in memory (the caller set it) and the process log says so.
        """
        codes = tuple(sorted({r.code for r in decision.reasons}))
        _LOCKED_HERE.add(self.principal.name)  # this process's other sessions read the lock from now on
        try:
            self.stores.trust.status.lock(self.principal.name, session_id=self.session_id,
                                          decision_id=decision.decision_id, codes=codes)
            self.registry.mark_locked(self.session_id)
        except WritError as e:
            log.error("principal %s was NOT locked in the database (only session %s is): %s",
                      self.principal.name, self.session_id, e.message)

    def started(self) -> None:
        """Record the session (``writ sessions list``); a failure is logged, the session still runs."""
        try:
            self.registry.start(self.session_id, self.principal.name, self.transport)
        except WritError as e:
            log.error("session %s was not recorded: %s", self.session_id, e.message)

    def ended(self) -> None:
        try:
            self.registry.end(self.session_id)
        except WritError as e:
            log.error("the end of session %s was not recorded: %s", self.session_id, e.message)
