"""The audit log: an append-only, hash-chained record of every decision and plan event, under a Merkle tree.

    from writ.attestations.audit import AuditLog
    from writ.engine.core.settings import Settings
    from writ.engine.core.db import open_database

    log = AuditLog(open_database(Settings()))
    entry = log.append("decision", {"decision_id": "5f0c...", "allow": False})   # fsynced when it returns
    log.append("tool_result", {"outcome": "ok"}, durable=False)   # committed; fsynced within WRIT_AUDIT__FLUSH_S
    print(entry.seq, entry.entry_hash)          # 42 sha256:9a1f...
    report = log.verify(checkpoints=read_checkpoint_file(path, instance_public_key))
    if not report.ok:
        print(report.first_bad_seq, report.problem, report.message)
    log.verify_or_raise()                       # or: VerificationError naming the entry
    log = audit_log_for(settings, store)        # + signed checkpoints every N entries or S seconds

Entry ``seq`` hashes ``{seq, created_at, kind, payload, prev_hash}`` in RFC 8785
form (``entry_hash``, see ``writ.attestations.chain``); its ``prev_hash`` is the ``entry_hash``
of entry ``seq - 1``, or ``GENESIS_HASH`` for entry 1. The database keeps the chain linear
(``seq`` and ``prev_hash`` are unique). ``append`` follows the head this process holds in memory
(``writ.attestations.audit_append``: one lock per database, one canonicalization, two INSERTs) and
retries when another process took the next slot first; the chain never forks (ADR 0021). Each append also
writes the entry's leaf of the Merkle tree and the nodes it completes, in the same transaction
(``writ.attestations.tree``, ADR 0017).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import rfc8785
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, select

from writ.attestations.audit_append import reread_head, shared_head, write_entry
from writ.attestations.chain import AuditProblem, AuditReport, compute_entry_hash, parse_payload, walk_chain
from writ.attestations.checkpoints import Checkpointer, HeldCheckpoint
from writ.attestations.instance_key import instance_key_path
from writ.attestations.tree import AuditTree
from writ.attestations.tree_check import Finding, TreeCheck
from writ.engine.core.db import Database, describe_db_error
from writ.engine.core.errors import AuditError, VerificationError
from writ.engine.core.tables import GENESIS_HASH, AuditLogRow

if TYPE_CHECKING:
    from writ.engine.core.settings import Settings

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditProblem",
    "AuditReport",
    "audit_log_for",
    "compute_entry_hash",
    "parse_payload",
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
        on_append: Callable[[int], None] | None = None,
        flush_s: float = 1.0,
    ) -> None:
        """``max_attempts`` and ``timeout_s`` bound how long ``append`` retries a contended slot.

        ``flush_s``: a non-durable append is fsynced within this (``WRIT_AUDIT__FLUSH_S``).

        ``on_append(seq)`` runs after each committed append (``Checkpointer.after_append``); it must not raise.
        """
        self._store = store
        self._max_attempts = max(1, max_attempts)
        self._timeout_s = timeout_s
        self._batch_size = batch_size
        self._on_append = on_append
        self._flush_s = flush_s
        self._head = shared_head(store)  # process-wide per database: every AuditLog on `store` shares it
        self.tree = AuditTree(store)

    def append(self, kind: str, payload: Mapping[str, Any], *, durable: bool = True) -> AuditEntry:
        """Add one entry at the end of the chain, or raise ``AuditError``; nothing is half written.

        ``durable=True``: committed and fsynced when it returns. ``durable=False``: committed (every
        reader sees it, a killed process loses nothing), fsynced within ``flush_s`` (ADR 0021).
        """
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise AuditError(
                f"audit entry kind {kind!r} is invalid: expected [a-z][a-z0-9_.-]*, at most 64"
            )
        try:
            payload_text = rfc8785.dumps(dict(payload)).decode()  # the one canonicalization
            value = parse_payload(payload_text)
        except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
            raise AuditError(
                f"audit payload of kind {kind!r} is not encodable as RFC 8785 JSON: {e}"
            ) from e
        deadline = time.monotonic() + self._timeout_s
        for attempt in range(1, self._max_attempts + 1):
            try:
                entry = self._try_append(kind, payload_text, value, durable)
            except _LostRace:
                if time.monotonic() > deadline:
                    break
                if attempt == 1:
                    continue  # the next attempt reads the head under its own transaction: no wait
                time.sleep(random.uniform(  # noqa: S311 - retry jitter, not a secret
                    0, min(0.05, 0.001 * 2**attempt)))
                continue
            except SQLAlchemyError as e:
                raise AuditError(
                    f"cannot append a {kind!r} entry to the audit log in {self._store.url}: "
                    f"{describe_db_error(e)}"
                ) from e
            if not durable and self._store.dialect == "sqlite":
                self._head.flusher(self._store, self._flush_s).dirty()
            if self._on_append is not None:
                self._on_append(entry.seq)
            return entry
        raise AuditError(
            f"cannot append a {kind!r} entry to the audit log in {self._store.url}: "
            f"the log stayed contended (locked, or the next entry taken by another writer) "
            f"for {attempt} attempts"
        )

    def flush(self) -> None:
        """Fsync now what non-durable appends committed (SQLite's WAL); ``AuditError`` if it cannot."""
        try:
            self._head.flusher(self._store, self._flush_s).flush()
        except (OSError, SQLAlchemyError) as e:
            raise AuditError(f"cannot flush the audit log in {self._store.url}: {e}") from e

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

    def verify(
        self, expected_head: str | None = None, *, checkpoints: Sequence[HeldCheckpoint] = ()
    ) -> AuditReport:
        """Walk the chain in seq order, follow the Merkle tree, and report the first bad entry.

        ``expected_head``: an ``entry_hash`` recorded earlier; the log must still contain it, else
        its tail was cut. ``checkpoints``: signed checkpoints (already verified with the instance
        key, ``read_checkpoint_file``); the entries must reproduce each one's root. The tree
        recorded at append is compared too (``writ.attestations.tree_check``).
        """
        with self._reading():
            check = TreeCheck(checkpoints, recorded_leaves=self.tree.leaves,
                              recorded_size=self.tree.stored_leaves())
            report = walk_chain(self._rows(), expected_head=expected_head, find_seq=self._find_seq,
                                on_verified=lambda row: check.add(row.seq, row.entry_hash))
            finding = check.finish(log_entries=report.entries, chain_ok=report.ok)
            head = self._hash_of(finding.first_seq - 1) if finding is not None else report.head
        return _with_tree(report, check, finding, head)

    def verify_or_raise(
        self, expected_head: str | None = None, *, checkpoints: Sequence[HeldCheckpoint] = ()
    ) -> AuditReport:
        """``verify``, raising ``VerificationError`` with the report's message when not ok."""
        report = self.verify(expected_head, checkpoints=checkpoints)
        if not report.ok:
            raise VerificationError(report.message)
        return report

    # -- internals --------------------------------------------------------------------

    def _try_append(self, kind: str, payload_text: str, value: dict[str, Any], durable: bool) -> AuditEntry:
        """One attempt: Core statements in one transaction after the head held in memory (``audit_append``)."""
        head = self._head
        with head.lock:
            try:
                seq, created_at, prev_hash, entry_hash = write_entry(self._store, head, kind, payload_text,
                                                                     durable=durable)
            except IntegrityError:
                after = head.seq  # the entry we tried to follow
                if reread_head(self._store, head)[0] != after:
                    head.contended()  # another writer took entry `seq`: read the head under the next lock
                    raise _LostRace() from None
                raise
            except DBAPIError as e:
                if _is_transient(e):
                    head.contended()  # another writer holds the lock: read the head under ours
                    raise _LostRace() from None
                raise
        return AuditEntry(seq, created_at, kind, value, prev_hash, entry_hash)

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

    def _hash_of(self, seq: int) -> str:
        """The stored ``entry_hash`` of entry ``seq`` (``GENESIS_HASH`` for 0)."""
        if seq < 1:
            return GENESIS_HASH
        with self._store.session() as session:
            found = session.exec(select(AuditLogRow.entry_hash).where(AuditLogRow.seq == seq)).first()
        return found or GENESIS_HASH

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


def audit_log_for(settings: Settings, store: Database) -> AuditLog:
    """The audit log of a data directory, with its periodic signed checkpoints when it has an instance key.

    Without the key (``writ init`` makes it) appends work as ever and no checkpoint is made.
    """
    c, flush_s = settings.checkpoint, settings.audit.flush_s
    if not (c.every_entries or c.every_seconds) or not instance_key_path(settings.home).exists():
        return AuditLog(store, flush_s=flush_s)
    return AuditLog(store, on_append=Checkpointer.from_settings(settings, store).after_append, flush_s=flush_s)


def _with_tree(report: AuditReport, check: TreeCheck, finding: Finding | None, head: str) -> AuditReport:
    """``report`` of the chain walk, with what the tree check found before or beyond it (``head``: its entry's)."""
    matched = len(check.matched)
    largest = max((h.checkpoint.size for h in check.matched), default=0)
    if finding is not None and (report.ok or report.first_bad_seq is None or finding.first_seq < report.first_bad_seq):
        exact = finding.first_seq == finding.last_seq
        where = f"entry {finding.first_seq}" if exact else f"entries {finding.first_seq}-{finding.last_seq}"
        entries = finding.first_seq - 1
        return AuditReport(
            False, entries, head, finding.first_seq,
            AuditProblem(finding.problem), f"audit log bad at {where} ({finding.problem}): {finding.message}",
            first_bad_seq_max=None if exact else finding.last_seq, checkpoints=matched, checkpoint_size=largest,
        )
    if not report.ok:
        return AuditReport(report.ok, report.entries, report.head, report.first_bad_seq, report.problem,
                           report.message, checkpoints=matched, checkpoint_size=largest)
    signed = (f"; its tree matches {matched} signed checkpoint{'s' if matched != 1 else ''} "
              f"(the largest of {largest} entries)") if matched else ""
    return AuditReport(True, report.entries, report.head, message=report.message + signed,
                       checkpoints=matched, checkpoint_size=largest)


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
