"""The OPA bundle of every policy revision this instance loaded, kept for attestation bundles (ADR 0022).

    bundles = PolicyBundles(store)
    bundles.record("sha256:9c1e...", bundle_bytes(policy_set))   # once per revision; later calls keep the first
    bundles.get("sha256:9c1e...")                                # the .tar.gz bytes, or None

Policies change; a plan's calls were decided by the revision in force then. The composition
root (``writ.engine.wiring.policy_record``) records each revision when an engine first loads
it, and ``writ attest export`` copies the revisions a plan needs into its bundle, refusing when
one was never recorded. The bytes are what ``writ.engine.policy.bundle.bundle_bytes`` gives:
reproducible, so a revision has one bundle; the verifier recomputes the revision from them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from writ.engine.core.db import Database, db_errors
from writ.engine.core.tables import PolicyBundleRow
from writ.engine.core.timeutil import db_time, utc_now

__all__ = ["PolicyBundles"]


class PolicyBundles:
    """Policy bundles by revision, in the instance's database; the first stored for a revision stays.

        PolicyBundles(store).record(ps.revision, bundle_bytes(ps))   # True when it was new
    """

    def __init__(self, store: Database) -> None:
        self._store = store
        self._known: set[str] = set()  # revisions this process already found stored: one read per revision

    def record(self, revision: str, bundle: bytes, *, now: datetime | None = None) -> bool:
        """Keep ``bundle`` as ``revision``'s unless one is stored; True if this call stored it."""
        if revision in self._known:
            return False
        with db_errors(self._store, f"record policy revision {revision}"):
            with self._store.session(write=True) as session:
                if session.get(PolicyBundleRow, revision) is not None:
                    self._known.add(revision)
                    return False
                session.add(PolicyBundleRow(revision=revision, bundle=bundle, first_seen=db_time(now or utc_now())))
                try:
                    session.commit()
                except IntegrityError:  # another process stored it first: the same bytes
                    self._known.add(revision)
                    return False
        self._known.add(revision)
        return True

    def get(self, revision: str) -> bytes | None:
        """The bundle stored for ``revision``, or None."""
        with db_errors(self._store, f"read policy revision {revision}"), self._store.session() as session:
            row = session.get(PolicyBundleRow, revision)
        return bytes(row.bundle) if row is not None else None

    def revisions(self) -> list[tuple[str, str]]:
        """(revision, first seen) of every stored bundle, oldest first."""
        with db_errors(self._store, "list policy revisions"), self._store.session() as session:
            rows = session.exec(select(PolicyBundleRow.revision, PolicyBundleRow.first_seen)).all()
        return sorted(((r, t) for r, t in rows), key=lambda x: x[1])
