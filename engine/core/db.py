"""Open Writ's database: one engine, its schema migrated to the latest revision.

    from writ.engine.core.settings import Settings
    from writ.engine.core.db import open_database

    with open_database(Settings()) as store:        # .writ/writ.sqlite, WAL, migrated to head
        with store.session(write=True) as session:
            session.add(row)
            session.commit()

SQLite (the default, in the data directory) runs in WAL mode with a busy timeout
and foreign keys on, and SQLAlchemy emits every ``BEGIN`` itself:
``session(write=True)`` begins with ``BEGIN IMMEDIATE``, so a transaction that
reads and then writes takes the write lock up front and never fails half way with
"database is locked". PostgreSQL is used when the URL is ``postgresql+psycopg://...``
(several gateways); it gets a lock timeout, so a stuck lock fails instead of hanging.

Migrations are Alembic scripts inside this package, run in code by ``migrate()``
under a lock (SQLite's write lock, a PostgreSQL advisory lock), so several
processes may open a fresh database at once. A database already at the newest
revision is not handed to Alembic at all (nor is Alembic imported): a command
that only reads starts fast. Every failure is a ``StoreError`` that names the
database and the reason.

``create=False`` is for a data directory that must already exist (every ``writ``
command but ``writ init``): a missing SQLite file, or a database without Writ's
schema (e.g. an empty PostgreSQL database), is ``StoreError`` ``store_missing``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlmodel import Session

from writ.engine.core import reasons
from writ.engine.core.errors import StoreError
from writ.engine.core.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# How long a statement waits for a lock before failing (SQLite busy_timeout,
# PostgreSQL lock_timeout unless the URL or the role already sets one).
LOCK_TIMEOUT_MS = 10_000
# Key of the PostgreSQL advisory lock held while migrating ("WRIT" + 1).
_MIGRATION_LOCK_KEY = 0x5752_4954_0001
# Execution option read by the SQLite "begin" hook: DEFERRED or IMMEDIATE.
_SQLITE_BEGIN = "writ_sqlite_begin"


class Database:
    """An open database: the engine, and sessions on it. Close it when done."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url  # printable: the password is hidden
        self._write_engine = engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def session(self, *, write: bool = False) -> Session:
        """A new SQLModel session. ``write=True`` when the transaction will write (see module doc)."""
        return Session(self._write_engine if write else self.engine)

    def connect(self, *, write: bool = False) -> Connection:
        """A new Core connection, same rule for ``write`` as ``session``."""
        return (self._write_engine if write else self.engine).connect()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.url!r})"


def open_database(settings: Settings, *, create: bool = True, upgrade: bool = True) -> Database:
    """Connect to ``settings.effective_database_url`` and migrate it to the latest schema.

    ``create=False`` refuses a SQLite file that does not exist and a database that holds no
    Writ schema (``store_missing``, naming ``writ init``); ``upgrade=False`` leaves the schema
    as it is (for Alembic's own command line).
    """
    url = _parse_url(settings.effective_database_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        _prepare_sqlite_file(url, settings, create=create)
        engine = create_engine(url)
        _install_sqlite_hooks(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
        _install_postgres_hooks(engine)
    store = Database(engine, shown)
    try:
        with engine.connect() as conn:
            revision = current_revision(conn)
        if revision is None and not create:
            raise StoreError(
                f"database {shown} holds no Writ schema: run 'writ init --data-dir {settings.home}'",
                code=reasons.STORE_MISSING,
            )
        if upgrade and revision != head_revision():
            migrate(store)
    except SQLAlchemyError as e:
        engine.dispose()
        raise StoreError(f"cannot open database {shown}: {describe_db_error(e)}") from e
    except StoreError:
        engine.dispose()
        raise
    return store


def current_revision(conn: Connection) -> str | None:
    """The schema revision of the database (None: no Writ schema at all)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(value) if value is not None else None


@cache
def head_revision() -> str:
    """The newest revision shipped in ``migrations/versions`` (read from the scripts, without Alembic)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text()
        found = re.search(r'^revision(?:: str)? = "([^"]+)"', source, re.MULTILINE)
        if found is None:
            continue
        revisions.add(found.group(1))
        parents |= set(re.findall(r'^down_revision(?:: [^=]+)? = "([^"]+)"', source, re.MULTILINE))
    heads = revisions - parents
    if len(heads) != 1:
        raise StoreError(f"the migrations in {MIGRATIONS_DIR} have {len(heads)} heads, expected 1: {sorted(heads)}")
    return heads.pop()


def migrate(store: Database, revision: str = "head") -> None:
    """Upgrade the schema to ``revision``, one process at a time."""
    from alembic import command
    from alembic.util.exc import CommandError

    try:
        with store.connect(write=True) as conn, conn.begin():
            if store.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    except CommandError as e:
        raise StoreError(f"cannot migrate database {store.url}: {describe_db_error(e)}") from e


def alembic_config() -> Config:
    """An Alembic config for the migrations shipped in this package (independent of the cwd)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


@contextmanager
def db_errors(store: Database, what: str) -> Iterator[None]:
    """Turn any database error inside the block into ``StoreError("cannot <what> in <url>: ...")``."""
    try:
        yield
    except SQLAlchemyError as e:
        raise StoreError(f"cannot {what} in {store.url}: {describe_db_error(e)}") from e


def describe_db_error(e: BaseException) -> str:
    """The database's own message, on one line, without SQLAlchemy's boilerplate."""
    reason = e.orig if isinstance(e, DBAPIError) and e.orig is not None else e
    return " ".join(str(reason).split()) or type(reason).__name__


def _parse_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError as e:
        raise StoreError(
            "database URL is not a SQLAlchemy URL: expected sqlite:///PATH "
            "or postgresql+psycopg://USER@HOST:PORT/DB"
        ) from e
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise StoreError(
            f"database {url.render_as_string(hide_password=True)} is not supported: "
            "expected sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
        )
    return url


def _prepare_sqlite_file(url: URL, settings: Settings, *, create: bool) -> None:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return
    path = Path(url.database).expanduser()
    if path.exists():
        return
    if not create:
        what = "data directory" if path.parent == settings.home and not path.parent.exists() else "database"
        at = path.parent if what == "data directory" else path
        raise StoreError(
            f"no Writ {what} at {at}: run 'writ init --data-dir {settings.home}'", code=reasons.STORE_MISSING
        )
    if not path.parent.is_dir():
        try:
            # exist_ok: several processes may open a new data directory at once.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create data directory {path.parent}: {e.strerror or e}"
            ) from e


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN (see _on_begin): the sqlite3 module's own
        # transaction handling skips BEGIN before SELECT and DDL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {LOCK_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


def _install_postgres_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            if cursor.fetchone()[0] == "0":
                cursor.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
            # A durable audit append is flushed before its commit returns, whatever the role or server
            # default; only AuditLog.append(durable=False) turns it off, per transaction (ADR 0021).
            cursor.execute("SHOW synchronous_commit")
            if cursor.fetchone()[0] == "off":
                cursor.execute("SET synchronous_commit = on")
        dbapi_connection.autocommit = autocommit
