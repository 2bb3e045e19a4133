"""Principals and keys as the trust store holds them (``writ.plans.trust_store`` reads and writes them).

    record = trust.key("3f2a9c0d41be")            # KeyRecord
    record.trusted                                # the TrustedKey verification uses
    record.status(now)                            # 'valid', or why not

A stored key was checked when it entered the trust store (``PublicKey`` refuses weak and
non-canonical keys); reading it back checks it again, once per key per process
(``stored_public_key``), not on every read of the trust set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from writ.engine.core.tables import TrustedKeyRow
from writ.engine.core.timeutil import from_db_time
from writ.plans.keys import PublicKey
from writ.plans.trust import TrustedKey

__all__ = ["KeyRecord", "PrincipalRecord", "key_record", "stored_public_key"]


@lru_cache(maxsize=4096)
def stored_public_key(text: str) -> PublicKey:
    """The ``PublicKey`` of a stored base64 key, parsed and checked once per distinct text (keys are immutable)."""
    return PublicKey.from_base64(text)


def _opt_time(text: str | None) -> datetime | None:
    return from_db_time(text) if text is not None else None


@dataclass(frozen=True)
class PrincipalRecord:
    """A principal as stored, with the groups it is in now (both sources)."""

    name: str
    role: str
    created_at: datetime
    groups: tuple[str, ...]


@dataclass(frozen=True)
class KeyRecord:
    """A trusted key as stored; ``trusted`` is the ``TrustedKey`` that verification uses."""

    key_id: str
    principal: str
    role: str
    public_key: str  # base64 of the 32 raw bytes
    not_before: datetime | None
    not_after: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    @property
    def trusted(self) -> TrustedKey:
        return TrustedKey(
            principal=self.principal,
            role=self.role,
            public_key=stored_public_key(self.public_key),
            not_before=self.not_before,
            not_after=self.not_after,
            revoked_at=self.revoked_at,
        )

    def status(self, now: datetime) -> str:
        """``valid``, or why not (``revoked at ...``, ``expired at ...``, ``not valid before ...``)."""
        return self.trusted.invalid_reason(now) or "valid"


def key_record(row: TrustedKeyRow) -> KeyRecord:
    return KeyRecord(
        key_id=row.key_id,
        principal=row.principal,
        role=row.role,
        public_key=row.public_key,
        not_before=_opt_time(row.not_before),
        not_after=_opt_time(row.not_after),
        revoked_at=_opt_time(row.revoked_at),
        created_at=from_db_time(row.created_at),
    )
