"""Alembic environment for Writ's schema.

Writ migrates its database itself when it opens it (``writ.engine.core.db.migrate``)
and hands this script its connection, inside a transaction, as
``config.attributes["connection"]``. Run by the ``alembic`` command instead (to
write a new migration, see ``alembic.ini``), it connects to ``sqlalchemy.url``
or, when that is unset, to the database of ``Settings()``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import writ.engine.core.tables  # noqa: F401  (puts the tables on SQLModel.metadata)
from writ.engine.core.settings import Settings

config = context.config


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().effective_database_url


def run() -> None:
    if context.is_offline_mode():
        context.configure(
            url=_database_url(), target_metadata=SQLModel.metadata, literal_binds=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _migrate(connection)
        return
    from writ.engine.core.db import open_database  # the CLI path: same engine setup as Writ

    store = open_database(Settings(database_url=_database_url()), upgrade=False)
    try:
        with store.connect(write=True) as conn:
            _migrate(conn)
            conn.commit()
    finally:
        store.close()


run()
