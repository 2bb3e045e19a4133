"""Faults on purpose, for the approval workflow's attack tests: parts that go away as real ones do.

    audit = AuditLogAway(store); audit.away = True          # every append fails (a full disk), until set back
    audit = AuditLogRefusingOnce(store, kind="approval")    # the first entry of a kind fails (a database blink)
    with tables_away(pg_schema_url): ...                     # every query fails (a PostgreSQL restart)
    hook = SilentWebhook(); hook.url ... hook.release()      # a receiver that takes each POST and never answers
    Controller(RefusingInbox(refuse="bob@example.com"), ...) # an SMTP server that refuses one mailbox

Each is the real thing (the audit log, a socket, aiosmtpd, PostgreSQL) made to fail one way.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg

from support.gateway import free_port
from writ.attestations.audit import AuditEntry, AuditLog
from writ.engine.core.errors import AuditError

POSTGRES_URL = os.environ.get("WRIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class AuditLogAway(AuditLog):
    """The real audit log, except that while ``away`` every append fails as on a full disk or a database restart."""

    away = False

    def append(self, kind: str, payload: Mapping[str, Any], *, durable: bool = True) -> AuditEntry:
        if self.away:
            raise AuditError(f"cannot append a {kind!r} entry to the audit log: the disk is full (test)")
        return super().append(kind, payload, durable=durable)


class AuditLogRefusingOnce(AuditLog):
    """The real audit log, except that the first append of kind ``kind`` fails (a database that blinked)."""

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind, self.refused = kind, 0

    def append(self, kind: str, payload: Mapping[str, Any], *, durable: bool = True) -> AuditEntry:
        if kind == self.kind and not self.refused:
            self.refused += 1
            raise AuditError(f"cannot append a {kind!r} entry to the audit log: the database restarted (test)")
        return super().append(kind, payload, durable=durable)


@contextmanager
def tables_away(schema_url: str) -> Iterator[None]:
    """The test schema renamed for the block: every query of Writ's fails as on a database that is away."""
    schema = re.search(r"search_path%3D(\w+)", schema_url)
    assert schema is not None, schema_url
    admin = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER SCHEMA "{schema[1]}" RENAME TO "{schema[1]}_away"')
    try:
        yield
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER SCHEMA "{schema[1]}_away" RENAME TO "{schema[1]}"')


class SilentWebhook:
    """A receiver on loopback that accepts each POST and never answers (a hung service)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", free_port()))
        self.server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        self.held: list[socket.socket] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                self.held.append(self.server.accept()[0])
            except TimeoutError:
                continue

    def release(self) -> None:
        """Close every connection: the notices' threads get their answer and end (a worker can then stop)."""
        self._done.set()
        self._thread.join(5)
        for conn in self.held:
            conn.close()
        self.server.close()


class RefusingInbox:
    """An aiosmtpd handler that takes mail for everyone but ``refuse`` (550)."""

    def __init__(self, refuse: str) -> None:
        self.refuse = refuse
        self.delivered: list[str] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if address == self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.delivered.extend(envelope.rcpt_tos)
        return "250 Message accepted"
