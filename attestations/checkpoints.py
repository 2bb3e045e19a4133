"""Signed checkpoints of the audit log: made, stored, written outside the database, sent, read back.

    from writ.attestations.checkpoints import Checkpointer, read_checkpoint_file

    checkpoints = Checkpointer.from_settings(settings, store)     # the instance key of the data directory
    made = checkpoints.checkpoint()             # now: StoredCheckpoint(checkpoint=Checkpoint(origin, 1200, root), note=...)
    print(made.note)                            # the C2SP signed note (see writ.attestations.notes)
    log = AuditLog(store, on_append=checkpoints.after_append)   # or audit_log_for(settings, store)
    held = read_checkpoint_file(settings.home / "checkpoints.log", checkpoints.public_key)

A checkpoint is signed by the instance key (kept in the data directory, apart from the database),
stored in ``audit_checkpoints``, appended to the checkpoint file (default
``<data dir>/checkpoints.log``: each note followed by a blank line; copy it anywhere) and, when
``WRIT_CHECKPOINT__WEBHOOK_URL`` is set, POSTed there as ``text/plain``. Periodic checkpoints are
made after an append once ``every_entries`` entries were added, or ``every_seconds`` passed, since
the last one; a failure there is logged and never fails the append (the entry is committed).

Before signing, the tree's root at the size of the last stored checkpoint must still be the root
that checkpoint signed: Writ refuses to sign over a history that changed (``checkpoint_failed``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import col, select

from writ.attestations.instance_key import instance_key_path, load_instance_key
from writ.attestations.notes import (
    Checkpoint,
    CheckpointError,
    note_key_id,
    open_checkpoint,
    parse_note,
    sign_checkpoint,
    split_notes,
)
from writ.attestations.tree import AuditTree
from writ.engine.core import reasons
from writ.engine.core.db import Database, describe_db_error
from writ.engine.core.errors import AuditError, ConfigError, WritError
from writ.engine.core.settings import Settings
from writ.engine.core.tables import AuditCheckpointRow
from writ.engine.core.timeutil import db_time, from_db_time, utc_now
from writ.plans.keys import PrivateKey, PublicKey

__all__ = [
    "CHECKPOINT_FILE",
    "Checkpointer",
    "HeldCheckpoint",
    "StoredCheckpoint",
    "checkpoint_file",
    "default_origin",
    "instance_key_export",
    "periodic_checkpoints",
    "read_checkpoint_file",
]

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoints.log"


def default_origin(public_key: PublicKey) -> str:
    """``writ.`` and the first 16 hex digits of the instance key's id: one origin per Writ instance."""
    return "writ." + public_key.key_id.removeprefix("sha256:")[:16]


def instance_key_export(settings: Settings) -> dict[str, str] | None:
    """What an auditor needs to check this instance's checkpoints offline (``writ trust export``); None without a key.

        {"public_key": "<base64 of 32 bytes>", "key_id": "sha256:...", "checkpoint_origin": "writ.3f2a...",
         "note_key_id": "<8 hex>"}
    """
    if not instance_key_path(settings.home).exists():
        return None
    public_key = load_instance_key(settings.home).public_key
    origin = settings.checkpoint.origin or default_origin(public_key)
    return {"public_key": public_key.to_base64(), "key_id": public_key.key_id, "checkpoint_origin": origin,
            "note_key_id": note_key_id(origin, public_key).hex()}


def checkpoint_file(settings: Settings) -> Path:
    """Where checkpoints are appended: ``WRIT_CHECKPOINT__FILE``, or ``<data dir>/checkpoints.log``."""
    return settings.checkpoint.file or settings.home / CHECKPOINT_FILE


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint as stored: what it says, the exact signed note, when it was made, whether just now."""

    checkpoint: Checkpoint
    note: str
    created_at: str
    new: bool = False


@dataclass(frozen=True)
class HeldCheckpoint:
    """A checkpoint read from a file (or the database) whose signature verified, and where it came from."""

    checkpoint: Checkpoint
    source: str  # e.g. 'checkpoints.log, line 12'


class Checkpointer:
    """Makes and keeps signed checkpoints of one audit log. Safe to share between threads."""

    def __init__(
        self,
        store: Database,
        key: PrivateKey,
        *,
        origin: str | None = None,
        file: Path | None = None,
        webhook_url: str | None = None,
        every_entries: int = 0,
        every_seconds: float = 0.0,
        timeout_s: float = 5.0,
    ) -> None:
        """``file``: where notes are appended (None: nowhere). ``every_*`` = 0: no periodic checkpoints that way."""
        self._store = store
        self._key = key
        self.origin = origin or default_origin(key.public_key)
        Checkpoint(self.origin, 0, bytes(32))  # a bad origin fails here, not at the first checkpoint
        self.file = file
        self._webhook_url = webhook_url
        self._every_entries = every_entries
        self._every_seconds = every_seconds
        self._timeout_s = timeout_s
        self._tree = AuditTree(store)
        self._lock = threading.Lock()
        self._last: tuple[int, float] | None = None  # (size, unix time) of the newest checkpoint known

    @classmethod
    def from_settings(cls, settings: Settings, store: Database) -> Checkpointer:
        """The checkpointer of a data directory; ``ConfigError`` ``instance_key_missing`` without its key."""
        c = settings.checkpoint
        return cls(
            store,
            load_instance_key(settings.home),
            origin=c.origin,
            file=checkpoint_file(settings),
            webhook_url=c.webhook_url,
            every_entries=c.every_entries,
            every_seconds=c.every_seconds,
            timeout_s=c.timeout_s,
        )

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key

    def log_size(self) -> int:
        """How many entries the log holds now."""
        return self._tree.size()

    def checkpoint(self, *, wait_for_webhook: bool = True) -> StoredCheckpoint:
        """Sign the tree as it is now, store it, append it to the file, send it; the newest one if the log did not grow.

        ``AuditError`` (``checkpoint_failed``) when the log is empty, shrank, or changed under the last checkpoint.
        """
        latest = self.latest()  # first: the log only grows, so the root read next is at least as large
        size, root = self._tree.root()
        if size == 0:
            raise AuditError("the audit log is empty: there is nothing to checkpoint", code=reasons.CHECKPOINT_FAILED)
        if latest is not None:
            self._check_history(latest.checkpoint, size)
            if latest.checkpoint.size == size:
                return latest
        made = self._store_new(Checkpoint(self.origin, size, root))
        if made.new:
            self._write_file(made.note)
            self._send(made.note, wait=wait_for_webhook)
        self._last = (size, time.time())
        return made

    def after_append(self, seq: int) -> None:
        """Make a checkpoint if one is due after entry ``seq`` was appended. Never raises: failures are logged."""
        if not (self._every_entries or self._every_seconds) or not self._lock.acquire(blocking=False):
            return  # periodic checkpoints off, or another thread is making one now
        try:
            if self._last is None:
                latest = self.latest()
                self._last = (latest.checkpoint.size, from_db_time(latest.created_at).timestamp()) if latest else (0, 0.0)
            size, at = self._last
            due = (self._every_entries and seq - size >= self._every_entries) or (
                self._every_seconds and seq > size and time.time() - at >= self._every_seconds
            )
            if due:
                self.checkpoint(wait_for_webhook=False)
        except WritError as e:
            self._last = (seq, time.time())  # try again after the next interval, not at every append
            log.warning("writ: no audit checkpoint after entry %d: %s", seq, e.message)
        finally:
            self._lock.release()

    def latest(self) -> StoredCheckpoint | None:
        """The stored checkpoint of the largest tree, unverified (it is for display and the signer's check)."""
        try:
            with self._store.session() as session:
                query = select(AuditCheckpointRow).order_by(col(AuditCheckpointRow.tree_size).desc()).limit(1)
                row = session.exec(query).first()
        except SQLAlchemyError as e:
            raise AuditError(f"cannot read checkpoints in {self._store.url}: {describe_db_error(e)}") from e
        return _stored(row) if row is not None else None

    def stored(self) -> list[HeldCheckpoint]:
        """Every checkpoint in the database whose signature verifies with this instance's key, smallest first."""
        try:
            with self._store.session() as session:
                rows = list(session.exec(select(AuditCheckpointRow).order_by(col(AuditCheckpointRow.tree_size))))
        except SQLAlchemyError as e:
            raise AuditError(f"cannot read checkpoints in {self._store.url}: {describe_db_error(e)}") from e
        return [
            HeldCheckpoint(open_checkpoint(r.note, self.public_key), f"the database's checkpoint of size {r.tree_size}")
            for r in rows
        ]

    # -- internals --------------------------------------------------------------------------------------

    def _check_history(self, last: Checkpoint, size: int) -> None:
        if size < last.size:
            raise AuditError(
                f"the audit log holds {size} entries, fewer than the {last.size} of its last checkpoint: "
                "entries were removed; run `writ audit verify`",
                code=reasons.CHECKPOINT_FAILED,
            )
        _, root = self._tree.root(last.size)
        if root != last.root:
            raise AuditError(
                f"the audit log's tree of {last.size} entries no longer has the root its checkpoint signed: "
                "entries were rewritten; run `writ audit verify`",
                code=reasons.CHECKPOINT_FAILED,
            )

    def _store_new(self, checkpoint: Checkpoint) -> StoredCheckpoint:
        note = sign_checkpoint(checkpoint, self._key)
        row = AuditCheckpointRow(
            tree_size=checkpoint.size,
            root_hash=checkpoint.root_b64,
            origin=checkpoint.origin,
            key_id=self._key.key_id,
            note=note,
            created_at=db_time(utc_now()),
        )
        try:
            with self._store.session(write=True) as session:
                session.add(row)
                session.commit()
                return StoredCheckpoint(checkpoint, note, row.created_at, new=True)
        except IntegrityError:  # another process checkpointed this very size first: theirs is the same tree
            latest = self.latest()
            if latest is None or latest.checkpoint.size != checkpoint.size:
                raise AuditError("a checkpoint of this size appeared and vanished", code=reasons.CHECKPOINT_FAILED) from None
            return latest
        except SQLAlchemyError as e:
            raise AuditError(
                f"cannot store a checkpoint in {self._store.url}: {describe_db_error(e)}", code=reasons.CHECKPOINT_FAILED
            ) from e

    def _write_file(self, note: str) -> None:
        if self.file is None:
            return
        try:  # one write with O_APPEND: notes of several processes never interleave
            fd = os.open(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (note + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise AuditError(
                f"checkpoint stored in the database but not appended to {self.file}: {e.strerror}",
                code=reasons.CHECKPOINT_FAILED,
            ) from None

    def _send(self, note: str, *, wait: bool) -> None:
        if not self._webhook_url:
            return
        if wait:
            self._post(note, raise_errors=True)
        else:  # an append must not wait for a receiver; the file and the database hold the checkpoint
            threading.Thread(target=self._post, args=(note, False), daemon=True, name="writ-checkpoint-webhook").start()

    def _post(self, note: str, raise_errors: bool) -> None:
        import httpx

        url = self._webhook_url or ""
        try:
            with httpx.Client(timeout=self._timeout_s, follow_redirects=False) as client:
                response = client.post(url, content=note.encode(),
                                       headers={"Content-Type": "text/plain; charset=utf-8"})
            if response.status_code >= 300:
                raise AuditError(f"checkpoint webhook answered HTTP {response.status_code}",
                                 code=reasons.CHECKPOINT_FAILED)
        except (httpx.HTTPError, httpx.InvalidURL, OSError, AuditError) as e:
            message = e.message if isinstance(e, AuditError) else f"checkpoint webhook failed: {type(e).__name__}"
            if raise_errors:
                raise AuditError(message, code=reasons.CHECKPOINT_FAILED) from None
            log.warning("writ: %s", message)


@contextmanager
def periodic_checkpoints(settings: Settings, store: Database) -> Iterator[Checkpointer | None]:
    """For a long-running process: a thread that checkpoints every ``every_seconds`` if the log grew.

    Appends check the interval only when they happen; this signs the last entries of a log that
    went quiet. None (and no thread) without an instance key or with ``every_seconds`` 0.
    """
    interval = settings.checkpoint.every_seconds
    if not interval or not instance_key_path(settings.home).exists():
        yield None
        return
    checkpoints = Checkpointer.from_settings(settings, store)
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            try:
                size = checkpoints.log_size()
            except WritError as e:
                log.warning("writ: no periodic audit checkpoint: %s", e.message)
                continue
            checkpoints.after_append(size)

    thread = threading.Thread(target=run, daemon=True, name="writ-checkpoints")
    thread.start()
    try:
        yield checkpoints
    finally:
        stop.set()
        thread.join(timeout=30)


def _stored(row: AuditCheckpointRow) -> StoredCheckpoint:
    try:
        checkpoint = Checkpoint.from_body(parse_note(row.note).text)
    except CheckpointError as e:
        raise AuditError(f"stored checkpoint of size {row.tree_size} is malformed: {e.message}") from None
    return StoredCheckpoint(checkpoint, row.note, row.created_at)


def read_checkpoint_file(path: Path, public_key: PublicKey) -> list[HeldCheckpoint]:
    """Every checkpoint in ``path`` (notes each followed by a blank line), each verified with ``public_key``.

    ``[]`` when the file does not exist; ``CheckpointError`` naming the file and line of the first
    note that is malformed or not signed by ``public_key``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read checkpoints from {path}: {getattr(e, 'strerror', None) or e}") from None
    held = []
    for line, note in split_notes(text, str(path)):
        try:
            held.append(HeldCheckpoint(open_checkpoint(note, public_key), f"{path}, line {line}"))
        except CheckpointError as e:
            raise CheckpointError(f"{path}, line {line}: {e.message}") from None
    return held
