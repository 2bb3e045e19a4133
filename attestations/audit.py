"""The audit log: an append-only, hash-chained record of every decision and plan event.

    from writ.attestations.audit import AuditLog
    from writ.engine.core.settings import Settings
    from writ.engine.core.db import open_database

    log = AuditLog(open_database(Settings()))
    entry = log.append("decision", {"decision_id": "5f0c...", "allow": False})
    print(entry.seq, entry.entry_hash)          # 42 sha256:9a1f...
    report = log.verify(expected_head=checkpoint)
    if not report.ok:
        print(report.first_bad_seq, report.problem, report.message)
    log.verify_or_raise()                       # or: VerificationError naming the entry

Entry ``seq`` hashes ``{seq, created_at, kind, payload, prev_hash}`` in RFC 8785
form (``entry_hash``); its ``prev_hash`` is the ``entry_hash`` of entry ``seq - 1``,
or ``GENESIS_HASH`` for entry 1. The database keeps the chain linear (``seq`` and
``prev_hash`` are unique), and ``append`` retries when another writer, in this
process or another, took the next slot first; the chain never forks or skips.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import rfc8785
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, select

from writ.engine.core.db import Database, describe_db_error
from writ.engine.core.errors import AuditError, VerificationError
from writ.engine.core.tables import GENESIS_HASH, AuditLogRow
from writ.engine.core.timeutil import db_time, utc_now

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditProblem",
    "AuditReport",
    "compute_entry_hash",
    "walk_chain",
]

_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class AuditEntry:
    """One entry, with its fields exactly as stored and hashed."""

    seq: int
    created_at: str  # UTC, e.g. 2025-06-01T12:00:00.000000Z
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    entry_hash: str


class AuditProblem(StrEnum):
    """What ``AuditLog.verify`` found wrong at the first bad entry.

        report = log.verify(expected_head=checkpoint)
        report.problem, report.first_bad_seq      # AuditProblem.EDITED 42
    """

    EDITED = "edited"  # the entry's contents no longer match its hash
    DELETED = "deleted"  # an entry is missing: a gap in seq
    REORDERED = "reordered"  # an intact entry sits at the wrong place in the chain
    CHAIN_BROKEN = "chain_broken"  # the entry does not link to the one before it
    TRUNCATED = "truncated"  # the expected head is not in the log: the tail was cut


@dataclass(frozen=True)
class AuditReport:
    """What ``verify`` found. ``entries`` and ``head`` cover the entries that verified."""

    ok: bool
    entries: int
    head: str
    first_bad_seq: int | None = None
    problem: AuditProblem | None = None
    message: str = ""


def compute_entry_hash(seq: int, created_at: str, kind: str, payload: Any, prev_hash: str) -> str:
    """``sha256:`` + hex SHA-256 of the RFC 8785 JSON of the entry's five fields."""
    doc = {
        "seq": seq,
        "created_at": created_at,
        "kind": kind,
        "payload": payload,
        "prev_hash": prev_hash,
    }
    return "sha256:" + hashlib.sha256(rfc8785.dumps(doc)).hexdigest()


def parse_payload(text: str) -> Any:
    """Parse stored payload JSON as RFC 8785 reads numbers: integers beyond 2**53 are doubles."""
    return json.loads(text, parse_int=_parse_int)


def _parse_int(digits: str) -> int | float:
    value = int(digits)
    return value if abs(value) < 2**53 else float(value)


class AuditLog:
    """The audit log in a ``Database``. Safe to share between threads and processes.

        log = AuditLog(open_database(settings))
        log.append("plan_event", {"plan_id": plan.id, "event": "submit"})   # AuditError if it cannot
        log.verify().ok, log.head()                                          # True 'sha256:9a1f...'
    """

    def __init__(
        self,
        store: Database,
        *,
        max_attempts: int = 100,
        timeout_s: float = 30.0,
        batch_size: int = 1000,
    ) -> None:
        """``max_attempts`` and ``timeout_s`` bound how long ``append`` retries a contended slot."""
        self._store = store
        self._max_attempts = max(1, max_attempts)
        self._timeout_s = timeout_s
        self._batch_size = batch_size

    def append(self, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
        """Add one entry at the end of the chain, or raise ``AuditError``; nothing is half written."""
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise AuditError(
                f"audit entry kind {kind!r} is invalid: expected [a-z][a-z0-9_.-]*, at most 64"
            )
        try:
            payload_text = rfc8785.dumps(dict(payload)).decode()
            value = parse_payload(payload_text)
            compute_entry_hash(1, "", kind, value, GENESIS_HASH)  # what verify will do with it
        except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
            raise AuditError(
                f"audit payload of kind {kind!r} is not encodable as RFC 8785 JSON: {e}"
            ) from e
        deadline = time.monotonic() + self._timeout_s
        for attempt in range(1, self._max_attempts + 1):
            try:
                entry = self._try_append(kind, payload_text, value)
            except _LostRace:
                if time.monotonic() > deadline:
                    break
                time.sleep(random.uniform(  # noqa: S311 - retry jitter, not a secret
                    0, min(0.05, 0.001 * 2**attempt)))
                continue
            except SQLAlchemyError as e:
                raise AuditError(
                    f"cannot append a {kind!r} entry to the audit log in {self._store.url}: "
                    f"{describe_db_error(e)}"
                ) from e
            return entry
        raise AuditError(
            f"cannot append a {kind!r} entry to the audit log in {self._store.url}: "
            f"the log stayed contended (locked, or the next entry taken by another writer) "
            f"for {attempt} attempts"
        )

    def head(self) -> str:
        """The ``entry_hash`` of the last entry (``GENESIS_HASH`` when empty), unverified."""
        with self._reading(), self._store.session() as session:
            row = _last_row(session)
        return row.entry_hash if row else GENESIS_HASH

    def tail(self, n: int) -> list[AuditEntry]:
        """The last ``n`` entries, oldest first."""
        with self._reading(), self._store.session() as session:
            query = select(AuditLogRow).order_by(col(AuditLogRow.seq).desc()).limit(n)
            rows = list(session.exec(query))
        return [_to_entry(row) for row in reversed(rows)]

    def verify(self, expected_head: str | None = None) -> AuditReport:
        """Walk the chain in seq order and report the first bad entry.

        ``expected_head``: an ``entry_hash`` recorded earlier (a checkpoint); the
        log must still contain it, else its tail was cut.
        """
        with self._reading():
            return walk_chain(self._rows(), expected_head=expected_head, find_seq=self._find_seq)

    def verify_or_raise(self, expected_head: str | None = None) -> AuditReport:
        """``verify``, raising ``VerificationError`` with the report's message when not ok."""
        report = self.verify(expected_head)
        if not report.ok:
            raise VerificationError(report.message)
        return report

    # -- internals --------------------------------------------------------------------

    def _try_append(self, kind: str, payload_text: str, value: dict[str, Any]) -> AuditEntry:
        with self._store.session(write=True) as session:
            try:
                last = _last_row(session)
                seq, prev_hash = (last.seq + 1, last.entry_hash) if last else (1, GENESIS_HASH)
                created_at = db_time(utc_now())  # fixed width: text order is time order
                entry_hash = compute_entry_hash(seq, created_at, kind, value, prev_hash)
                session.add(
                    AuditLogRow(
                        seq=seq,
                        created_at=created_at,
                        kind=kind,
                        payload=payload_text,
                        prev_hash=prev_hash,
                        entry_hash=entry_hash,
                    )
                )
                session.commit()
            except IntegrityError:
                session.rollback()
                if self.head() != prev_hash:  # another writer took entry `seq`
                    raise _LostRace() from None
                raise
            except DBAPIError as e:
                if _is_transient(e):
                    raise _LostRace() from None
                raise
        return AuditEntry(seq, created_at, kind, parse_payload(payload_text), prev_hash, entry_hash)

    def _rows(self) -> Iterator[AuditLogRow]:
        after = 0
        while True:
            with self._store.session() as session:
                query = (
                    select(AuditLogRow)
                    .where(col(AuditLogRow.seq) > after)
                    .order_by(col(AuditLogRow.seq))
                    .limit(self._batch_size)
                )
                batch = list(session.exec(query))
            yield from batch
            if len(batch) < self._batch_size:
                return
            after = batch[-1].seq

    def _find_seq(self, entry_hash: str) -> int | None:
        with self._store.session() as session:
            query = select(AuditLogRow.seq).where(AuditLogRow.entry_hash == entry_hash)
            return session.exec(query).first()

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as e:
            raise AuditError(
                f"cannot read the audit log in {self._store.url}: {describe_db_error(e)}"
            ) from e


def walk_chain(
    rows: Iterable[AuditLogRow],
    *,
    expected_head: str | None = None,
    find_seq: Callable[[str], int | None] = lambda _: None,
) -> AuditReport:
    """Check rows given in seq order (no IO but ``find_seq``: the seq of the entry with a hash)."""
    count, prev = 0, GENESIS_HASH
    seen_head = expected_head is None or expected_head == GENESIS_HASH
    for row in rows:
        bad = _check_entry(row, count + 1, prev, find_seq)
        if bad is not None:
            problem, message = bad
            return AuditReport(
                False,
                count,
                prev,
                count + 1,
                problem,
                f"audit log bad at entry {count + 1} ({problem.value}): {message}",
            )
        count, prev = count + 1, row.entry_hash
        seen_head = seen_head or prev == expected_head
    if not seen_head:
        return AuditReport(
            False,
            count,
            prev,
            count + 1,
            AuditProblem.TRUNCATED,
            f"audit log bad at entry {count + 1} (truncated): the log ends at entry {count} "
            f"(head {prev}) and does not contain the expected head {expected_head}",
        )
    return AuditReport(True, count, prev, message=f"audit log OK: {count} entries, head {prev}")


def _check_entry(
    row: AuditLogRow, seq: int, prev: str, find_seq: Callable[[str], int | None]
) -> tuple[AuditProblem, str] | None:
    """Why entry ``seq`` (stored as ``row``, following hash ``prev``) is bad, or None."""
    if row.seq != seq:
        missing = f"entry {seq} is" if row.seq == seq + 1 else f"entries {seq} to {row.seq - 1} are"
        where = (
            f"entry {row.seq} follows entry {seq - 1}"
            if seq > 1
            else f"the log starts at {row.seq}"
        )
        return AuditProblem.DELETED, f"{missing} missing: {where}"
    try:
        payload = parse_payload(row.payload)
        canonical = rfc8785.dumps(payload).decode() == row.payload
    except (ValueError, rfc8785.CanonicalizationError):
        return AuditProblem.EDITED, "its payload is not valid JSON"
    if not canonical or not isinstance(payload, dict):
        return AuditProblem.EDITED, "its payload is not a JSON object in RFC 8785 form"
    try:
        computed = compute_entry_hash(row.seq, row.created_at, row.kind, payload, row.prev_hash)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):  # SQLite stores any type
        return AuditProblem.EDITED, "a field holds a value of the wrong type"
    if computed != row.entry_hash:
        other = find_seq(row.prev_hash) if row.prev_hash != prev else None
        if other is not None:
            return AuditProblem.REORDERED, (
                f"it follows the entry now at seq {other} (prev_hash {row.prev_hash}), not entry {seq - 1}"
            )
        return (
            AuditProblem.EDITED,
            f"its contents hash to {computed}, its stored entry_hash is {row.entry_hash}",
        )
    if row.prev_hash != prev:
        return AuditProblem.CHAIN_BROKEN, (
            f"its prev_hash is {row.prev_hash}, entry {seq - 1} hashes to {prev} "
            "(one of the two was rewritten with a recomputed hash)"
        )
    return None


def _last_row(session: Session) -> AuditLogRow | None:
    return session.exec(select(AuditLogRow).order_by(col(AuditLogRow.seq).desc()).limit(1)).first()


def _to_entry(row: AuditLogRow) -> AuditEntry:
    try:
        payload = parse_payload(row.payload)
    except ValueError:
        raise AuditError(
            f"audit entry {row.seq} has a payload that is not JSON; run `writ audit verify`"
        ) from None
    return AuditEntry(row.seq, row.created_at, row.kind, payload, row.prev_hash, row.entry_hash)


def _is_transient(e: DBAPIError) -> bool:
    """A lock timeout or serialization failure: worth another attempt."""
    sqlstate = getattr(e.orig, "sqlstate", None)  # PostgreSQL
    if sqlstate in ("40001", "40P01", "55P03"):
        return True
    name = getattr(e.orig, "sqlite_errorname", "")  # SQLite
    return isinstance(name, str) and name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


class _LostRace(Exception):
    """Another writer appended between our read of the head and our insert."""
