"""Small protocols that a lower layer takes where it needs something built above it.

The plan and trust stores (``writ.plans``) append to the audit log, which lives a layer above
them (``writ.attestations``); they take an ``AuditSink`` and the composition root
(``writ.engine.wiring``) hands them the real ``AuditLog``:

    plans = PlanStore(db, trust, evaluator, audit=AuditLog(db))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class AuditSink(Protocol):
    """Where events go: ``append`` records one entry or raises ``AuditError`` (the caller fails closed).

        audit.append("step_claim", {"plan_id": p, "step_index": 0})              # fsynced when it returns
        audit.append("tool_result", {"outcome": "ok"}, durable=False)            # committed; fsync within a bound
    """

    def append(self, kind: str, payload: Mapping[str, Any], *, durable: bool = True) -> object:
        """Append one entry of ``kind``; raise ``AuditError`` if it cannot be recorded.

        ``durable=False``: committed when it returns, on disk within a bounded time (ADR 0021).
        """
        ...
