"""Over HTTP a call is decided on the principal state read when its request arrived, never on a stale one.

`writ serve` reads a principal's lock and disable once per request (when the token came from its
cache) and decides the call that request carries on that read (``sessions.request_state``). A
session of the same process that locks the principal in between must still stop the call: the
guard reads the state again for a principal this process locked. Real database (SQLite and
PostgreSQL) and real stores; ``test_attack_locks.py`` covers the same through `writ serve`.
"""

from __future__ import annotations

import uuid

from writ.engine.core import reasons
from writ.engine.core.db import Database
from writ.engine.core.settings import Settings
from writ.engine.gateway.governance import resolve_principal
from writ.engine.gateway.sessions import PrincipalGuard
from writ.engine.policy.models import Decision, Obligation, Reason
from writ.engine.wiring.services import wire_services


def violation() -> Decision:
    return Decision(decision_id=f"dec-{uuid.uuid4().hex[:8]}", allow=False,
                    reasons=[Reason(code=reasons.STEP_NOT_IN_PLAN, message="not the step")],
                    obligations=[Obligation(code=reasons.LOCK_SESSION)], policy_revision=None, engine="embedded",
                    duration_us=0)


def test_a_lock_by_another_session_of_this_process_beats_the_read_made_when_the_request_arrived(
        store: Database, db_settings: Settings) -> None:
    name = f"raced-{uuid.uuid4().hex[:8]}"  # the process-wide record of locks made here must not know it yet
    stores = wire_services(db_settings, store)
    stores.trust.add_principal(name, "executor")
    who = resolve_principal(stores.trust, name)
    violating, calling = (PrincipalGuard(stores, who, session_id=f"s-{i}", transport="http") for i in (1, 2))
    read_on_arrival = stores.trust.principal_state(name)
    assert calling.refusal(read_on_arrival) is None  # the read is used as it is: not locked

    violating.lock(violation())  # meanwhile another session of this process violates policy
    refused = calling.refusal(read_on_arrival)
    assert refused is not None and refused[0] == reasons.PRINCIPAL_LOCKED, refused
    assert calling.refusal() is not None  # and without a read, as over stdio


def test_a_read_of_another_principal_is_not_used(store: Database, db_settings: Settings) -> None:
    name, other = (f"{who}-{uuid.uuid4().hex[:8]}" for who in ("mine", "other"))
    stores = wire_services(db_settings, store)
    for n in (name, other):
        stores.trust.add_principal(n, "executor")
    stores.trust.status.lock(name, session_id="s-elsewhere", decision_id=None, codes=(reasons.STEP_NOT_IN_PLAN,))
    guard = PrincipalGuard(stores, resolve_principal(stores.trust, name), session_id="s-3", transport="http")
    refused = guard.refusal(stores.trust.principal_state(other))  # clear, but not this principal's: read again
    assert refused is not None and refused[0] == reasons.PRINCIPAL_LOCKED


def test_the_per_call_read_returns_every_field_of_a_lock_and_a_disable(store: Database, db_settings: Settings) -> None:
    """``PrincipalStatus.state`` reads SQLite through the raw DBAPI connection: the same state as the ORM row."""
    name = f"read-{uuid.uuid4().hex[:8]}"
    stores = wire_services(db_settings, store)
    stores.trust.add_principal(name, "executor")
    assert stores.trust.principal_state(name) == stores.trust.status.state(name)
    assert stores.trust.principal_state(name).refusal() is None
    stores.trust.status.lock(name, session_id="s-7", decision_id="dec-7",
                             codes=(reasons.STEP_NOT_IN_PLAN, reasons.PLAN_REQUIRED))
    stores.trust.status.disable(name, reason="left the team")
    state = stores.trust.principal_state(name)
    listed = {s.principal: s for s in stores.trust.status.states()}[name]  # the ORM's reading of the same row
    assert state == listed
    assert (state.lock_session, state.lock_decision, state.lock_reasons, state.disable_reason) == (
        "s-7", "dec-7", (reasons.STEP_NOT_IN_PLAN, reasons.PLAN_REQUIRED), "left the team")
    assert state.locked and state.disabled


def test_a_lock_that_cannot_be_read_refuses_the_call(store: Database, db_settings: Settings) -> None:
    """Fail closed: when the per-call read of the lock fails, the guard refuses (store_unavailable)."""
    name = f"unread-{uuid.uuid4().hex[:8]}"
    stores = wire_services(db_settings, store)
    stores.trust.add_principal(name, "executor")
    guard = PrincipalGuard(stores, resolve_principal(stores.trust, name), session_id="s-4", transport="stdio")
    assert guard.refusal() is None
    with store.connect(write=True) as conn:
        conn.exec_driver_sql("ALTER TABLE principal_status RENAME TO principal_status_gone")
        conn.commit()
    refused = guard.refusal()
    assert refused is not None and refused[0] == reasons.STORE_UNAVAILABLE, refused
    assert "cannot be read" in refused[1]
