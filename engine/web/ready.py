"""``GET /readyz``: can this Writ decide and log right now? ``GET /healthz`` only says the process answers.

    $ curl -s 127.0.0.1:8420/readyz
    {"status": "ready", "checks": {"policy_engine": {"ok": true, ...}, "database": {"ok": true, ...}}}
    $ curl -s 127.0.0.1:8420/readyz        # the database file was removed
    {"status": "not_ready", "error": {"code": "not_ready", ...}, "reasons": [{"code": "store_unavailable", ...}], ...}

Three checks, each with its reason when it fails (503 then):

- ``policy_engine`` (``opa_sidecar`` with ``WRIT_ENGINE=opa``): one real decision, not logged, on a
  fixed input; a fail-closed answer (``engine_error``, ``engine_unavailable``, ``engine_timeout``,
  ``policy_undefined``, ``policy_result_invalid``, a malformed-input code) means the engine is
  down. The embedded engine also fails the check while its policy directory fails its check
  (``policy_invalid``): the last good set still decides, but not the policies on disk.
- ``database``: the audit log's head is read; for SQLite the file is opened afresh, read-write and
  without creating it, so a database file removed or made read-only under a running Writ shows.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from writ.engine.core import reasons
from writ.engine.core.db import Database, describe_db_error
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.models import PolicyInput, Session, Tool
from writ.engine.policy.pdp import DecisionPoint
from writ.engine.web.deps import PdpDep, StoreDep

# An answer that is no decision of the policy: the engine (or its input) failed.
ENGINE_DOWN = frozenset({
    reasons.ENGINE_ERROR, reasons.ENGINE_UNAVAILABLE, reasons.ENGINE_TIMEOUT, reasons.POLICY_UNDEFINED,
    reasons.POLICY_RESULT_INVALID, reasons.INPUT_INVALID, reasons.INPUT_INCOMPLETE,
})
PROBE = PolicyInput(principal="writ-readyz", role="planner", groups=[], session=Session(id="readyz"),
                    method="tools/call", tool=Tool(server="writ", name="writ_plan_status"), args={}, plan=None,
                    now=datetime(2026, 1, 1, tzinfo=UTC))
"""The input of the probe decision: a planner asking for a plan's status (any policy gives some answer)."""
SQLITE_TIMEOUT_S = 2.0

router = APIRouter()

Problem = tuple[str, str]  # (code, message)


def engine_check(pdp: DecisionPoint) -> tuple[dict[str, Any], list[Problem]]:
    """One real decision, not logged; for the embedded engine, also whether the policy directory loads."""
    engine = pdp.engine
    decision = engine.decide(PROBE)
    problems = [(r.code, r.message) for r in decision.reasons if r.code in ENGINE_DOWN]
    if isinstance(engine, EmbeddedEngine) and engine.last_reload_error is not None:
        err = engine.last_reload_error
        problems.append((reasons.POLICY_INVALID, f"the policy directory fails its check, so revision "
                         f"{engine.revision} still decides: {err.message}"))
    detail = {"ok": not problems, "engine": engine.name, "revision": engine.revision,
              "duration_us": decision.duration_us}
    return detail, problems


def database_check(store: Database) -> tuple[dict[str, Any], list[Problem]]:
    """The audit log's head, read; a SQLite file also opened afresh (read-write, never created)."""
    try:
        with store.connect() as conn:
            head = conn.execute(text("SELECT max(seq) FROM audit_log")).scalar()
            if store.dialect == "postgresql" and conn.execute(text("SHOW transaction_read_only")).scalar() == "on":
                return {"ok": False}, [(reasons.STORE_UNAVAILABLE, f"database {store.url} is read-only")]
    except SQLAlchemyError as e:
        return {"ok": False}, [(reasons.STORE_UNAVAILABLE, f"database {store.url}: {describe_db_error(e)}")]
    path = store.engine.url.database if store.dialect == "sqlite" else None
    if path and path != ":memory:" and not path.startswith("file:"):
        problem = _sqlite_file_problem(Path(path))
        if problem is not None:
            return {"ok": False}, [(reasons.STORE_UNAVAILABLE, f"database {store.url}: {problem}")]
    return {"ok": True, "audit_entries": int(head or 0)}, []


def _sqlite_file_problem(path: Path) -> str | None:
    """Why the SQLite file at ``path`` cannot take the next entry, or None."""
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return "the database file or its directory is not writable" if path.exists() else "the file is gone"
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=SQLITE_TIMEOUT_S)
    except sqlite3.Error as e:
        return str(e)
    try:
        conn.execute("SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()
    except sqlite3.Error as e:
        return str(e)
    finally:
        conn.close()
    return None


def readiness(pdp: DecisionPoint, store: Database) -> tuple[bool, dict[str, Any]]:
    """(ready, the body of ``/readyz``)."""
    checks: dict[str, Any] = {}
    problems: list[Problem] = []
    engine_name = "opa_sidecar" if pdp.engine.name == "opa" else "policy_engine"
    for name, (detail, found) in ((engine_name, engine_check(pdp)), ("database", database_check(store))):
        checks[name] = detail
        problems += found
    if not problems:
        return True, {"status": "ready", "checks": checks}
    message = "; ".join(f"{code}: {text}" for code, text in problems)
    return False, {"status": "not_ready", "error": {"code": reasons.NOT_READY, "message": message},
                   "reasons": [{"code": c, "message": m} for c, m in problems], "checks": checks}


@router.get("/readyz")
async def readyz(pdp: PdpDep, store: StoreDep) -> JSONResponse:
    """200 when the policy engine decides and the database takes entries; 503 with the reasons otherwise."""
    ready, body = await run_in_threadpool(readiness, pdp, store)
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers (``/readyz`` says whether it can decide)."""
    return {"status": "ok"}
