"""Bearer tokens for the gateway's HTTP transport: each acts for one principal of the trust store.

    tokens = TokenStore(store)
    record, secret = tokens.issue("plan-bot")     # the secret is shown once; only its sha256 is stored
    tokens.principal_of(secret)                   # "plan-bot"; None if unknown or revoked
    tokens.holder(secret)                         # TokenHolder(principal, role, token_id, ...): one query
    tokens.revoke(record.id)

    cache = TokenCache(tokens, ttl_s=5.0)        # what the HTTP gateway asks on every request
    cache.holder(secret)                          # (TokenHolder, looked up now?): at most once per ttl_s

A cached token is reused for at most ``ttl_s`` seconds (``WRIT_LIMITS__TOKEN_CACHE_S``): a token
revoked by ``writ tokens revoke`` (in any process) stops within that bound. Only live tokens are
kept, by their sha256 and never their text; an unknown or revoked token is looked up every time.
The principal's locked and disabled state a cached entry carries is as of its lookup: the HTTP
gateway reads it again on every request it reuses the entry for, so a disable stops the token
at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from writ.engine.core import reasons
from writ.engine.core.db import Database, describe_db_error
from writ.engine.core.errors import ConflictError, NotFoundError, StoreError
from writ.engine.core.tables import GatewayTokenRow, PrincipalRow, PrincipalStatusRow
from writ.engine.core.timeutil import db_time, utc_now

PREFIX = "writ_"


def token_digest(token: str) -> str:
    """``sha256:<hex>`` of a token's text: all the store keeps of it."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    """A token as the store holds it (never its text): ``tok-...`` id, principal, creation and revocation times.

        TokenRecord(id="tok-3f2a9c1b0d4e", principal="plan-bot", created_at="2026-...Z", revoked_at=None)
    """

    id: str
    principal: str
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True)
class TokenHolder:
    """Who a live token acts for: its principal, that principal's role, the token's id, whether it is locked or disabled.

        TokenHolder(principal="audit-bot", role="auditor", token_id="tok-3f2a9c1b0d4e", locked=False, disabled=False)
    """

    principal: str
    role: str
    token_id: str
    locked: bool
    disabled: bool


def _record(row: GatewayTokenRow) -> TokenRecord:
    return TokenRecord(row.id, row.principal, row.created_at, row.revoked_at)


class TokenStore:
    """The gateway's bearer tokens in the database: issued for a principal, looked up, revoked.

        tokens = TokenStore(db)
        record, secret = tokens.issue("plan-bot")     # give the secret to the agent; it is not stored
        tokens.principal_of(secret)                   # 'plan-bot'
    """

    def __init__(self, store: Database) -> None:
        self._store = store

    def _fail(self, what: str, e: SQLAlchemyError) -> StoreError:
        return StoreError(f"cannot {what} in {self._store.url}: {describe_db_error(e)}")

    def issue(self, principal: str) -> tuple[TokenRecord, str]:
        """A new token for ``principal`` (which must be in the trust store): (its record, the token text)."""
        secret = PREFIX + secrets.token_urlsafe(32)
        row = GatewayTokenRow(id=f"tok-{uuid.uuid4().hex[:12]}", principal=principal,
                              token_sha256=token_digest(secret),
                              created_at=db_time(utc_now()))
        try:
            with self._store.session(write=True) as session:
                if session.get(PrincipalRow, principal) is None:
                    raise NotFoundError(f"no principal {principal!r}; add it with "
                                        f"`writ principals add {principal} --role ROLE`", code=reasons.PRINCIPAL_NOT_FOUND)
                session.add(row)
                session.commit()
                session.refresh(row)
                return _record(row), secret
        except SQLAlchemyError as e:
            raise self._fail(f"store a token for {principal!r}", e) from e

    def list(self) -> list[TokenRecord]:
        """Every token, oldest first (revoked ones too)."""
        try:
            with self._store.session() as session:
                rows = session.exec(select(GatewayTokenRow).order_by(col(GatewayTokenRow.created_at)))
                return [_record(r) for r in rows]
        except SQLAlchemyError as e:
            raise self._fail("list tokens", e) from e

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke a token by id; ``token_not_found`` or ``token_revoked`` when it cannot be."""
        try:
            with self._store.session(write=True) as session:
                row = session.get(GatewayTokenRow, token_id)
                if row is None:
                    raise NotFoundError(f"no token {token_id!r} (see `writ tokens list`)", code=reasons.TOKEN_NOT_FOUND)
                if row.revoked_at is not None:
                    raise ConflictError(f"token {token_id} is already revoked", code=reasons.TOKEN_REVOKED)
                row.revoked_at = db_time(utc_now())
                session.add(row)
                session.commit()
                session.refresh(row)
                return _record(row)
        except SQLAlchemyError as e:
            raise self._fail(f"revoke token {token_id!r}", e) from e

    def principal_of(self, token: str) -> str | None:
        """The principal a live token acts for; None for an unknown or revoked token."""
        wanted = token_digest(token)
        try:
            with self._store.session() as session:
                row = session.exec(select(GatewayTokenRow).where(col(GatewayTokenRow.token_sha256) == wanted)).first()
        except SQLAlchemyError as e:
            raise self._fail("look up a token", e) from e
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_sha256, wanted):
            return None
        return row.principal

    def holder(self, token: str) -> TokenHolder | None:
        """Who a live token acts for, its role, whether it is locked or disabled (one query); None: unknown or revoked."""
        wanted = token_digest(token)
        query = (select(GatewayTokenRow, PrincipalRow.role, PrincipalStatusRow.locked_at, PrincipalStatusRow.disabled_at)
                 .join(PrincipalRow, col(PrincipalRow.name) == col(GatewayTokenRow.principal))
                 .outerjoin(PrincipalStatusRow, col(PrincipalStatusRow.principal) == col(GatewayTokenRow.principal))
                 .where(col(GatewayTokenRow.token_sha256) == wanted))
        try:
            with self._store.session() as session:
                found = session.exec(query).first()
        except SQLAlchemyError as e:
            raise self._fail("look up a token", e) from e
        if found is None:
            return None
        row, role, locked_at, disabled_at = found
        if row.revoked_at is not None or not hmac.compare_digest(row.token_sha256, wanted):
            return None
        return TokenHolder(row.principal, role, row.id, locked_at is not None, disabled_at is not None)


class TokenCache:
    """Live tokens as ``TokenStore.holder`` found them, reused for ``ttl_s`` seconds (0: never reused).

        cache = TokenCache(TokenStore(db), ttl_s=settings.limits.token_cache_s)
        holder = cache.cached(secret)           # None: not cached (or expired), look it up:
        since = cache.now()
        cache.remember(secret, cache.tokens.holder(secret), since)
        cache.holder(secret)                    # the same in one call: (TokenHolder | None, looked up now?)

    A cached holder's ``locked`` and ``disabled`` are as of its lookup: the caller reads them
    again. At most ``max_entries`` tokens are kept (the oldest lookup goes first), keyed on the
    tokens' sha256. One thread uses it (the HTTP gateway's event loop).
    """

    def __init__(self, tokens: TokenStore, *, ttl_s: float, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tokens = tokens
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.now = clock
        self._entries: OrderedDict[str, tuple[float, TokenHolder]] = OrderedDict()

    def cached(self, token: str) -> TokenHolder | None:
        """The holder of ``token`` if it was looked up less than ``ttl_s`` seconds ago and was live then."""
        found = self._entries.get(token_digest(token))
        if found is None or self.now() - found[0] >= self.ttl_s:
            return None
        return found[1]

    def remember(self, token: str, holder: TokenHolder | None, since: float) -> None:
        """Keep what a lookup that started at ``since`` (``now()``) found; an unknown or revoked token is not kept."""
        key = token_digest(token)
        self._entries.pop(key, None)
        if holder is None or self.ttl_s <= 0:
            return
        self._entries[key] = (since, holder)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def holder(self, token: str) -> tuple[TokenHolder | None, bool]:
        """Who ``token`` acts for, and whether that was looked up now (True) or reused (False).

        ``StoreError`` when a lookup is needed and the database cannot answer.
        """
        found = self.cached(token)
        if found is not None:
            return found, False
        since = self.now()
        holder = self.tokens.holder(token)
        self.remember(token, holder, since)
        return holder, True
