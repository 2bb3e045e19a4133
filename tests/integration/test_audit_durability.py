"""What an audit append promises about the disk (ADR 0021, SECURITY.md "Audit durability").

- durable (the default): committed with SQLite ``synchronous=FULL`` / PostgreSQL ``synchronous_commit`` on;
- ``durable=False`` (a read's decision and result at the gateway): committed, so a killed process
  loses nothing; fsynced (SQLite: the WAL checkpointed into the database file) within ``flush_s``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from sqlalchemy import text
from support.factories import call_input, plan_context
from support.gateway import (
    STANDARD_PRINCIPALS,
    GatewayClient,
    audit_entries,
    pid_wrapped,
    register,
    require_upstreams,
    temporal_environment,
    text_of,
    write_two_upstream_config,
)

from writ.attestations.audit import AuditEntry, AuditLog
from writ.engine.cli.audit import audit
from writ.engine.core.db import open_database
from writ.engine.core.settings import Settings
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.pdp import DecisionPoint

GENEROUS_S = 30.0  # a deadline for an effect to show, never a speed assertion


def sqlite_file_entries(db: Path, copy_dir: Path) -> int:
    """Entries in the database FILE alone (a copy without its -wal): what a checkpoint wrote there."""
    copy_dir.mkdir(exist_ok=True)
    copy = copy_dir / "alone.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(copy) + suffix).unlink(missing_ok=True)
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])
    except sqlite3.OperationalError:  # not even the schema checkpointed yet
        return 0
    finally:
        conn.close()


def test_non_durable_appends_reach_the_database_file_within_the_flush_bound(tmp_path: Path) -> None:
    """The flusher fsyncs the WAL and checkpoints it: the entries show up in the database file itself."""
    settings = Settings(home=tmp_path / "home")
    db = settings.home / "writ.sqlite"
    with open_database(settings) as store:
        log = AuditLog(store, flush_s=0.2)
        for i in range(5):
            log.append("decision", {"i": i}, durable=False)
        committed_at = time.monotonic()
        assert log.tail(5)[-1].payload == {"i": 4}  # committed: every reader sees it at once
        while sqlite_file_entries(db, tmp_path / "copy") < 5:
            assert time.monotonic() - committed_at < GENEROUS_S, "the WAL was never checkpointed"
            time.sleep(0.05)


def test_a_non_durable_append_leaves_its_connection_synchronous_full(tmp_path: Path) -> None:
    """The NORMAL of a non-durable commit is set back: the next writer on that pooled connection is durable."""
    with open_database(Settings(home=tmp_path / "home")) as store:
        log = AuditLog(store, flush_s=60)
        log.append("decision", {"read": True}, durable=False)
        with store.connect() as conn:  # the pool hands back the connection the append used
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL


def test_two_writers_in_one_process_with_their_own_heads_keep_one_chain(tmp_path: Path) -> None:
    """Two opened databases on one file: each caches its head, the constraints catch the stale one, it retries."""
    settings = Settings(home=tmp_path / "home")
    with open_database(settings) as first, open_database(settings) as second:
        a, b = AuditLog(first), AuditLog(second)
        for i in range(20):
            (a if i % 3 else b).append("decision", {"i": i}, durable=bool(i % 2))
        report = a.verify()
        assert (report.ok, report.entries) == (True, 20), report.message
        assert [e.payload["i"] for e in a.tail(20)] == list(range(20))


def test_the_head_is_kept_in_memory_so_a_deleted_tail_is_not_refilled(tmp_path: Path) -> None:
    """The next append follows the head this process wrote, not what is left: a deleted last entry stays a gap."""
    with open_database(Settings(home=tmp_path / "home")) as store:
        log = AuditLog(store)
        for i in range(3):
            log.append("decision", {"i": i})
        with store.connect(write=True) as conn:
            conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
            conn.commit()
        assert log.append("decision", {"i": 3}).seq == 4
        report = log.verify()
        assert (report.ok, report.first_bad_seq, report.problem) == (False, 3, "deleted"), report.message


@pytest.mark.postgres
def test_postgres_durable_appends_turn_a_default_of_off_back_on(pg_schema_url: str, tmp_path: Path) -> None:
    url = pg_schema_url + "%20-csynchronous_commit%3Doff"  # the role or server says off
    with open_database(Settings(home=tmp_path / "home", database_url=url)) as store:
        with store.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
        log = AuditLog(store)
        log.append("decision", {"durable": True})
        log.append("decision", {"durable": False}, durable=False)
        assert [e.payload for e in log.tail(2)] == [{"durable": True}, {"durable": False}]
        assert log.verify().ok


class RecordingAuditLog(AuditLog):
    """The real audit log, noting the ``durable`` each append was asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[tuple[str, bool]] = []

    def append(self, kind: str, payload: Mapping[str, Any], *, durable: bool = True) -> AuditEntry:
        self.asked.append((kind, durable))
        return super().append(kind, payload, durable=durable)


def test_a_writes_decision_is_durable_even_where_a_reads_may_wait(tmp_path: Path) -> None:
    """DecisionPoint.decide(durable=False) defers only decisions without plan_required (a write's stays fsynced)."""
    settings = Settings(home=tmp_path / "home")
    log = RecordingAuditLog(open_database(settings))
    pdp = DecisionPoint(EmbeddedEngine(settings.effective_policy_dir, settings.limits), log)
    read = pdp.decide(call_input(tool="git_status"), durable=False)
    write = pdp.decide(call_input(tool="git_commit", args={"message": "fix"}, plan=plan_context()), durable=False)
    assert read.allow and write.allow and write.has_obligation("plan_required")
    assert log.asked == [("decision", False), ("decision", True)]
    assert pdp.decide(call_input(tool="git_status")).allow and log.asked[-1] == ("decision", True)  # default


# -- the gateway, killed -------------------------------------------------------------------------------------


@asynccontextmanager
async def _session(params: StdioServerParameters, errlog: Any) -> AsyncIterator[ClientSession]:
    async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def test_gateway_killed_after_forwarding_keeps_the_decision(tmp_path: Path, temporal_env: str) -> None:
    """SIGKILL `writ mcp` right after a read was forwarded and answered: its (non-durable) decision is in the log.

    The flush bound is set far out (60 s), so what survives is the commit alone, not a flush.
    """
    node = require_upstreams()
    _repo, files, config = write_two_upstream_config(tmp_path, node)
    data_dir = tmp_path / "writ-home"
    register(data_dir, STANDARD_PRINCIPALS)
    pidfile = tmp_path / "gateway.pid"
    command, args = pid_wrapped(pidfile, [
        sys.executable, "-m", "writ.engine.cli.gateway", "--principal", "exec-bot", "--config", str(config),
        "--data-dir", str(data_dir)])
    params = StdioServerParameters(command=command, args=args, cwd=str(config.parent),
                                   env={**temporal_environment(), "WRIT_AUDIT__FLUSH_S": "60"})
    notes = str(files / "notes.txt")
    with (tmp_path / "gateway.stderr").open("a") as errlog, start_blocking_portal() as portal:
        with suppress(Exception), portal.wrap_async_context_manager(_session(params, errlog)) as session:
            result = GatewayClient(portal, session).call("fs__read_text_file", {"path": notes})
            assert not result.is_error and "read me" in text_of(result), text_of(result)
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + GENEROUS_S
            while _alive(pid):
                assert time.monotonic() < deadline
                time.sleep(0.05)
    decisions = [e.payload for e in audit_entries(data_dir) if e.kind == "decision"
                 and (e.payload.get("input") or {}).get("tool", {}).get("name") == "read_text_file"]
    assert len(decisions) == 1 and decisions[0]["decision"]["allow"] is True, decisions
    assert decisions[0]["input"]["args"] == {"path": notes}
    verified = CliRunner().invoke(audit, ["verify", "--data-dir", str(data_dir)])
    assert verified.exit_code == 0 and verified.output.startswith("audit log OK"), verified.output


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with suppress(ChildProcessError):  # a zombie of ours counts as gone
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
