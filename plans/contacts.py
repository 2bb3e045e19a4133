"""Where to reach a principal: the email address the approval workflow notifies an approver at.

    contacts = ContactStore(db, audit=AuditLog(db))
    contacts.set_email("alice", "alice@example.com")     # None before; audited (trust_event contact_changed)
    contacts.email("alice")                              # 'alice@example.com'
    contacts.emails(["alice", "bob"])                    # {'alice': 'alice@example.com'} (bob has none)
    contacts.set_email("alice", None)                    # cleared; 'alice@example.com' before
    check_email("bob@example.com")                       # the address as stored; InputError if malformed

A contact is not trust: it proves nothing and verifies nothing, so a change does not bump the
trust revision. It only decides where a notice goes, which is why each change is still audited:
who redirected an approver's notices, and when, is in the log. The audit entry holds a SHA-256
of the address (``email_sha256``), not the address itself, so that the hash-chained log, which
can never be edited, holds no personal data in the clear.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from writ.engine.core import reasons
from writ.engine.core.db import Database, db_errors
from writ.engine.core.errors import ConflictError, InputError, NotFoundError
from writ.engine.core.ports import AuditSink
from writ.engine.core.tables import PrincipalContactRow, PrincipalRow
from writ.engine.core.timeutil import db_time, utc_now

__all__ = ["MAX_EMAIL_CHARS", "ContactStore", "check_email", "email_digest"]

MAX_EMAIL_CHARS = 254
"""The longest address SMTP can carry (RFC 5321: a 256-octet path minus its angle brackets)."""

# A plain addr-spec: a dot-atom local part and a host name. No quoted local parts, comments,
# display names, IP literals, spaces, commas or control characters: nothing an SMTP server or
# a mail header could read as a second address or a second header.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*")


def check_email(address: str) -> str:
    """``address`` as Writ stores it (surrounding spaces dropped, the domain in lower case).

    ``InputError`` unless it is a plain ``local@host.domain`` of at most 254 characters.
    """
    if not isinstance(address, str):
        raise InputError(f"an email address is text, got {type(address).__name__}", code=reasons.INPUT_INVALID)
    text = address.strip()
    if len(text) > MAX_EMAIL_CHARS:
        raise InputError(f"email address of {len(text)} characters; at most {MAX_EMAIL_CHARS} are allowed",
                         code=reasons.INPUT_INVALID)
    if not _EMAIL.fullmatch(text) or len(text.split("@", 1)[0]) > 64:
        raise InputError(f"{text[:100]!r} is not an email address like alice@example.com (one address, no name, "
                         "no spaces)", code=reasons.INPUT_INVALID)
    local, domain = text.split("@", 1)
    return f"{local}@{domain.lower()}"


def email_digest(address: str) -> str:
    """``sha256:<hex>`` of the address in lower case: what the audit log records instead of it."""
    return "sha256:" + hashlib.sha256(address.lower().encode("utf-8")).hexdigest()


class ContactStore:
    """The ``principal_contacts`` rows: at most one email per principal, changed (audited) by an operator.

        ContactStore(db, audit=AuditLog(db)).emails(["alice", "bob"])     # {'alice': 'alice@example.com'}
    """

    def __init__(self, store: Database, *, audit: AuditSink) -> None:
        self._store = store
        self._audit = audit

    def email(self, principal: str) -> str | None:
        """The principal's email, or None when it has none (or there is no such principal)."""
        with db_errors(self._store, f"read the email of {principal!r}"), self._store.session() as session:
            row = session.get(PrincipalContactRow, principal)
        return row.email if row is not None else None

    def emails(self, names: Iterable[str]) -> dict[str, str]:
        """The email of each of ``names`` that has one (one query); principals without one are left out."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        query = select(PrincipalContactRow).where(col(PrincipalContactRow.principal).in_(wanted))
        with db_errors(self._store, "read approvers' emails"), self._store.session() as session:
            return {row.principal: row.email for row in session.exec(query)}

    def set_email(self, principal: str, email: str | None, *, now: datetime | None = None) -> str | None:
        """Set (or with None clear) the principal's email; the address it had before.

        ``NotFoundError`` (``principal_not_found``) for an unknown principal, ``InputError`` for a
        malformed address. An unchanged address writes and audits nothing.
        """
        new = check_email(email) if email is not None else None
        when = db_time(now or utc_now())
        with db_errors(self._store, f"set the email of {principal!r}"), self._store.session(write=True) as session:
            if session.get(PrincipalRow, principal) is None:
                raise NotFoundError(f"no principal {principal!r}; add it with `writ principals add {principal} "
                                    "--role ROLE`", code=reasons.PRINCIPAL_NOT_FOUND)
            row = session.get(PrincipalContactRow, principal)
            old = row.email if row is not None else None
            if old == new:
                return old
            if new is None:
                session.delete(row)
            elif row is None:
                session.add(PrincipalContactRow(principal=principal, email=new, updated_at=when))
            else:
                row.email, row.updated_at = new, when
                session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                raise ConflictError(f"the email of {principal!r} was changed by another process just now; "
                                    "run the command again", code=reasons.CONFLICT) from None
        self._audit.append("trust_event", {
            "event": "contact_changed", "principal": principal, "change": "cleared" if new is None else "set",
            "email_sha256": email_digest(new) if new is not None else None})
        return old
