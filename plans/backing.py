"""A cache of "this executing plan is still backed", so a step claim re-verifies only when something changed.

    cache = BackingCache()
    key = BackingKey.of(record, approvals, trust_store.revision(), policy_revision(engine))
    plan = cache.get(key, now)              # the verified Plan, or None: verify, then
    cache.put(key, plan, now, next_change(trust, now))

A plan is backed when its planner's key is valid and its stored approvals meet the
requirement the policy gives, by the verifier and by the policy (ADR 0009). That verdict
depends on the stored envelope, the stored approvals, the trust store (its revision
changes with every change of principals, keys, revocations and groups: see
``writ.plans.trust_revision``), the policy set (its revision covers ``data.writ.groups``)
and the clock (a key's validity window). The key holds the first four, by digest and
revision; an entry is used only from when it was verified until the next moment a key of
the trust set becomes valid or invalid, and for at most ``BACKING_MAX_AGE``. A policy
engine that reports no revision is never cached. Only "backed" is cached: a plan that is
not backed is aborted, and refusals are never remembered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from writ.plans.canonical import sha256_digest
from writ.plans.models import Plan
from writ.plans.records import ApprovalRecord, PlanRecord
from writ.plans.trust import TrustSet

__all__ = ["BACKING_MAX_AGE", "BackingCache", "BackingKey", "next_change", "policy_revision"]

BACKING_MAX_AGE = timedelta(seconds=60)
"""The longest a verified "backed" is reused, whatever else holds (a policy may read ``input.now``)."""


def policy_revision(policy: object) -> str | None:
    """The revision of the policy set an engine evaluates (``sha256:...``), or None if it does not say."""
    value = getattr(policy, "revision", None)
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class BackingKey:
    """What a "backed" verdict was computed from: the plan's bytes, its approvals' bytes, two revisions.

        BackingKey.of(record, plans.approvals(record.id), trust.revision(), engine.revision)
    """

    plan_id: str
    envelope_digest: str
    approvals_digest: str
    trust_revision: int
    policy_revision: str

    @classmethod
    def of(cls, record: PlanRecord, approvals: Sequence[ApprovalRecord], trust_revision: int,
           policy: str | None) -> BackingKey | None:
        """The key for a stored plan and its stored approvals; None if the policy has no revision."""
        if policy is None:
            return None
        approved = [sha256_digest(a.envelope) for a in approvals]
        return cls(
            plan_id=record.id,
            envelope_digest=sha256_digest(record.envelope),
            approvals_digest=sha256_digest("\n".join(approved).encode()),
            trust_revision=trust_revision,
            policy_revision=policy,
        )


def next_change(trust: TrustSet, now: datetime) -> datetime | None:
    """The first moment after ``now`` at which some key of ``trust`` becomes valid or invalid, if any."""
    times = [t for k in trust.keys for t in (k.not_before, k.not_after, k.revoked_at) if t is not None and t > now]
    return min(times, default=None)


@dataclass(frozen=True)
class _Entry:
    plan: Plan
    verified_at: datetime
    valid_until: datetime


class BackingCache:
    """Verified "backed" results, keyed on ``BackingKey``: least recently used first out. Thread-safe.

        cache.get(key, now) or verify_and_put()     # hits and misses are counted: cache.hits, cache.misses
    """

    def __init__(self, size: int = 256, max_age: timedelta = BACKING_MAX_AGE) -> None:
        self._size = size
        self._max_age = max_age
        self._entries: OrderedDict[BackingKey, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: BackingKey | None, now: datetime) -> Plan | None:
        """The plan verified under ``key``, if that verification still holds at ``now``."""
        with self._lock:
            entry = self._entries.get(key) if key is not None else None
            if entry is None or not entry.verified_at <= now < entry.valid_until:
                self.misses += 1
                return None
            self._entries.move_to_end(key)  # type: ignore[arg-type]  # key is not None here
            self.hits += 1
            return entry.plan

    def put(self, key: BackingKey | None, plan: Plan, now: datetime, until: datetime | None) -> None:
        """Remember that ``plan`` was backed under ``key`` at ``now``, until ``until`` (a key's next change)."""
        if key is None:
            return
        valid_until = min(now + self._max_age, until) if until is not None else now + self._max_age
        with self._lock:
            self._entries[key] = _Entry(plan, now, valid_until)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry (the next claim of every plan verifies again)."""
        with self._lock:
            self._entries.clear()
