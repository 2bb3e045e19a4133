"""Approvers log in without passwords: a server challenge signed by the key their browser enrolled.

    sessions = SessionStore(db, trust, audit=audit, lifetime=timedelta(minutes=30))
    challenge = sessions.challenge("alice", origin="http://127.0.0.1:8420")     # Challenge(id, payload)
    session, cookie = sessions.login(challenge.id, key_id, signature, origin="http://127.0.0.1:8420")
    sessions.current(cookie)           # the live WebSession, or None (unknown, expired, logged out)
    sessions.end(cookie)

A challenge is a small JSON statement (``login_payload``: principal, origin, a random nonce,
when it was issued) stored until it is used once or its minutes pass. The browser checks that
it names its own origin and principal, then signs the DSSE PAE of it with type
``application/vnd.writ.login+json`` (never an approval's type, so a login signature can never
count as a decision). ``login`` checks, in order: the challenge is open and for this origin;
the principal exists, is an approver and is neither disabled nor locked; the key is one a
browser enrolled for them and is valid now; the signature verifies. Each refusal of a known
principal and each login is audited (``web_session``). The session cookie is random; only its
SHA-256 is stored, and it ends at ``expires_at``, at logout, or when the principal is disabled
or locked (checked on every request by the routes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import col, select

from writ.engine.core import reasons
from writ.engine.core.db import Database, db_errors
from writ.engine.core.errors import InputError, NotFoundError, PermissionDenied, SignatureError, WritError
from writ.engine.core.ports import AuditSink
from writ.engine.core.tables import WebChallengeRow, WebKeyRow, WebSessionRow
from writ.engine.core.timeutil import db_time, from_db_time, iso, utc_now
from writ.plans.canonical import canonical_bytes
from writ.plans.dsse import pae
from writ.plans.trust_store import TrustStore

__all__ = ["LOGIN_PAYLOAD_TYPE", "Challenge", "SessionStore", "WebSession", "login_payload"]

LOGIN_PAYLOAD_TYPE = "application/vnd.writ.login+json"
LOGIN_TYPE = "https://writ.dev/login/v1"
CHALLENGE_LIFETIME = timedelta(minutes=2)


def _sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def login_payload(challenge_id: str, principal: str, origin: str, nonce: str, issued_at: datetime) -> bytes:
    """What the browser signs to log in (RFC 8785)."""
    return canonical_bytes({"_type": LOGIN_TYPE, "challenge": challenge_id, "issued_at": iso(issued_at),
                            "nonce": nonce, "origin": origin, "principal": principal})


@dataclass(frozen=True)
class Challenge:
    """A login challenge: its id and the exact bytes to sign."""

    id: str
    payload: bytes


@dataclass(frozen=True)
class WebSession:
    """A live approver session: who, with which enrolled key, until when.

        WebSession(id="ses-3f2a9c1b0d4e", principal="alice", key_id="sha256:...", expires_at=...)
    """

    id: str
    principal: str
    key_id: str
    created_at: datetime
    expires_at: datetime


class SessionStore:
    """Login challenges and approver sessions in the database. Process-safe (state lives in rows)."""

    def __init__(self, store: Database, trust: TrustStore, *, audit: AuditSink, lifetime: timedelta) -> None:
        self._store = store
        self._trust = trust
        self._audit = audit
        self.lifetime = lifetime

    def challenge(self, principal: str, *, origin: str, now: datetime | None = None) -> Challenge:
        """A new challenge for ``principal`` (who may not exist: the answer does not tell); old ones are cleared."""
        now = now or utc_now()
        cid = f"chl-{secrets.token_hex(8)}"
        payload = login_payload(cid, principal, origin, secrets.token_hex(16), now)
        with db_errors(self._store, "store a login challenge"), self._store.session(write=True) as s:
            s.exec(delete(WebChallengeRow).where(col(WebChallengeRow.expires_at) <= db_time(now)))
            s.add(WebChallengeRow(id=cid, principal=principal[:128], payload=payload.decode(), created_at=db_time(now),
                                  expires_at=db_time(now + CHALLENGE_LIFETIME)))
            s.commit()
        return Challenge(cid, payload)

    def login(self, challenge_id: str, key_id: str, signature_b64: str, *, origin: str,
              now: datetime | None = None) -> tuple[WebSession, str]:
        """Check a signed challenge (see the module doc); a new session and its cookie value. Audited."""
        now = now or utc_now()
        row = self._spend_challenge(challenge_id, origin, now)
        principal = row.principal
        try:
            self._check_principal(principal)
            self._check_signature(principal, key_id, signature_b64, row.payload.encode(), now)
        except WritError as e:
            if self._known(principal):
                self._audit.append("web_session", {"event": "login_refused", "principal": principal,
                                                   "key_id": key_id[:71], "code": e.code, "reason": e.message})
            raise
        token = secrets.token_urlsafe(32)
        session = WebSession(f"ses-{secrets.token_hex(6)}", principal, key_id, now, now + self.lifetime)
        with db_errors(self._store, "store a web session"), self._store.session(write=True) as s:
            s.add(WebSessionRow(id=session.id, token_sha256=_sha256(token), principal=principal, key_id=key_id,
                                created_at=db_time(now), expires_at=db_time(session.expires_at)))
            s.commit()
        self._audit.append("web_session", {"event": "login", "principal": principal, "session_id": session.id,
                                           "key_id": key_id, "expires_at": iso(session.expires_at)})
        return session, token

    def _spend_challenge(self, challenge_id: str, origin: str, now: datetime) -> WebChallengeRow:
        """The challenge, marked used; ``challenge_invalid`` if unknown, used, expired or for another origin."""
        table = WebChallengeRow.__table__  # type: ignore[attr-defined]
        with db_errors(self._store, "use a login challenge"), self._store.connect(write=True) as conn:
            done = conn.execute(update(table).where(
                table.c.id == challenge_id[:32], table.c.used_at.is_(None), table.c.expires_at > db_time(now),
            ).values(used_at=db_time(now))).rowcount
            conn.commit()
        with db_errors(self._store, "read a login challenge"), self._store.session() as s:
            row = s.get(WebChallengeRow, challenge_id[:32])
        if done != 1 or row is None:
            raise InputError("the login challenge is unknown, used or expired: reload the login page and try again",
                             code=reasons.CHALLENGE_INVALID)
        if json.loads(row.payload).get("origin") != origin:
            raise InputError("the login challenge was issued for another origin", code=reasons.CHALLENGE_INVALID)
        return row

    def _known(self, principal: str) -> bool:
        try:
            self._trust.principal(principal)
        except NotFoundError:
            return False
        return True

    def _check_principal(self, principal: str) -> None:
        try:
            owner = self._trust.principal(principal)
        except NotFoundError:
            raise SignatureError(f"no browser key of {principal!r} signed this challenge: enrol this browser with an "
                                 "invite link first", code=reasons.LOGIN_FAILED) from None
        if owner.role != "approver":
            raise PermissionDenied(f"principal {owner.name!r} has role {owner.role}: only approvers log in here",
                                   code=reasons.WEB_ROLE_FORBIDDEN)
        refusal = self._trust.principal_state(owner.name).refusal()
        if refusal is not None:
            raise PermissionDenied(refusal[1], code=refusal[0])

    def _check_signature(self, principal: str, key_id: str, signature_b64: str, payload: bytes, now: datetime) -> None:
        """The signature verifies under ``key_id``, a browser-enrolled key of ``principal`` valid now."""
        with db_errors(self._store, "find an enrolled browser key"), self._store.session() as s:
            enrolled = s.exec(select(WebKeyRow).where(col(WebKeyRow.key_id) == key_id[:71],
                                                      col(WebKeyRow.principal) == principal)).first()
        trusted = self._trust.trust_set().key(key_id) if enrolled is not None else None
        if trusted is None or trusted.principal != principal:
            raise SignatureError(f"key {key_id[:19]}.. is not a browser key of {principal!r}: enrol this browser with "
                                 "an invite link", code=reasons.LOGIN_FAILED)
        invalid = trusted.invalid_reason(now)
        if invalid is not None:
            raise SignatureError(f"the browser key of {principal!r} is {invalid}: ask for a new invite",
                                 code=reasons.LOGIN_FAILED)
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            trusted.public_key.verify(signature, pae(LOGIN_PAYLOAD_TYPE, payload))
        except (ValueError, SignatureError):
            raise SignatureError("the challenge's signature does not verify under the browser key",
                                 code=reasons.LOGIN_FAILED) from None

    def current(self, token: str, *, now: datetime | None = None) -> WebSession | None:
        """The live session of a cookie value; None if unknown, ended or expired."""
        wanted = _sha256(token)
        with db_errors(self._store, "look up a web session"), self._store.session() as s:
            row = s.exec(select(WebSessionRow).where(col(WebSessionRow.token_sha256) == wanted)).first()
        if row is None or row.ended_at is not None or not hmac.compare_digest(row.token_sha256, wanted):
            return None
        session = WebSession(row.id, row.principal, row.key_id, from_db_time(row.created_at),
                             from_db_time(row.expires_at))
        return session if (now or utc_now()) < session.expires_at else None

    def end(self, token: str, *, now: datetime | None = None) -> WebSession | None:
        """Log out: the session ends now (audited); None if there was no live one."""
        session = self.current(token, now=now)
        if session is None:
            return None
        table = WebSessionRow.__table__  # type: ignore[attr-defined]
        with db_errors(self._store, "end a web session"), self._store.connect(write=True) as conn:
            conn.execute(update(table).where(table.c.id == session.id, table.c.ended_at.is_(None))
                         .values(ended_at=db_time(now or utc_now())))
            conn.commit()
        self._audit.append("web_session", {"event": "logout", "principal": session.principal,
                                           "session_id": session.id})
        return session
