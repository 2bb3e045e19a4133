"""A plan step never runs without its evidence: a ``step_claim`` entry the audit log refuses stops the call.

The plan store commits a claim, then appends its ``step_claim`` entry. If that append fails (a
full disk, a lost database), the claim exists but nothing records it: the gateway must answer
``audit_unavailable`` and not make the call. Real parts: the gateway in this process (so the
audit log it is given can refuse that one entry kind), a real SQLite database and trust store,
the shipped policies, a "notes" upstream subprocess that appends to a file, and the official
SDK client over in-memory streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.shared.memory import create_client_server_memory_streams
from support.gateway import error_code, notes_server, register, text_of, toml_list, toml_str

from writ.attestations.audit import AuditEntry, AuditLog
from writ.engine.core.db import Database, open_database
from writ.engine.core.errors import AuditError
from writ.engine.core.settings import Settings
from writ.engine.gateway.config import load_config
from writ.engine.gateway.governance import resolve_principal
from writ.engine.gateway.server import Gateway
from writ.engine.policy.pdp import DecisionPoint, make_engine
from writ.engine.wiring.services import Services, wire_services
from writ.plans.keys import PrivateKey
from writ.plans.models import Plan, PlanStep
from writ.plans.statements import sign_approval, sign_plan

PRINCIPALS = {"plan-bot": "planner", "exec-bot": "executor", "alice": "approver", "bob": "approver"}
TIMEOUT_S = 60


class RefusingAuditLog(AuditLog):
    """The real audit log, except that every entry of kind ``refuse`` fails as an unwritable log would."""

    def __init__(self, store: Database, refuse: str) -> None:
        super().__init__(store)
        self.refuse = refuse
        self.refused: list[Mapping[str, Any]] = []

    def append(self, kind: str, payload: Mapping[str, Any], *, durable: bool = True) -> AuditEntry:
        if kind == self.refuse:
            self.refused.append(payload)
            raise AuditError(f"cannot append a {kind!r} entry to the audit log: the disk is full (test)")
        return super().append(kind, payload, durable=durable)


def approved_plan(stores: Services, keys: dict[str, Path], step: PlanStep) -> str:
    """A one-step plan signed by plan-bot and approved by alice and bob, as `writ plan sign` and `writ approve` do."""
    plan = Plan.new(title="Append a note", rationale="for the test", planner="plan-bot", steps=[step],
                    ttl=timedelta(hours=1))
    record = stores.plans.submit(sign_plan(plan, PrivateKey.load(keys["plan-bot"])).to_json())
    for name in ("alice", "bob"):
        approval = sign_approval(record.id, PrivateKey.load(keys[name]), approver=name, comment="ok")
        stores.plans.add_approval(record.id, approval.to_json())
    assert stores.plans.get(record.id).state.value == "approved"
    return record.id


async def run_step_with_claim_audit_refused(gateway: Gateway, stores: Services, keys: dict[str, Path]
                                            ) -> tuple[str, types.CallToolResult, types.CallToolResult]:
    """Begin an approved plan over MCP and call its one step twice: (plan id, first result, second result)."""
    with anyio.fail_after(TIMEOUT_S * 2):  # a gateway that hangs fails the test instead of the run
        return await _run(gateway, stores, keys)


async def _run(gateway: Gateway, stores: Services, keys: dict[str, Path]
               ) -> tuple[str, types.CallToolResult, types.CallToolResult]:
    async with anyio.create_task_group() as tg, create_client_server_memory_streams() as (client, server_side):
        await gateway.upstreams.start(tg)
        server = gateway.server()
        tg.start_soon(lambda: server.run(server_side[0], server_side[1], server.create_initialization_options()))
        async with ClientSession(client[0], client[1], read_timeout_seconds=TIMEOUT_S) as session:
            await session.initialize()
            entry = gateway.upstreams.tool("notes__append_note")
            assert entry is not None, gateway.upstreams.status()
            plan_id = approved_plan(stores, keys, PlanStep(server="notes", tool="append_note",
                                                           definition_digest=entry.digest, args={"text": "hello"}))
            begun = await session.call_tool("writ__writ_plan_begin", {"plan_id": plan_id})
            assert not begun.is_error, text_of(begun)
            first = await session.call_tool("notes__append_note", {"text": "hello"})
            again = await session.call_tool("notes__append_note", {"text": "hello"})
        gateway.end_session()
        gateway.upstreams.stop()
        tg.cancel_scope.cancel()
    return plan_id, first, again


def test_a_step_claim_the_audit_log_refuses_leaves_the_call_unrun(tmp_path: Path) -> None:
    notes_cmd, _, notes = notes_server(tmp_path)
    config_path = tmp_path / "etc" / "writ.toml"
    config_path.parent.mkdir()
    config_path.write_text(f"[upstreams.notes]\ncommand = {toml_str(notes_cmd[0])}\nargs = {toml_list(notes_cmd[1:])}\n")
    data_dir = tmp_path / "writ-home"
    keys = register(data_dir, PRINCIPALS, keys=True)
    settings = Settings(home=data_dir)
    with open_database(settings) as store:
        audit = RefusingAuditLog(store, refuse="step_claim")
        pdp = DecisionPoint(make_engine(settings), audit)
        try:
            stores = wire_services(settings, store, engine=pdp.engine, audit=audit)
            gateway = Gateway(pdp, load_config(config_path), resolve_principal(stores.trust, "exec-bot"), stores)
            plan_id, first, again = anyio.run(run_step_with_claim_audit_refused, gateway, stores, keys)
        finally:
            pdp.close()
        claims = stores.plans.claims(plan_id)
        entries = AuditLog(store).tail(100_000)

    # The claim committed, its entry was refused: the call is answered audit_unavailable and never made.
    assert first.is_error and error_code(first) == "audit_unavailable", text_of(first)
    assert text_of(first).startswith("denied [audit_unavailable]: cannot append a 'step_claim' entry")
    assert not notes.exists()  # the upstream never saw the call
    assert [(c.step_index, c.outcome) for c in claims] == [(0, None)]
    assert [p["claimed"] for p in audit.refused] == [True, False]  # the claim, then the retry's refusal
    # The step is spent: a retry is refused by the claim, and still never reaches the upstream.
    assert error_code(again) == "step_already_claimed", text_of(again)
    assert not notes.exists()
    # The gateway's own record of the call says why it did not run; no result of an upstream is recorded.
    decision_id = (first.meta or {})["writ/decision"]["decision_id"]
    results = [e.payload for e in entries if e.kind == "tool_result" and e.payload["decision_id"] == decision_id]
    assert [(r["outcome"], r["error"]["plan_id"], r["error"]["step_index"]) for r in results] == [
        ("audit_unavailable", plan_id, 0)]
    assert not any(e.kind == "tool_result" and e.payload["server"] == "notes" and e.payload["outcome"] in ("ok", "tool_error")
                   for e in entries)
