"""Exactly once across processes: 20 processes race to claim one step; the database lets exactly one win.

Each worker is a fresh interpreter (multiprocessing, spawn) with its own database
connection, released at the same moment by a barrier. No Python lock is shared:
only the ``UNIQUE (plan_id, step_index)`` constraint stands between them.
"""

from __future__ import annotations

import multiprocessing
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from writ.attestations.audit import AuditLog
from writ.engine.core.db import open_database
from writ.engine.core.settings import Settings
from writ.engine.policy.embedded import EmbeddedEngine
from writ.plans.keys import PrivateKey
from writ.plans.lifecycle import PlanState
from writ.plans.models import Plan, PlanStep
from writ.plans.statements import sign_approval, sign_plan
from writ.plans.store import PlanStore
from writ.plans.trust_store import TrustStore, policy_groups

WORKERS = 20
NOW = datetime.now(UTC).replace(microsecond=0)
DEF = "sha256:" + "ab" * 32
CALL: dict[str, Any] = {"server": "fs", "tool": "write_file", "definition_digest": DEF,
                        "args": {"path": "/repo/README.md", "content": "hello\n"}}


def _open(home: str, url: str) -> tuple[Any, PlanStore]:
    settings = Settings(home=Path(home), database_url=url)
    store = open_database(settings)
    engine = EmbeddedEngine(settings.effective_policy_dir)
    trust = TrustStore(store, policy_groups(engine), audit=AuditLog(store))
    return store, PlanStore(store, trust, engine, audit=AuditLog(store))


def _worker(home: str, url: str, plan_id: str, action: str, who: str, barrier: Any, results: Any) -> None:
    """One contender: open the database, wait for the others, then claim (or begin) once."""
    try:
        store, plans = _open(home, url)
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        barrier.abort()
        results.put((who, "error", f"{type(e).__name__}: {e}"))
        return
    try:
        barrier.wait(timeout=120)
        if action == "claim":
            plans.claim_step(plan_id, 0, "exec-bot", now=NOW, **CALL)
        else:
            plans.begin(plan_id, "exec-bot", now=NOW)
        results.put((who, "won", ""))
    except BaseException as e:  # noqa: BLE001 - every outcome goes back to the parent
        code = getattr(e, "code", type(e).__name__)
        results.put((who, "lost", f"{code}: {e}"))
    finally:
        store.close()


def _approved_plan(settings: Settings) -> str:
    """A plan approved by alice and bob, planned by plan-bot, in the database of ``settings``."""
    store, plans = _open(str(settings.home), settings.effective_database_url)
    keys = {}
    for name, role in [("plan-bot", "planner"), ("alice", "approver"), ("bob", "approver"),
                       ("exec-bot", "executor")]:
        plans.trust.add_principal(name, role)
        keys[name] = PrivateKey.generate()
        plans.trust.add_key(name, keys[name].public_key)
    plan = Plan.new(title="race", rationale="", planner="plan-bot", ttl=timedelta(hours=1),
                    now=NOW - timedelta(minutes=1), steps=[PlanStep(**CALL)])
    plans.submit(sign_plan(plan, keys["plan-bot"]).to_json(), now=NOW)
    for who in ("alice", "bob"):
        plans.add_approval(plan.id, sign_approval(plan.id, keys[who], approver=who, at=NOW).to_json(), now=NOW)
    assert plans.get(plan.id).state is PlanState.APPROVED
    store.close()
    return plan.id


def _race(settings: Settings, plan_id: str, action: str, n: int) -> list[tuple[str, str, str]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(str(settings.home), settings.effective_database_url, plan_id, action,
                                          f"worker-{i}", barrier, results))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    out = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * n
    return out


def test_20_processes_claim_one_step_exactly_one_wins(db_settings: Settings) -> None:
    plan_id = _approved_plan(db_settings)
    store, plans = _open(str(db_settings.home), db_settings.effective_database_url)
    plans.begin(plan_id, "exec-bot", now=NOW)

    started = time.monotonic()
    results = _race(db_settings, plan_id, "claim", WORKERS)
    elapsed = time.monotonic() - started

    errors = [r for r in results if r[1] == "error"]
    assert errors == []
    won = [r for r in results if r[1] == "won"]
    lost = [r for r in results if r[1] == "lost"]
    assert (len(won), len(lost)) == (1, WORKERS - 1), results
    pattern = re.compile(
        rf"^step_already_claimed: step 0 of plan {re.escape(plan_id[:19])}\.\. was already claimed by exec-bot "
        r"at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z; a step runs at most once$"
    )
    assert all(pattern.match(message) for _, _, message in lost), lost

    claims = plans.claims(plan_id)
    assert [(c.step_index, c.executor) for c in claims] == [(0, "exec-bot")]
    log = AuditLog(store)
    assert log.verify().ok
    attempts = [e.payload for e in log.tail(100) if e.kind == "step_claim"]
    assert sorted(a["claimed"] for a in attempts) == [False] * (WORKERS - 1) + [True]
    assert {a["code"] for a in attempts if not a["claimed"]} == {"step_already_claimed"}
    store.close()
    assert elapsed < 120, f"the race took {elapsed:.0f}s"


def test_4_processes_begin_one_plan_exactly_one_wins(db_settings: Settings) -> None:
    plan_id = _approved_plan(db_settings)
    results = _race(db_settings, plan_id, "begin", 4)
    assert [r for r in results if r[1] == "error"] == []
    won = [r for r in results if r[1] == "won"]
    lost = [r for r in results if r[1] == "lost"]
    assert len(won) == 1, results
    assert all(m.startswith(("plan_state_conflict:", "plan_already_executing:")) for _, _, m in lost), lost
    store, plans = _open(str(db_settings.home), db_settings.effective_database_url)
    assert plans.get(plan_id).state is PlanState.EXECUTING
    begins = [e.payload for e in AuditLog(store).tail(100) if e.kind == "plan_event" and e.payload["event"] == "begin"]
    assert len(begins) == 1
    store.close()
