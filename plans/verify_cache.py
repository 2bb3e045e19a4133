"""What verifying an envelope found, remembered per exact bytes and trusted keys (used by ``writ.plans.verify``).

    key = EnvelopeKey.of(envelope_bytes, trust, limits)   # None for anything but bytes: never cached
    PLANS.get(key)                                       # (Plan, signer key ids) or None
    PLANS.put(key, (plan, signers))
    clear_verified()                                     # forget everything (benchmarks measure cold with it)

Only what follows from nothing but the envelope's bytes, the trust set's keys (principal,
role, public key and validity window of each: ``TrustSet.keys_fingerprint``) and the limits
is kept: that the signatures verify under which trusted keys, and the parsed plan or
statement. Anything else runs on every call: whether a signing key is valid *now*, who the
planner is, whether an approval is about this plan, groups, counting. Only successes are
kept; an envelope that fails is checked in full every time.

So an edited envelope (another digest) and a key added, revoked or re-windowed (another
fingerprint) always miss: the cache can make a check faster, never make it pass.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from writ.plans.models import PlanLimits
from writ.plans.trust import TrustSet

__all__ = ["APPROVALS", "PLANS", "EnvelopeKey", "VerifiedLru", "clear_verified"]

V = TypeVar("V")


@dataclass(frozen=True)
class EnvelopeKey:
    """The exact envelope bytes (their SHA-256), the trusted keys and the limits a verification ran under."""

    digest: bytes
    keys_fingerprint: str
    limits: PlanLimits

    @classmethod
    def of(cls, envelope: Any, trust: TrustSet, limits: PlanLimits) -> EnvelopeKey | None:
        """The key for ``envelope`` as received (``bytes`` only; a parsed envelope is not cached)."""
        if type(envelope) is not bytes:
            return None
        return cls(hashlib.sha256(envelope).digest(), trust.keys_fingerprint, limits)


class VerifiedLru(Generic[V]):
    """A bounded, thread-safe map of ``EnvelopeKey`` to what verification found; least recently used goes first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[EnvelopeKey, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: EnvelopeKey | None) -> V | None:
        if key is None:
            return None
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: EnvelopeKey | None, value: V) -> None:
        if key is None:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


PLANS: VerifiedLru[Any] = VerifiedLru(64)
"""Plan envelopes: (the parsed ``Plan``, ids of the trusted planner keys whose signatures verify)."""

APPROVALS: VerifiedLru[Any] = VerifiedLru(1024)
"""Approval envelopes: (the trusted approver key that signed, the parsed ``ApprovalStatement``)."""


def clear_verified() -> None:
    """Forget every verified envelope: the next check of each is a full one."""
    PLANS.clear()
    APPROVALS.clear()
