"""The audit append's hot path: the chain head kept in memory, one transaction of Core statements, durability.

    head = shared_head(store)                      # one per Database in this process, with its lock
    with head.lock:
        seq, entry_hash = write_entry(store, head, kind, payload_text, durable=False)
    head.flusher(store, flush_s=1.0).dirty()       # SQLite: the WAL fsynced within flush_s

``write_entry`` commits the entry and its Merkle tree rows in one transaction: one INSERT for the
entry, one (multi-row) INSERT for the tree rows, no ORM objects. It trusts the head cached in
``SharedHead`` (read from the database when unknown); another process that appended meanwhile makes
the INSERT fail on the unique ``seq`` or ``prev_hash`` (``IntegrityError``), and the caller reads
the head again (``reread_head``) and retries. Durability (ADR 0021, SECURITY.md "Audit durability"):

- ``durable=True``: SQLite commits with ``synchronous=FULL`` (WAL: the commit is fsynced before it
  returns); PostgreSQL with ``synchronous_commit`` on (``open_database`` turns a session default of
  ``off`` back on).
- ``durable=False``: committed (every reader sees it; a killed process loses nothing) but the fsync
  may follow. SQLite: that one commit runs with ``synchronous=NORMAL`` and ``WalFlusher`` fsyncs the
  WAL (and checkpoints it) within ``flush_s``. PostgreSQL: ``SET LOCAL synchronous_commit = off``;
  its WAL writer flushes within three times ``wal_writer_delay`` (200 ms by default).
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from writ.attestations.chain import entry_hash_of_text
from writ.attestations.tree import append_rows, check_found, tree_rows
from writ.engine.core.db import Database
from writ.engine.core.tables import GENESIS_HASH, AuditLogRow
from writ.engine.core.timeutil import db_time, utc_now

__all__ = ["SharedHead", "WalFlusher", "reread_head", "shared_head", "write_entry"]

log = logging.getLogger(__name__)

_LOG = AuditLogRow.__table__  # type: ignore[attr-defined]
_INSERT = _LOG.insert()
_HEAD = text("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")


class SharedHead:
    """The last entry (``seq``, ``entry_hash``) of one database as this process last wrote or read it.

    ``seq`` None: unknown, read inside the next append's transaction. ``lock`` serializes this
    process's appends to the database; other processes are caught by the unique constraints.
    After another writer took a slot (``contended``), appends read the head in their own
    transaction for a second: under SQLite's write lock that read cannot be stale, and with four
    writing processes it beat retrying after each lost race (benchmarks/README.md).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seq: int | None = None
        self.entry_hash = GENESIS_HASH
        self.contended_until = 0.0  # monotonic time: until then, read the head in every append's transaction
        self._flusher: WalFlusher | None = None
        self._flusher_lock = threading.Lock()

    def contended(self) -> None:
        """Another writer took our slot: read the head in each transaction for a while, then trust memory again."""
        self.seq = None
        self.contended_until = time.monotonic() + CONTENDED_S

    def stale(self) -> bool:
        """Whether the next append must read the head in its transaction."""
        return self.seq is None or time.monotonic() < self.contended_until

    def flusher(self, store: Database, flush_s: float) -> WalFlusher:
        """The WAL flusher of this database (SQLite), started if it is not running."""
        with self._flusher_lock:
            if self._flusher is None:
                self._flusher = WalFlusher(store, flush_s)
            self._flusher.bound(flush_s)
        return self._flusher


CONTENDED_S = 1.0

_HEADS: weakref.WeakKeyDictionary[Database, SharedHead] = weakref.WeakKeyDictionary()
_HEADS_LOCK = threading.Lock()


def shared_head(store: Database) -> SharedHead:
    """The one ``SharedHead`` of ``store`` in this process (every ``AuditLog`` on it shares it)."""
    with _HEADS_LOCK:
        head = _HEADS.get(store)
        if head is None:
            head = _HEADS[store] = SharedHead()
        return head


def write_entry(store: Database, head: SharedHead, kind: str, payload_text: str, *,
                durable: bool) -> tuple[int, str, str, str]:
    """Append one entry after ``head`` and commit; ``(seq, created_at, prev_hash, entry_hash)``. Hold ``head.lock``.

    Raises SQLAlchemy's ``DBAPIError`` tree (``IntegrityError`` when another writer took the slot);
    the head is advanced only once the commit succeeded.
    """
    if store.dialect == "sqlite":
        return _write_sqlite(store, head, kind, payload_text, durable=durable)
    with store.connect(write=True) as conn, conn.begin():
        if not durable:
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        if head.stale():
            head.seq, head.entry_hash = _read_head(conn)
        seq, created_at, prev_hash, entry_hash = _next(head, kind, payload_text)
        conn.execute(_INSERT, {"seq": seq, "created_at": created_at, "kind": kind, "payload": payload_text,
                               "prev_hash": prev_hash, "entry_hash": entry_hash})
        append_rows(conn, seq, entry_hash, prev_hash if seq > 1 else None)
    head.seq, head.entry_hash = seq, entry_hash
    return seq, created_at, prev_hash, entry_hash


def _next(head: SharedHead, kind: str, payload_text: str) -> tuple[int, str, str, str]:
    seq, prev_hash = (head.seq or 0) + 1, head.entry_hash
    created_at = db_time(utc_now())  # fixed width: text order is time order
    return seq, created_at, prev_hash, entry_hash_of_text(seq, created_at, kind, payload_text, prev_hash)


_SQL_ENTRY = ("INSERT INTO audit_log (seq, created_at, kind, payload, prev_hash, entry_hash) "
              "VALUES (?, ?, ?, ?, ?, ?)")
_SQL_TREE = "INSERT INTO audit_tree (level, idx, hash) VALUES (?, ?, ?)"
_SQL_HEAD = "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"


def _write_sqlite(store: Database, head: SharedHead, kind: str, payload_text: str, *,
                  durable: bool) -> tuple[int, str, str, str]:
    """The SQLite transaction, on the pooled DBAPI connection that ``open_database``'s hooks set up.

    BEGIN IMMEDIATE, two INSERTs, COMMIT with ``synchronous`` FULL (durable) or NORMAL (set back
    to FULL before the connection returns to the pool).
    """
    raw = store.engine.raw_connection()
    db: Any = raw.driver_connection
    sql = "BEGIN IMMEDIATE"
    try:
        if not durable:
            db.execute("PRAGMA synchronous = NORMAL")
        try:
            db.execute(sql)
            if head.stale():  # under the write lock: no other writer can move it now
                row = db.execute(_SQL_HEAD).fetchone()
                head.seq, head.entry_hash = (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)
            seq, created_at, prev_hash, entry_hash = _next(head, kind, payload_text)
            sql = _SQL_ENTRY
            db.execute(sql, (seq, created_at, kind, payload_text, prev_hash, entry_hash))
            sql = _SQL_TREE
            rows = tree_rows(seq, entry_hash, prev_hash if seq > 1 else None, lambda wanted: _siblings(db, wanted))
            db.executemany(sql, [(r["level"], r["idx"], r["hash"]) for r in rows])
            sql = "COMMIT"
            db.execute(sql)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            if not durable:
                db.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as e:
        raise DBAPIError.instance(sql, None, e, sqlite3.Error) from e
    finally:
        raw.close()
    head.seq, head.entry_hash = seq, entry_hash
    return seq, created_at, prev_hash, entry_hash


def _siblings(db: Any, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Stored tree nodes (at most log2(n) of them: one primary-key lookup each, OR-ed)."""
    where = " OR ".join(["(level = ? AND idx = ?)"] * len(wanted))
    params = [v for node in sorted(wanted) for v in node]
    found = {(int(lv), int(ix)): bytes(h) for lv, ix, h in
             db.execute(f"SELECT level, idx, hash FROM audit_tree WHERE {where}", params)}  # noqa: S608 - placeholders
    return check_found(wanted, found)


def reread_head(store: Database, head: SharedHead) -> tuple[int, str]:
    """Read the last entry from the database into ``head`` (after another writer took our slot)."""
    with store.connect() as conn:
        head.seq, head.entry_hash = _read_head(conn)
    return head.seq, head.entry_hash


def _read_head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(_HEAD).first()
    return (int(row[0]), str(row[1])) if row is not None else (0, GENESIS_HASH)


class WalFlusher:
    """Fsyncs a SQLite database's WAL within ``flush_s`` of a non-durable commit (a daemon thread).

        flusher = WalFlusher(store, 1.0); flusher.dirty()   # after a commit with synchronous=NORMAL
        flusher.flush()                                      # now: fsync the WAL, checkpoint it
        flusher.stop()                                       # a last flush, then the thread ends

    The thread wakes every ``flush_s`` while commits wait for their fsync and ends after ten idle
    periods (``dirty`` starts it again); at interpreter exit every flusher flushes once more.
    ``flushes`` counts the flushes that ran (for tests and the benchmark).
    """

    IDLE_PERIODS = 10

    def __init__(self, store: Database, flush_s: float) -> None:
        self._store = weakref.ref(store)
        self._path = store.engine.url.database if store.dialect == "sqlite" else None
        self.flush_s = flush_s
        self.flushes = 0
        self._dirty = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        _FLUSHERS.add(self)

    def bound(self, flush_s: float) -> None:
        """Keep the tightest bound asked for by the logs on this database."""
        self.flush_s = min(self.flush_s, flush_s)

    def dirty(self) -> None:
        """A commit waits for its fsync: flush within ``flush_s``."""
        if self._path is None:
            return
        with self._cond:
            self._dirty = True
            if self._thread is None or not self._thread.is_alive():
                self._stopped = False
                self._thread = threading.Thread(target=self._run, name="writ-audit-flush", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Fsync the WAL (every committed frame, whoever wrote it), then checkpoint it into the database file."""
        store = self._store()
        if self._path is None or store is None:
            return
        try:
            fd = os.open(self._path + "-wal", os.O_RDONLY)
        except FileNotFoundError:
            fd = None  # no WAL: the last connection checkpointed it (with its fsync) and removed it
        try:
            if fd is not None:
                os.fsync(fd)
            raw = store.engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # type: ignore[union-attr]
            finally:
                raw.close()
        finally:
            if fd is not None:
                os.close(fd)
        self.flushes += 1

    def stop(self) -> None:
        """End the thread after a last flush of what is still dirty."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, 2 * self.flush_s))
        self._flush_if_dirty()

    def _flush_if_dirty(self) -> bool:
        with self._cond:
            dirty, self._dirty = self._dirty, False
        if not dirty:
            return False
        try:
            self.flush()
        except Exception as e:  # noqa: BLE001 - the disk or database is away: try again next period
            log.error("cannot fsync the audit log's WAL %s-wal: %s", self._path, e)
            with self._cond:
                self._dirty = True
        return True

    def _run(self) -> None:
        idle = 0
        while self._store() is not None:
            with self._cond:
                if self._stopped:
                    return
                if idle >= self.IDLE_PERIODS and not self._dirty:
                    self._thread = None  # under the lock: a later dirty() starts another
                    return
                self._cond.wait(self.flush_s)
                if self._stopped:
                    return
            idle = 0 if self._flush_if_dirty() else idle + 1


_FLUSHERS: weakref.WeakSet[WalFlusher] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for flusher in list(_FLUSHERS):
        try:
            flusher.stop()
        except Exception as e:  # noqa: BLE001 - exiting: say so, go on
            log.error("audit WAL flush at exit failed: %s", e)
