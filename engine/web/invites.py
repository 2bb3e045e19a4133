"""Approver invites, and the keys browsers enrol with them: the private half never leaves the browser.

    invites = InviteStore(db, trust, audit=audit)
    invite, token = invites.issue("alice", hours=24)            # `writ approvers invite alice`
    link = invite_link(settings.public_url, token)              # http://127.0.0.1:8420/enrol/<token>
    invites.find(token)                                         # the open invite; refused when used or expired
    record = invites.enrol(token, public_key, proof, origin="http://127.0.0.1:8420", user_agent="...")

An invite is a one-time link for one principal of role ``approver``, valid for a few hours;
only the SHA-256 of its token is stored. The enrolment page generates an Ed25519 key with
WebCrypto (``extractable: false``), keeps it in IndexedDB and sends the raw public key with a
*proof*: its signature over the DSSE PAE of the enrolment statement (``enrol_payload``), so
nobody can enrol a public key whose private half they do not hold. The key becomes one of the
approver's keys in the trust store (``TrustStore.add_key``, audited as ``trust_event``
``key_added``); the invite is spent first (an ``UPDATE ... WHERE redeemed_at IS NULL``), so a
link used twice at the same moment enrols one key. Each step is audited as ``approver_invite``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from writ.engine.core import reasons
from writ.engine.core.db import Database, db_errors
from writ.engine.core.errors import ConflictError, InputError, NotFoundError, PermissionDenied, SignatureError
from writ.engine.core.ports import AuditSink
from writ.engine.core.tables import ApproverInviteRow, WebKeyRow
from writ.engine.core.timeutil import db_time, from_db_time, iso, utc_now
from writ.plans.canonical import canonical_bytes
from writ.plans.dsse import pae
from writ.plans.keys import PublicKey
from writ.plans.trust_records import KeyRecord, PrincipalRecord
from writ.plans.trust_store import TrustStore

__all__ = ["ENROL_PAYLOAD_TYPE", "Invite", "InviteStore", "enrol_payload", "invite_link", "token_sha256"]

DEFAULT_HOURS = 24
MAX_HOURS = 168
ENROL_PAYLOAD_TYPE = "application/vnd.writ.enrol+json"
ENROL_TYPE = "https://writ.dev/enrol/v1"
MAX_USER_AGENT = 256


def token_sha256(token: str) -> str:
    """``sha256:<hex>`` of an invite token: all the database keeps of it."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def invite_link(public_url: str, token: str) -> str:
    """Where the approver opens an invite: ``<WRIT_PUBLIC_URL>/enrol/<token>``."""
    return f"{public_url.rstrip('/')}/enrol/{token}"


def enrol_payload(invite_id: str, principal: str, origin: str, public_key_b64: str) -> bytes:
    """What the browser signs with its new key to prove it holds it (RFC 8785, as the page builds it)."""
    return canonical_bytes({"_type": ENROL_TYPE, "invite": invite_id, "origin": origin, "principal": principal,
                            "public_key": public_key_b64})


@dataclass(frozen=True)
class Invite:
    """An invite as stored (never its token): for whom, until when, and whether a browser used it.

        Invite(id="inv-3f2a9c1b0d4e", principal="alice", expires_at=..., redeemed_at=None, key_id=None)
    """

    id: str
    principal: str
    created_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None
    key_id: str | None


def _invite(row: ApproverInviteRow) -> Invite:
    return Invite(row.id, row.principal, from_db_time(row.created_at), from_db_time(row.expires_at),
                  from_db_time(row.redeemed_at) if row.redeemed_at else None, row.key_id)


class InviteStore:
    """Invites and browser-enrolled keys in the database; keys go to the trust store. Process-safe."""

    def __init__(self, store: Database, trust: TrustStore, *, audit: AuditSink) -> None:
        self._store = store
        self._trust = trust
        self._audit = audit

    def issue(self, principal: str, *, hours: float = DEFAULT_HOURS, now: datetime | None = None) -> tuple[Invite, str]:
        """A new invite for an approver: (the invite, its token). Audited without the token."""
        if not 0 < hours <= MAX_HOURS:
            raise InputError(f"--hours {hours:g} is out of range: an invite is valid for more than 0 and at most "
                             f"{MAX_HOURS} hours")
        owner = self._check_approver(principal)
        now = now or utc_now()
        token = secrets.token_urlsafe(32)
        row = ApproverInviteRow(id=f"inv-{secrets.token_hex(6)}", principal=owner.name, token_sha256=token_sha256(token),
                                created_at=db_time(now), expires_at=db_time(now + timedelta(hours=hours)))
        with db_errors(self._store, f"store an invite for {owner.name!r}"), self._store.session(write=True) as s:
            s.add(row)
            s.commit()
            s.refresh(row)
            invite = _invite(row)
        self._audit.append("approver_invite", {"event": "issued", "invite_id": invite.id, "principal": owner.name,
                                               "expires_at": iso(invite.expires_at)})
        return invite, token

    def _check_approver(self, principal: str) -> PrincipalRecord:
        """The principal, if it is an approver neither disabled nor locked (at invite and again at enrolment)."""
        owner = self._trust.principal(principal)
        if owner.role != "approver":
            raise PermissionDenied(f"principal {owner.name!r} has role {owner.role}: only approvers are invited to "
                                   "approve in the browser (a plan's planner never approves)",
                                   code=reasons.INVITE_ROLE_FORBIDDEN)
        refusal = self._trust.principal_state(owner.name).refusal()
        if refusal is not None:
            raise PermissionDenied(refusal[1], code=refusal[0])
        return owner

    def find(self, token: str, *, now: datetime | None = None) -> Invite:
        """The open invite of ``token``; ``invite_not_found``, ``invite_used`` or ``invite_expired`` otherwise."""
        invite = self._lookup(token)
        _check_open(invite, now or utc_now())
        return invite

    def _lookup(self, token: str) -> Invite:
        wanted = token_sha256(token)
        with db_errors(self._store, "look up an invite"), self._store.session() as s:
            row = s.exec(select(ApproverInviteRow).where(col(ApproverInviteRow.token_sha256) == wanted)).first()
        if row is None or not hmac.compare_digest(row.token_sha256, wanted):
            raise NotFoundError("this invite link is unknown: ask your Writ admin for a new one "
                                "(writ approvers invite NAME)", code=reasons.INVITE_NOT_FOUND)
        return _invite(row)

    def enrol(self, token: str, public_key_b64: str, proof_b64: str, *, origin: str, user_agent: str,
              now: datetime | None = None) -> KeyRecord:
        """Trust the browser's public key for the invite's approver, once; the invite is spent first.

        A refusal of a known invite (used, expired, a bad proof, a disabled approver) is audited;
        an unknown token is not (anyone can send one: the rate limit bounds them).
        """
        now = now or utc_now()
        invite = self._lookup(token)
        try:
            _check_open(invite, now)
            key = self._proven_key(invite, public_key_b64, proof_b64, origin)
            self._check_approver(invite.principal)
            self._spend(invite, key, now)
        except (ConflictError, InputError, PermissionDenied) as e:
            self._audit.append("approver_invite", {"event": "refused", "invite_id": invite.id,
                                                   "principal": invite.principal, "code": e.code, "reason": e.message})
            raise
        record = self._trust.add_key(invite.principal, key, now=now)
        with db_errors(self._store, "record an enrolled browser key"), self._store.session(write=True) as s:
            s.add(WebKeyRow(key_id=record.key_id, principal=invite.principal, invite_id=invite.id,
                            user_agent=user_agent[:MAX_USER_AGENT], enrolled_at=db_time(now)))
            s.commit()
        self._audit.append("approver_invite", {"event": "redeemed", "invite_id": invite.id,
                                               "principal": invite.principal, "key_id": record.key_id})
        return record

    def _proven_key(self, invite: Invite, public_key_b64: str, proof_b64: str, origin: str) -> PublicKey:
        """The public key, if ``proof`` is its signature over this invite's enrolment statement."""
        try:
            key = PublicKey.from_base64(public_key_b64)
            proof = base64.b64decode(proof_b64, validate=True)
        except (InputError, ValueError) as e:
            raise InputError(f"the enrolment is malformed: {e}", code=reasons.ENROL_INVALID) from None
        payload = enrol_payload(invite.id, invite.principal, origin, public_key_b64)
        try:
            key.verify(proof, pae(ENROL_PAYLOAD_TYPE, payload))
        except SignatureError:
            raise InputError("the enrolment's proof does not verify under the key sent: the page that sent it does not "
                             "hold that key's private half", code=reasons.ENROL_INVALID) from None
        return key

    def _spend(self, invite: Invite, key: PublicKey, now: datetime) -> None:
        """Mark the invite used, if no one did first and it has not expired: what makes a link single-use."""
        table = ApproverInviteRow.__table__  # type: ignore[attr-defined]
        with db_errors(self._store, "spend an invite"), self._store.connect(write=True) as conn:
            done = conn.execute(update(table).where(
                table.c.id == invite.id, table.c.redeemed_at.is_(None), table.c.expires_at > db_time(now),
            ).values(redeemed_at=db_time(now), key_id=key.key_id)).rowcount
            conn.commit()
        if done != 1:
            raise ConflictError("this invite link was used by another browser just now: ask your Writ admin for a "
                                "new one", code=reasons.INVITE_USED)

    def browser_keys(self, principal: str) -> set[str]:
        """The key ids a browser enrolled for ``principal``."""
        with db_errors(self._store, "list enrolled browser keys"), self._store.session() as s:
            return set(s.exec(select(WebKeyRow.key_id).where(col(WebKeyRow.principal) == principal)))


def _check_open(invite: Invite, now: datetime) -> None:
    if invite.redeemed_at is not None:
        raise ConflictError(f"this invite link was already used at {iso(invite.redeemed_at)}: a link enrols one "
                            "browser; ask your Writ admin for a new one", code=reasons.INVITE_USED)
    if now >= invite.expires_at:
        raise ConflictError(f"this invite link expired at {iso(invite.expires_at)}: ask your Writ admin for a new "
                            "one", code=reasons.INVITE_EXPIRED)
