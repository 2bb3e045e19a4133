"""The demo's Temporal: its own dev server in the demo's data directory, and approvals sent as Updates.

    with demo_temporal(settings) as settings:        # WRIT_TEMPORAL_ADDRESS if set, else a dev server of its own
        ...
    count = await send_approval(client, plan_id, key, "alice")   # what `writ approve` does

The demo approves exactly as approvers do: each signs with their own key and the signed
statement goes to the plan's approval workflow, which verifies it and counts it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from writ.engine.core.settings import Settings
from writ.plans.keys import PrivateKey
from writ.plans.statements import sign_approval
from writ.workflows.approval.client import ApprovalClient
from writ.workflows.approval.devserver import DevServer
from writ.workflows.approval.models import ApprovalCount

__all__ = ["demo_temporal", "send_approval"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def demo_temporal(settings: Settings) -> Iterator[Settings]:
    """``settings`` pointing at Temporal: the configured cluster, or a dev server started (and stopped) here."""
    if not settings.temporal.embedded:
        yield settings
        return
    with DevServer(settings.home, port=_free_port()) as server:
        yield settings.model_copy(update={"temporal_address": server.address})


async def send_approval(client: ApprovalClient, plan_id: str, key: PrivateKey, who: str) -> ApprovalCount:
    """Sign ``who``'s approval with their key and send it to the plan's workflow: the count it returns."""
    envelope = sign_approval(plan_id, key, approver=who, comment="read every step")
    return await client.decide(plan_id, envelope.to_json(), "approve")
