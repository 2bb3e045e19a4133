"""Principal locks and disables, in the database, so every gateway process and replica sees them.

    status = PrincipalStatus(db, audit=AuditLog(db))       # also trust_store.status
    status.lock("exec-bot", session_id="s-1f0c", decision_id="dec-9a", codes=("step_not_in_plan",))  # True
    status.state("exec-bot").refusal()     # ('principal_locked', "principal 'exec-bot' is locked since ...")
    status.unlock("exec-bot", reason="reviewed: the issue text told it to")   # the lock that was lifted
    status.disable("exec-bot", reason="left the team")

A lock belongs to the principal, not to the session that violated policy: a new session, a new
``writ mcp`` process or a restart finds it here. Only an operator lifts it. A disable is for
good (there is no enable: add a new principal); ``TrustStore.disable_principal`` also revokes
the principal's keys. Each change is audited (``principal_locked``, ``principal_unlocked``,
``principal_disabled``) after its commit. Reading a state is one primary-key lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, Table, bindparam
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import col, or_, select

from writ.engine.core import reasons
from writ.engine.core.db import Database, db_errors
from writ.engine.core.errors import ConflictError, InputError
from writ.engine.core.ports import AuditSink
from writ.engine.core.tables import PrincipalStatusRow
from writ.engine.core.timeutil import db_time, from_db_time, iso, utc_now

__all__ = ["PrincipalState", "PrincipalStatus"]


@dataclass(frozen=True)
class PrincipalState:
    """Whether a principal is locked or disabled now, and why.

        state = PrincipalState.clear("plan-bot")
        state.locked, state.disabled, state.refusal()        # False, False, None
    """

    principal: str
    locked_at: datetime | None = None
    lock_session: str | None = None
    lock_decision: str | None = None
    lock_reasons: tuple[str, ...] = ()
    disabled_at: datetime | None = None
    disable_reason: str | None = None

    @classmethod
    def clear(cls, principal: str) -> PrincipalState:
        """Neither locked nor disabled."""
        return cls(principal)

    @property
    def locked(self) -> bool:
        return self.locked_at is not None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def refusal(self) -> tuple[str, str] | None:
        """``(code, message)`` for a call of this principal, or None when it may call (policy still decides)."""
        if self.disabled_at is not None:
            return reasons.PRINCIPAL_DISABLED, (
                f"principal {self.principal!r} was disabled at {iso(self.disabled_at)} "
                f"({self.disable_reason or 'no reason given'}): its tokens, keys and gateways no longer work")
        if self.locked_at is not None:
            why = ", ".join(self.lock_reasons) or "a policy violation"
            return reasons.PRINCIPAL_LOCKED, (
                f"principal {self.principal!r} is locked since {iso(self.locked_at)} after a policy violation "
                f"({why}) in session {self.lock_session or '?'}: every session of it is refused; stop making "
                "calls and ask a human operator to review it")
        return None


_TABLE: Table = PrincipalStatusRow.__table__  # type: ignore[attr-defined]
_STATE = _TABLE.select().where(_TABLE.c.principal == bindparam("principal"))  # built once: its cache key too


class _Fetched(NamedTuple):
    """A ``principal_status`` row as the SQLite read of ``PrincipalStatus.state`` fetches it."""

    principal: str
    locked_at: str | None
    lock_session: str | None
    lock_decision: str | None
    lock_reasons: str | None
    disabled_at: str | None
    disable_reason: str | None


_SQL_STATE = f"SELECT {', '.join(_Fetched._fields)} FROM principal_status WHERE principal = ?"  # noqa: S608


def _state(row: PrincipalStatusRow | Row[Any] | _Fetched | None, principal: str) -> PrincipalState:
    if row is None:
        return PrincipalState.clear(principal)
    return PrincipalState(
        principal=row.principal,
        locked_at=from_db_time(row.locked_at) if row.locked_at else None,
        lock_session=row.lock_session,
        lock_decision=row.lock_decision,
        lock_reasons=tuple(c for c in (row.lock_reasons or "").split(",") if c),
        disabled_at=from_db_time(row.disabled_at) if row.disabled_at else None,
        disable_reason=row.disable_reason,
    )


def _sqlite_row(store: Database, principal: str) -> _Fetched | None:
    """The row on SQLite through the pool's DBAPI connection; a ``sqlite3`` error as SQLAlchemy's (``db_errors``)."""
    import sqlite3  # here, not at the top: the offline bundle verifier imports this module and no database driver

    raw = store.engine.raw_connection()
    try:
        found = raw.driver_connection.execute(_SQL_STATE, (principal,)).fetchone()  # type: ignore[union-attr]
    except sqlite3.Error as e:
        raise DBAPIError.instance(_SQL_STATE, (principal,), e, sqlite3.Error) from e
    finally:
        raw.close()
    return _Fetched(*found) if found is not None else None


def _reason(text: str, what: str) -> str:
    reason = " ".join((text or "").split())
    if not reason:
        raise InputError(f"say why you {what} the principal: --reason TEXT (it goes to the audit log)",
                         code=reasons.INPUT_INVALID)
    return reason[:1000]


class PrincipalStatus:
    """The ``principal_status`` rows: read one per call, change them (audited) on a lock, an unlock or a disable.

        PrincipalStatus(db, audit=AuditLog(db)).state("exec-bot").locked     # False
    """

    def __init__(self, store: Database, *, audit: AuditSink) -> None:
        self._store = store
        self._audit = audit

    def state(self, principal: str) -> PrincipalState:
        """The principal's state now (one primary-key lookup); ``StoreError`` if the database cannot say.

        Every gateway call and HTTP request asks this, so it skips what it can: on SQLite one SELECT on
        the pooled DBAPI connection (autocommit: it reads the last commit, as a fresh transaction
        would), about 15 us instead of 225 us through a Core connection; on PostgreSQL a prebuilt
        Core statement.
        """
        with db_errors(self._store, f"read the lock of {principal!r}"):
            if self._store.dialect == "sqlite":
                return _state(_sqlite_row(self._store, principal), principal)
            with self._store.connect() as conn:
                return _state(conn.execute(_STATE, {"principal": principal}).first(), principal)

    def states(self) -> list[PrincipalState]:
        """Every principal that is locked or disabled now, by name."""
        query = (select(PrincipalStatusRow)
                 .where(or_(col(PrincipalStatusRow.locked_at).is_not(None),
                            col(PrincipalStatusRow.disabled_at).is_not(None)))
                 .order_by(col(PrincipalStatusRow.principal)))
        with db_errors(self._store, "list principal locks"), self._store.session() as session:
            return [_state(r, r.principal) for r in session.exec(query)]

    def lock(self, principal: str, *, session_id: str, decision_id: str | None, codes: tuple[str, ...],
             at: datetime | None = None) -> bool:
        """Lock ``principal``; True if this locked it, False if it was locked already (the first lock stands)."""
        when = db_time(at or utc_now())

        def change(row: PrincipalStatusRow) -> bool:
            if row.locked_at is not None:
                return False
            row.locked_at, row.lock_session, row.lock_decision = when, session_id, decision_id
            row.lock_reasons = ",".join(codes)
            return True

        if not self._change(principal, when, change, f"lock {principal!r}"):
            return False
        self._audit.append("principal_locked", {"principal": principal, "session_id": session_id,
                                                "decision_id": decision_id, "reasons": list(codes)})
        return True

    def unlock(self, principal: str, *, reason: str, at: datetime | None = None) -> PrincipalState:
        """Lift the lock (an operator's review); the state as it was. ``principal_not_locked`` if there is none."""
        reason = _reason(reason, "unlock")
        when = db_time(at or utc_now())
        lifted: list[PrincipalState] = []

        def change(row: PrincipalStatusRow) -> bool:
            if row.locked_at is None:
                raise ConflictError(f"principal {principal!r} is not locked (see `writ sessions list`)",
                                    code=reasons.PRINCIPAL_NOT_LOCKED)
            lifted.append(_state(row, principal))
            row.locked_at = row.lock_session = row.lock_decision = row.lock_reasons = None
            return True

        self._change(principal, when, change, f"unlock {principal!r}")
        was = lifted[0]
        self._audit.append("principal_unlocked", {
            "principal": principal, "reason": reason, "locked_at": iso(was.locked_at) if was.locked_at else None,
            "lock_session": was.lock_session, "lock_reasons": list(was.lock_reasons)})
        return was

    def disable(self, principal: str, *, reason: str, at: datetime | None = None) -> PrincipalState:
        """Disable ``principal`` from ``at`` on (a second disable keeps the first time); its state after."""
        reason = _reason(reason, "disable")
        when = db_time(at or utc_now())

        def change(row: PrincipalStatusRow) -> bool:
            if row.disabled_at is not None:
                return False
            row.disabled_at, row.disable_reason = when, reason
            return True

        if self._change(principal, when, change, f"disable {principal!r}"):
            self._audit.append("principal_disabled", {"principal": principal, "reason": reason, "disabled_at": when})
        return self.state(principal)

    def _change(self, principal: str, when: str, change: Callable[[PrincipalStatusRow], bool], what: str) -> bool:
        """Apply ``change`` to the principal's row (made if missing) in one write transaction."""
        for attempt in (1, 2):  # a second try when another process made the row at the same moment
            with db_errors(self._store, what), self._store.session(write=True) as session:
                row = session.get(PrincipalStatusRow, principal) or PrincipalStatusRow(principal=principal,
                                                                                         updated_at=when)
                if not change(row):
                    return False
                row.updated_at = when
                session.add(row)
                try:
                    session.commit()
                except IntegrityError:
                    session.rollback()
                    if attempt == 2:
                        raise
                    continue
                return True
        return False  # not reached

