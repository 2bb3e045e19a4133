"""The hash-chained audit log on real databases (SQLite files and the test PostgreSQL server).

Every tampering case edits the database with raw SQL, as an attacker with database
access would, and checks that ``verify`` names the first bad entry and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from writ.attestations.audit import GENESIS_HASH, AuditLog, AuditProblem, compute_entry_hash
from writ.engine.cli.audit import audit
from writ.engine.core.db import Database, alembic_config, open_database
from writ.engine.core.errors import AuditError, StoreError, VerificationError
from writ.engine.core.settings import Settings

# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def log(store: Database) -> AuditLog:
    return AuditLog(store)


def sql(store: Database, statement: str, **params: Any) -> None:
    """Run raw SQL on the database, outside Writ: what an attacker with database access does."""
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def fill(log: AuditLog, n: int) -> list[str]:
    """Append n decision entries; return their hashes."""
    return [
        log.append("decision", {"decision_id": f"d{i}", "allow": i % 2 == 0}).entry_hash
        for i in range(1, n + 1)
    ]


# -- append and verify ------------------------------------------------------------------------


def test_appended_entries_form_a_chain_that_verifies(log: AuditLog) -> None:
    first = log.append(
        "decision", {"allow": True, "reasons": [], "n": 1.5, "nested": {"b": 1, "a": None}}
    )
    second = log.append("plan_event", {"plan": "sha256:ab", "event": "approved"})

    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.entry_hash)
    report = log.verify()
    assert report.ok and report.entries == 2 and report.head == second.entry_hash == log.head()
    assert report.message == f"audit log OK: 2 entries, head {second.entry_hash}"
    assert log.verify_or_raise(expected_head=first.entry_hash) == report
    assert log.tail(5) == [first, second] and log.tail(1) == [second]


def test_entry_hash_is_sha256_of_the_rfc8785_form_of_the_five_fields(
    store: Database, log: AuditLog
) -> None:
    entry = log.append("decision", {"z": "é", "a": [1, 2.5]})
    doc = {
        "seq": 1,
        "created_at": entry.created_at,
        "kind": "decision",
        "payload": {"a": [1, 2.5], "z": "é"},
        "prev_hash": GENESIS_HASH,
    }
    assert entry.entry_hash == "sha256:" + hashlib.sha256(rfc8785.dumps(doc)).hexdigest()
    assert entry.created_at.endswith("Z") and len(entry.created_at) == 27
    with store.connect() as conn:  # the stored payload is the canonical text
        assert (
            conn.execute(text("SELECT payload FROM audit_log")).scalar_one()
            == '{"a":[1,2.5],"z":"é"}'
        )


def test_hash_of_a_known_entry_is_stable() -> None:
    """A known answer, so that a change to the hashed form cannot pass unnoticed."""
    doc = (
        '{"created_at":"2025-01-01T00:00:00.000000Z","kind":"decision","payload":{"allow":true},'
        f'"prev_hash":"{GENESIS_HASH}","seq":1}}'
    )
    assert (
        compute_entry_hash(
            1, "2025-01-01T00:00:00.000000Z", "decision", {"allow": True}, GENESIS_HASH
        )
        == "sha256:" + hashlib.sha256(doc.encode()).hexdigest()
    )


def test_float_at_2_53_reads_back_as_the_same_number(log: AuditLog) -> None:
    """RFC 8785 writes 2.0**53 as 9007199254740992, beyond JSON's safe integers (found by hypothesis)."""
    entry = log.append("decision", {"x": 2.0**53, "y": -1e21, "z": 5e-324})
    assert log.tail(1) == [entry] and entry.payload["x"] == 2**53
    assert log.verify().ok


def test_empty_log_verifies_with_the_genesis_head(log: AuditLog) -> None:
    report = log.verify(expected_head=GENESIS_HASH)
    assert (report.ok, report.entries, report.head) == (True, 0, GENESIS_HASH)


def test_checkpoint_from_before_later_appends_still_verifies(log: AuditLog) -> None:
    checkpoint = fill(log, 3)[-1]
    fill(log, 2)
    assert log.verify(expected_head=checkpoint).ok


def test_verify_reads_in_batches_across_batch_boundaries(store: Database) -> None:
    log = AuditLog(store, batch_size=3)
    fill(log, 9)
    assert log.verify().entries == 9
    sql(store, "UPDATE audit_log SET kind = 'forged' WHERE seq = 9")
    assert log.verify().first_bad_seq == 9


# -- tampering, named by the attack -----------------------------------------------------------


def swap_entries_3_and_4(store: Database) -> None:
    sql(store, "UPDATE audit_log SET seq = 1000 WHERE seq = 3")
    sql(store, "UPDATE audit_log SET seq = 3 WHERE seq = 4")
    sql(store, "UPDATE audit_log SET seq = 4 WHERE seq = 1000")


def rewrite_entry_3_and_recompute_its_hash(store: Database) -> None:
    """What a careful attacker does: keep entry 3 self-consistent."""
    sql(
        store,
        "UPDATE audit_log SET payload = :p WHERE seq = 3",
        p='{"allow":true,"decision_id":"d3"}',
    )
    with store.engine.begin() as conn:
        row = conn.execute(text("SELECT * FROM audit_log WHERE seq = 3")).one()
        new = compute_entry_hash(
            3, row.created_at, row.kind, json.loads(row.payload), row.prev_hash
        )
        conn.execute(text("UPDATE audit_log SET entry_hash = :h WHERE seq = 3"), {"h": new})


def update(column: str, value: str, seq: int) -> Callable[[Database], None]:
    return lambda s: sql(s, f"UPDATE audit_log SET {column} = :v WHERE seq = :s", v=value, s=seq)


def delete(where: str) -> Callable[[Database], None]:
    return lambda s: sql(s, f"DELETE FROM audit_log WHERE {where}")


TAMPERING: list[tuple[str, Callable[[Database], None], int, AuditProblem]] = [
    (
        "payload_edited_allow_flipped",
        update("payload", '{"allow":true,"decision_id":"d3"}', 3),
        3,
        AuditProblem.EDITED,
    ),
    (
        "payload_reencoded_not_canonical",
        update("payload", '{"decision_id": "d2", "allow": true}', 2),
        2,
        AuditProblem.EDITED,
    ),
    ("payload_not_json", update("payload", '{"allow":', 2), 2, AuditProblem.EDITED),
    ("kind_relabelled", update("kind", "heartbeat", 4), 4, AuditProblem.EDITED),
    (
        "created_at_backdated",
        update("created_at", "2020-01-01T00:00:00.000000Z", 1),
        1,
        AuditProblem.EDITED,
    ),
    (
        "entry_hash_overwritten",
        update("entry_hash", "sha256:" + "ab" * 32, 5),
        5,
        AuditProblem.EDITED,
    ),
    (
        "prev_hash_overwritten",
        update("prev_hash", "sha256:" + "cd" * 32, 6),
        6,
        AuditProblem.EDITED,
    ),
    ("middle_entry_deleted", delete("seq = 3"), 3, AuditProblem.DELETED),
    ("first_entry_deleted", delete("seq = 1"), 1, AuditProblem.DELETED),
    ("two_middle_entries_deleted", delete("seq IN (2, 3)"), 2, AuditProblem.DELETED),
    ("entries_3_and_4_swapped", swap_entries_3_and_4, 3, AuditProblem.REORDERED),
    # The rewritten entry is self-consistent, and the next entry's link breaks; the Merkle tree
    # recorded at append names entry 3 itself (tests/integration/test_audit_checkpoints.py: with
    # the whole chain and the tree recomputed too).
    (
        "entry_rewritten_with_recomputed_hash",
        rewrite_entry_3_and_recompute_its_hash,
        3,
        AuditProblem.EDITED,
    ),
]


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "problem"), [pytest.param(*case[1:], id=case[0]) for case in TAMPERING]
)
def test_tampering_is_named_at_the_first_bad_entry(
    store: Database,
    log: AuditLog,
    tamper: Callable[[Database], None],
    bad_seq: int,
    problem: AuditProblem,
) -> None:
    hashes = fill(log, 6)
    tamper(store)

    report = log.verify()
    assert (report.ok, report.first_bad_seq, report.problem) == (False, bad_seq, problem), (
        report.message
    )
    assert report.entries == bad_seq - 1
    assert report.head == (
        [GENESIS_HASH, *hashes][bad_seq - 1]
        if problem != AuditProblem.CHAIN_BROKEN
        else log.tail(6)[bad_seq - 2].entry_hash
    )  # the rewritten entry's new hash
    with pytest.raises(
        VerificationError, match=rf"audit log bad at entry {bad_seq} \({problem.value}\)"
    ):
        log.verify_or_raise()


def test_last_entry_deleted_is_caught_against_the_expected_head(
    store: Database, log: AuditLog
) -> None:
    hashes = fill(log, 5)
    sql(store, "DELETE FROM audit_log WHERE seq = 5")

    # the chain alone cannot see a cut tail; the Merkle tree recorded at append can (unless it was cut
    # too: then only a signed checkpoint can, tests/integration/test_audit_checkpoints.py)
    assert (log.verify().first_bad_seq, log.verify().problem) == (5, AuditProblem.TRUNCATED)
    report = log.verify(expected_head=hashes[-1])
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 5, AuditProblem.TRUNCATED)
    assert (report.entries, report.head) == (4, hashes[3])
    with pytest.raises(VerificationError, match=f"does not contain the expected head {hashes[-1]}"):
        log.verify_or_raise(expected_head=hashes[-1])


# -- the database keeps the chain linear ------------------------------------------------------


FORKS = {
    "second_entry_claiming_the_same_predecessor": {
        "prev_hash": "(SELECT prev_hash FROM audit_log WHERE seq = 3)"
    },
    "duplicate_seq": {"seq": "3"},
    "duplicate_entry_hash": {"entry_hash": "(SELECT entry_hash FROM audit_log WHERE seq = 3)"},
    "seq_zero": {"seq": "0"},
    "second_genesis": {"prev_hash": f"'{GENESIS_HASH}'"},
}


@pytest.mark.parametrize("overrides", [pytest.param(v, id=k) for k, v in FORKS.items()])
def test_database_refuses_a_row_that_forks_the_chain(
    store: Database, log: AuditLog, overrides: dict[str, str]
) -> None:
    fill(log, 6)
    row = {
        "seq": "7",
        "created_at": "'2025-01-01T00:00:00.000000Z'",
        "kind": "'decision'",
        "payload": "'{}'",
        "prev_hash": f"'sha256:{'1' * 64}'",
        "entry_hash": f"'sha256:{'2' * 64}'",
    } | overrides
    with pytest.raises(IntegrityError):
        sql(store, f"INSERT INTO audit_log ({', '.join(row)}) VALUES ({', '.join(row.values())})")
    assert log.verify().entries == 6


# -- append fails closed ----------------------------------------------------------------------


FREEZE = {
    "sqlite": [
        (
            "CREATE TRIGGER audit_log_frozen BEFORE INSERT ON audit_log"
            " BEGIN SELECT RAISE(ABORT, 'audit log is frozen'); END"
        ),
    ],
    "postgresql": [
        (
            "CREATE FUNCTION audit_log_frozen() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'audit log is frozen'; END $$"
        ),
        (
            "CREATE TRIGGER audit_log_frozen BEFORE INSERT ON audit_log"
            " FOR EACH ROW EXECUTE FUNCTION audit_log_frozen()"
        ),
    ],
}


def test_database_refusing_the_append_is_audit_unavailable(store: Database, log: AuditLog) -> None:
    fill(log, 2)
    for statement in FREEZE[store.dialect]:
        sql(store, statement)

    started = time.monotonic()
    with pytest.raises(
        AuditError, match="cannot append a 'decision' entry .*audit log is frozen"
    ) as e:
        log.append("decision", {"allow": False})
    assert e.value.code == "audit_unavailable"
    assert time.monotonic() - started < 5  # refused at once, not retried as if contended

    sql(
        store,
        "DROP TRIGGER audit_log_frozen"
        + (" ON audit_log" if store.dialect == "postgresql" else ""),
    )
    assert log.verify().entries == 2  # nothing half written
    assert log.append("decision", {"allow": False}).seq == 3


@pytest.mark.postgres
def test_append_gives_up_on_a_table_locked_too_long(pg_schema_url: str, settings: Settings) -> None:
    url = pg_schema_url + "%20-clock_timeout%3D50"  # the URL's lock_timeout wins over Writ's
    with open_database(Settings(home=settings.home, database_url=url)) as store:
        log = AuditLog(store, timeout_s=0.3)
        fill(log, 1)
        with store.engine.connect() as locker:
            locker.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
            started = time.monotonic()
            with pytest.raises(AuditError, match="the log stayed contended .* for [0-9]+ attempts"):
                log.append("decision", {})
            assert time.monotonic() - started < 3
            locker.rollback()
        assert log.append("decision", {}).seq == 2


def test_missing_table_is_audit_unavailable_for_append_and_verify(
    store: Database, log: AuditLog
) -> None:
    sql(store, "DROP TABLE audit_log")
    with pytest.raises(AuditError, match="cannot append .*audit_log") as e:
        log.append("decision", {})
    assert e.value.code == "audit_unavailable"
    with pytest.raises(AuditError, match="cannot read the audit log in"):
        log.verify()


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        pytest.param("decision", {"x": float("nan")}, "not encodable", id="nan_in_payload"),
        pytest.param("decision", {"x": 2**60}, "not encodable", id="integer_beyond_2_53"),
        pytest.param("decision", {"x": object()}, "not encodable", id="object_in_payload"),
        pytest.param("Decision!", {}, "kind 'Decision!' is invalid", id="kind_not_a_slug"),
    ],
)
def test_append_refuses_what_cannot_be_hashed(
    settings: Settings, kind: str, payload: dict[str, Any], reason: str
) -> None:
    with open_database(settings) as store:
        log = AuditLog(store)
        with pytest.raises(AuditError, match=reason):
            log.append(kind, payload)
        assert log.verify().entries == 0


# -- opening the store ------------------------------------------------------------------------


def test_open_store_creates_the_data_directory_private(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"
    with open_database(Settings(home=home)) as store:
        assert store.dialect == "sqlite" and store.url == f"sqlite:///{home}/writ.sqlite"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    with (
        open_database(Settings(home=home)) as store,
        store.connect() as conn,
    ):  # reopening: nothing to do
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migrations_match_the_table_models(store: Database) -> None:
    with store.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert [d for d in diffs if "audit_log" in repr(d)] == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param(
            "mysql://root@localhost/writ",
            "database mysql://root@localhost/writ is not supported",
            id="unsupported_database",
        ),
        pytest.param("not a url", "database URL is not a SQLAlchemy URL", id="not_a_url"),
        pytest.param(
            "postgresql+psycopg://writ:s3cret@127.0.0.1:1/writ",
            r"cannot open database postgresql\+psycopg://writ:\*\*\*@127.0.0.1:1/writ: connection failed",
            id="postgres_not_listening_password_hidden",
        ),
    ],
)
def test_open_store_failures_name_the_database(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as e:
        open_database(Settings(home=tmp_path, database_url=url))
    assert e.value.code == "store_unavailable" and "s3cret" not in str(e.value)


def test_open_store_where_the_data_directory_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(
        StoreError, match=f"cannot create data directory {tmp_path}/file/home: Not a directory"
    ):
        open_database(Settings(home=tmp_path / "file" / "home"))


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_verify_ok(settings: Settings) -> None:
    with open_database(settings) as store:
        head = fill(AuditLog(store), 5)[-1]
    result = CliRunner().invoke(audit, ["verify", "--data-dir", str((settings).home)])
    assert (result.exit_code, result.output) == (0, f"audit log OK: 5 entries, head {head}\n")
    assert (
        CliRunner().invoke(audit, ["verify", "--expected-head", head, "--data-dir", str((settings).home)]).exit_code == 0
    )


def test_cli_verify_names_the_edited_entry_and_exits_1(settings: Settings) -> None:
    with open_database(settings) as store:
        fill(AuditLog(store), 5)
        sql(store, "UPDATE audit_log SET payload = :p WHERE seq = 3", p='{"allow":true}')
    result = CliRunner().invoke(audit, ["verify", "--data-dir", str((settings).home)])
    assert result.exit_code == 1
    assert result.output.startswith(
        "audit log bad at entry 3 (edited): its contents hash to sha256:"
    )
    assert "2 entries before it verified" in result.output


def test_cli_verify_finds_a_cut_tail_against_the_expected_head(settings: Settings) -> None:
    with open_database(settings) as store:
        head = fill(AuditLog(store), 5)[-1]
        sql(store, "DELETE FROM audit_log WHERE seq >= 4")
    result = CliRunner().invoke(audit, ["verify", "--expected-head", head, "--data-dir", str((settings).home)])
    assert result.exit_code == 1
    assert result.output.startswith("audit log bad at entry 4 (truncated): the log ends at entry 3")


def test_cli_without_a_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "writ.sqlite"
    result = CliRunner().invoke(audit, ["verify", "--data-dir", str((Settings(home=tmp_path / "nowhere")).home)])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error[store_missing]: no Writ data directory at {db.parent}: run 'writ init --data-dir {db.parent}'\n"
    )
    assert not db.parent.exists()


def test_cli_uses_default_settings_without_an_object(settings: Settings) -> None:
    with open_database(settings) as store:  # the conftest points WRIT_HOME at settings.home
        fill(AuditLog(store), 1)
    assert CliRunner().invoke(audit, ["verify"]).output.startswith("audit log OK: 1 entries")


def test_cli_list_shows_the_newest_entries_oldest_first(settings: Settings) -> None:
    with open_database(settings) as store:
        fill(AuditLog(store), 5)
    result = CliRunner().invoke(audit, ["list", "-n", "2", "--data-dir", str((settings).home)])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == ["4", "5"]
    assert lines[1].endswith('{"allow":false,"decision_id":"d5"}')
    as_json = CliRunner().invoke(audit, ["list", "--last", "1", "--json", "--data-dir", str((settings).home)]).output
    assert json.loads(as_json)["payload"] == {"allow": False, "decision_id": "d5"}


@pytest.mark.parametrize("args", [[], ["verify"], ["list"]])
def test_cli_help_shows_an_example(args: list[str]) -> None:
    result = CliRunner().invoke(audit, [*args, "--help"])
    assert result.exit_code == 0 and "Example:\n    writ audit " in result.output


# -- concurrency: several processes, one chain ------------------------------------------------


WORKER = textwrap.dedent("""
    import pathlib, sys, time
    from writ.attestations.audit import AuditLog
    from writ.engine.core.settings import Settings
    from writ.engine.core.db import open_database

    url, home, worker, n, run = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    store = open_database(Settings(home=home, database_url=url))
    (pathlib.Path(run) / f"ready-{worker}").touch()
    while not (pathlib.Path(run) / "go").exists():
        time.sleep(0.002)
    log = AuditLog(store)
    for i in range(n):
        log.append("decision", {"worker": worker, "i": i})
    store.close()
""")


def test_concurrent_appends_from_8_processes_make_one_chain(
    db_settings: Settings, tmp_path: Path
) -> None:
    workers, per_worker = 8, 25
    run = tmp_path / "run"
    run.mkdir()
    url = (
        db_settings.effective_database_url
    )  # a fresh database: the workers also race to migrate it
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                url,
                str(db_settings.home),
                str(w),
                str(per_worker),
                str(run),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    deadline = time.monotonic() + 60
    while len(list(run.glob("ready-*"))) < workers and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.01)
    (run / "go").touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * workers, "\n".join(errors)

    with open_database(db_settings) as store:
        log = AuditLog(store)
        report = log.verify()
        assert (report.ok, report.entries) == (True, workers * per_worker), report.message
        written = {(e.payload["worker"], e.payload["i"]) for e in log.tail(workers * per_worker)}
    assert written == {(w, i) for w in range(workers) for i in range(per_worker)}


# -- property: any single-field change to any entry is caught at that entry --------------------


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
PAYLOADS = st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4)
FIELDS = ["seq", "created_at", "kind", "payload", "prev_hash", "entry_hash"]


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payloads=st.lists(PAYLOADS, min_size=1, max_size=6),
    field=st.sampled_from(FIELDS),
    data=st.data(),
)
def test_any_single_field_mutation_fails_verify_at_that_entry(
    payloads: list[dict[str, Any]], field: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as home, open_database(Settings(home=Path(home))) as store:
        log = AuditLog(store)
        entries = [log.append("decision", p) for p in payloads]
        target = data.draw(st.sampled_from(entries), label="target")
        old = getattr(target, field)
        new: object
        if field == "seq":
            new = len(entries) + data.draw(st.integers(1, 1000))
        elif field == "payload":
            old = rfc8785.dumps(target.payload).decode()
            new = data.draw(st.one_of(st.text(), PAYLOADS.map(json.dumps)))
        elif field.endswith("hash"):
            new = "sha256:" + data.draw(st.text("0123456789abcdef", min_size=64, max_size=64))
        else:
            new = data.draw(st.text(max_size=40))
        if new == old:
            return
        try:
            sql(store, f"UPDATE audit_log SET {field} = :v WHERE seq = :s", v=new, s=target.seq)
        except IntegrityError:  # the constraints refused the change: the chain is untouched
            assert log.verify().ok
            return
        report = log.verify()
        assert not report.ok and report.first_bad_seq == target.seq, (field, new, report)
