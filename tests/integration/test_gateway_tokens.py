"""The HTTP gateway's token cache: a live token is looked up at most once per ``WRIT_LIMITS__TOKEN_CACHE_S``.

A real database (SQLite and PostgreSQL) and the real ``TokenStore``; the cache's clock is a number
the test moves, so the bound is checked exactly and nothing sleeps. ``test_gateway_http.py`` checks
the same bound end to end through `writ serve`, and ``test_attack_locks.py`` that a disabled
principal's cached token still stops at once.
"""

from __future__ import annotations

from writ.engine.core.db import Database
from writ.engine.core.settings import Settings
from writ.engine.gateway.tokens import TokenCache, TokenStore
from writ.engine.wiring.services import wire_services


class Clock:
    """Seconds the test sets by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tokens_of(store: Database, settings: Settings, *principals: str) -> TokenStore:
    trust = wire_services(settings, store).trust
    for name in principals:
        trust.add_principal(name, "executor")
    return TokenStore(store)


def test_a_revoked_token_works_until_the_bound_and_stops_after(store: Database, db_settings: Settings) -> None:
    tokens = tokens_of(store, db_settings, "cached-bot")
    record, secret = tokens.issue("cached-bot")
    clock = Clock()
    cache = TokenCache(tokens, ttl_s=5.0, clock=clock)
    holder, looked_up = cache.holder(secret)
    assert holder is not None and holder.principal == "cached-bot" and looked_up
    tokens.revoke(record.id)
    clock.now += 4.999  # within the bound: the revocation is not seen yet (what WRIT_LIMITS__TOKEN_CACHE_S allows)
    holder, looked_up = cache.holder(secret)
    assert holder is not None and not looked_up
    clock.now += 0.001  # the bound: looked up again, and refused from now on
    assert cache.holder(secret) == (None, True)
    clock.now += 60
    assert cache.holder(secret) == (None, True)  # a refused token is never kept


def test_a_zero_bound_looks_every_token_up(store: Database, db_settings: Settings) -> None:
    tokens = tokens_of(store, db_settings, "uncached-bot")
    record, secret = tokens.issue("uncached-bot")
    cache = TokenCache(tokens, ttl_s=0, clock=Clock())
    assert cache.holder(secret)[1] and cache.holder(secret)[1]
    tokens.revoke(record.id)
    assert cache.holder(secret) == (None, True)  # at once


def test_the_cache_keeps_at_most_max_entries_tokens(store: Database, db_settings: Settings) -> None:
    tokens = tokens_of(store, db_settings, "many-bot")
    secrets = [tokens.issue("many-bot")[1] for _ in range(3)]
    cache = TokenCache(tokens, ttl_s=5.0, max_entries=2, clock=Clock())
    for secret in secrets:
        assert cache.holder(secret)[1]
    assert [cache.holder(s)[1] for s in secrets[1:]] == [False, False]
    assert cache.holder(secrets[0])[1]  # the oldest lookup went first
