"""Times, one way: always timezone-aware, written as RFC 3339 in UTC with a ``Z``.

    from writ.engine.core.timeutil import iso, parse_iso, utc_now
    iso(utc_now())                          # '2026-11-30T11:24:18.123456Z' (no fraction when it is zero)
    parse_iso("2026-11-22T10:00:00Z", "--at")
    db_time(t)                              # fixed width for the database: text order is time order

A naive datetime anywhere is a bug waiting to compare wrongly: each function refuses one with an
``InputError`` that says so.
"""

from __future__ import annotations

from datetime import UTC, datetime

from writ.engine.core import reasons
from writ.engine.core.errors import InputError, StoreError

_DB_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def aware(t: datetime, what: str = "a time") -> datetime:
    """``t`` itself if it carries a timezone; ``InputError`` if it is naive."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise InputError(f"{what} must be timezone-aware (e.g. 2026-11-22T10:00:00Z)", code=reasons.INPUT_INVALID)
    return t


def iso(t: datetime) -> str:
    """RFC 3339 in UTC with ``Z``; microseconds only when there are any."""
    return aware(t).astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str, what: str = "time") -> datetime:
    """An ISO 8601 / RFC 3339 time with a timezone (``Z`` for UTC); ``InputError`` naming ``what`` otherwise."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"{what} {text!r} is not an ISO 8601 time (e.g. 2026-11-22T10:00:00Z)") from None
    if t.tzinfo is None:
        raise InputError(f"{what} {text!r} has no timezone; add Z for UTC")
    return t


def db_time(t: datetime) -> str:
    """A time as the database stores it: UTC, fixed width with microseconds (text order is time order)."""
    return aware(t).astimezone(UTC).strftime(_DB_TIME)


def from_db_time(text: str) -> datetime:
    """A stored time; ``StoreError`` (``store_corrupt``) if the database holds something Writ never wrote."""
    try:
        return datetime.strptime(text, _DB_TIME).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise StoreError(
            f"the database holds the time {str(text)[:40]!r}, not YYYY-MM-DDTHH:MM:SS.ffffffZ: "
            "a row was written outside Writ",
            code=reasons.STORE_CORRUPT,
        ) from None
