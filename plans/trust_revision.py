"""The trust store's revision number: one counter, bumped in the same transaction as every trust change.

    with db.session(write=True) as session:
        session.add(PrincipalRow(name="carol", role="approver", created_at=stamp))
        bump_revision(session)          # inside the change's own transaction, before its commit
        session.commit()
    read_revision(db)                   # 8: one row read, no key parsed

A result verified under revision N still holds while the revision is N: the plan store
caches whether an executing plan is backed keyed on it (``writ.plans.backing``), so a
step claim re-verifies only after principals, keys, revocations or groups changed.
``TrustStore.bump`` and ``TrustStore.revision`` are the public doors to this module.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, insert, select, update
from sqlmodel import Session

from writ.engine.core.db import Database, db_errors
from writ.engine.core.tables import TrustRevisionRow

__all__ = ["TRUST_REVISION", "bump_revision", "read_revision"]

TRUST_REVISION: Table = TrustRevisionRow.__table__  # type: ignore[attr-defined]
_ROW = 1


def bump_revision(executor: Session | Connection) -> None:
    """Add one to the revision in ``executor``'s open transaction (a SQLModel session or a Core connection).

    On PostgreSQL the UPDATE holds the row until commit, so trust changes are counted one at a time.
    """
    t = TRUST_REVISION
    done: Any = executor.execute(update(t).where(t.c.id == _ROW).values(revision=t.c.revision + 1))
    if done.rowcount == 0:  # a database whose tables were made without the migrations' first row
        executor.execute(insert(t).values(id=_ROW, revision=1))


def read_revision(store: Database) -> int:
    """The current revision (0 before any trust change)."""
    with db_errors(store, "read the trust store's revision"), store.connect() as conn:
        value = conn.execute(select(TRUST_REVISION.c.revision).where(TRUST_REVISION.c.id == _ROW)).scalar()
    return int(value or 0)
