"""Signed checkpoints of the audit log, and the attacks they catch that the hash chain alone cannot.

Each attack edits the database with raw SQL as an attacker with database access would, and
recomputes every hash after the change, so the chain walk alone finds nothing. Each runs on
SQLite and on PostgreSQL. "Tree kept": the attacker left ``audit_tree`` as it was; "tree
rewritten": a careful attacker rebuilt it too, and only the signed checkpoints, kept outside
the database, still know the truth.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from writ.attestations.audit import GENESIS_HASH, AuditLog, AuditProblem, compute_entry_hash
from writ.attestations.checkpoints import Checkpointer, HeldCheckpoint, StoredCheckpoint, read_checkpoint_file
from writ.attestations.merkle import CompactRange, MemoryTree
from writ.attestations.notes import Checkpoint, CheckpointError, note_key_id, open_checkpoint, sign_checkpoint
from writ.attestations.tree import entry_leaf
from writ.engine.core import reasons
from writ.engine.core.db import Database
from writ.engine.core.errors import AuditError
from writ.engine.core.settings import Settings
from writ.plans.keys import PrivateKey

KEY = PrivateKey.from_seed(bytes(range(32)))


@pytest.fixture
def file(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints.log"


def checkpointer(store: Database, file: Path, **kwargs: object) -> Checkpointer:
    return Checkpointer(store, KEY, origin="writ.test", file=file, **kwargs)  # type: ignore[arg-type]


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append("decision", {"decision_id": f"d{i + 1}", "allow": i % 2 == 0})


def held(file: Path) -> list[HeldCheckpoint]:
    return read_checkpoint_file(file, KEY.public_key)


# -- what an attacker with database access does ----------------------------------------------------


def sql(store: Database, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def recompute_chain(store: Database, start: int) -> None:
    """Rehash every entry from ``start`` on, linking each to the one before: the chain walk finds nothing."""
    with store.engine.begin() as conn:
        prev = conn.execute(text("SELECT entry_hash FROM audit_log WHERE seq = :s"), {"s": start - 1}).scalar()
        prev = prev or GENESIS_HASH
        rows = conn.execute(text("SELECT * FROM audit_log WHERE seq >= :s ORDER BY seq"), {"s": start}).all()
        for row in rows:
            h = compute_entry_hash(row.seq, row.created_at, row.kind, json.loads(row.payload), prev)
            conn.execute(text("UPDATE audit_log SET prev_hash = :p, entry_hash = :h WHERE seq = :s"),
                         {"p": prev, "h": h, "s": row.seq})
            prev = h


def rewrite_tree(store: Database) -> None:
    """Rebuild audit_tree from the (forged) entries, as Writ would have: the tree now agrees with the forgery."""
    with store.engine.begin() as conn:
        hashes = conn.execute(text("SELECT entry_hash FROM audit_log ORDER BY seq")).scalars().all()
        conn.execute(text("DELETE FROM audit_tree"))
        compact = CompactRange()
        for h in hashes:
            for level, idx, node in compact.push(entry_leaf(h)):
                conn.execute(text("INSERT INTO audit_tree (level, idx, hash) VALUES (:l, :i, :h)"),
                             {"l": level, "i": idx, "h": node})


def edit_entry_4(store: Database) -> None:
    sql(store, "UPDATE audit_log SET payload = :p WHERE seq = 4", p='{"allow":true,"decision_id":"d4"}')
    recompute_chain(store, 4)


def delete_entry_4(store: Database) -> None:
    sql(store, "DELETE FROM audit_log WHERE seq = 4")
    for seq in range(5, 11):  # one row at a time: PostgreSQL checks the key after each row
        sql(store, "UPDATE audit_log SET seq = :n WHERE seq = :s", n=seq - 1, s=seq)
    recompute_chain(store, 4)


def cut_tail_after_7(store: Database) -> None:
    sql(store, "DELETE FROM audit_log WHERE seq > 7")


def hash_of(store: Database, seq: int) -> str:
    with store.connect() as conn:
        return str(conn.execute(text("SELECT entry_hash FROM audit_log WHERE seq = :s"), {"s": seq}).scalar_one())


# -- checkpoints ---------------------------------------------------------------------------------------


def test_a_checkpoint_is_signed_stored_and_appended_to_the_file(store: Database, file: Path) -> None:
    log = AuditLog(store)
    fill(log, 5)
    made = checkpointer(store, file).checkpoint()
    assert made.new and made.checkpoint == Checkpoint("writ.test", 5, log.tree.root()[1])
    assert open_checkpoint(made.note, KEY.public_key) == made.checkpoint
    signature = base64.b64decode(made.note.rstrip("\n").split(" ")[-1])
    assert signature[:4] == note_key_id("writ.test", KEY.public_key)  # C2SP: the key id leads the signature
    assert file.read_text() == made.note + "\n"  # each note, then a blank line
    assert [h.checkpoint for h in held(file)] == [made.checkpoint]
    assert checkpointer(store, file).latest() == StoredCheckpoint(made.checkpoint, made.note, made.created_at)


def test_a_checkpoint_of_a_log_that_did_not_grow_is_the_last_one(store: Database, file: Path) -> None:
    fill(AuditLog(store), 3)
    first = checkpointer(store, file).checkpoint()
    again = checkpointer(store, file).checkpoint()
    assert (again.new, again.note) == (False, first.note)
    assert len(held(file)) == 1


def test_an_empty_log_has_no_checkpoint(store: Database, file: Path) -> None:
    with pytest.raises(AuditError, match="the audit log is empty") as e:
        checkpointer(store, file).checkpoint()
    assert e.value.code == reasons.CHECKPOINT_FAILED and not file.exists()


def test_periodic_checkpoints_every_n_entries(store: Database, file: Path) -> None:
    log = AuditLog(store, on_append=checkpointer(store, file, every_entries=4).after_append)
    fill(log, 10)
    assert [h.checkpoint.size for h in held(file)] == [4, 8]


def test_periodic_checkpoints_by_time(store: Database, file: Path) -> None:
    """The first append after the interval makes one: the log's first (no checkpoint before), then not for an hour."""
    log = AuditLog(store, on_append=checkpointer(store, file, every_seconds=3600).after_append)
    fill(log, 6)
    assert [h.checkpoint.size for h in held(file)] == [1]


def test_a_failing_periodic_checkpoint_never_fails_the_append(
    store: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = checkpointer(store, tmp_path / "no-such-dir" / "checkpoints.log", every_entries=2)
    log = AuditLog(store, on_append=broken.after_append)
    with caplog.at_level(logging.WARNING, logger="writ.attestations.checkpoints"):
        fill(log, 3)
    assert log.verify().entries == 3
    assert "no audit checkpoint after entry 2: checkpoint stored in the database but not appended to" in caplog.text


def test_the_signer_refuses_to_sign_over_a_rewritten_history(store: Database, file: Path) -> None:
    fill(AuditLog(store), 10)
    checkpointer(store, file).checkpoint()
    edit_entry_4(store)
    rewrite_tree(store)
    AuditLog(store).append("decision", {"after": "the forgery"})
    with pytest.raises(AuditError, match="tree of 10 entries no longer has the root its checkpoint signed") as e:
        checkpointer(store, file).checkpoint()
    assert e.value.code == reasons.CHECKPOINT_FAILED and len(held(file)) == 1


def test_the_signer_refuses_a_log_shorter_than_its_last_checkpoint(store: Database, file: Path) -> None:
    fill(AuditLog(store), 10)
    checkpointer(store, file).checkpoint()
    cut_tail_after_7(store)
    with pytest.raises(AuditError, match="holds 7 entries, fewer than the 10 of its last checkpoint"):
        checkpointer(store, file).checkpoint()


def test_each_checkpoint_is_posted_to_the_webhook(store: Database, file: Path) -> None:
    from support.webhooks import closed_url, webhook_receiver

    fill(AuditLog(store), 2)
    with webhook_receiver() as hook:
        made = checkpointer(store, file, webhook_url=hook.url).checkpoint()
        assert [(body.decode(), headers["Content-Type"]) for body, headers in hook.posts] == [
            (made.note, "text/plain; charset=utf-8")]
    AuditLog(store).append("decision", {})
    with pytest.raises(AuditError, match="checkpoint webhook failed: ConnectError"):
        checkpointer(store, file, webhook_url=closed_url()).checkpoint()
    assert [h.checkpoint.size for h in held(file)] == [2, 3]  # stored and written before the POST


def test_a_checkpoint_signed_by_another_key_in_the_file_is_named(store: Database, file: Path) -> None:
    fill(AuditLog(store), 2)
    checkpointer(store, file).checkpoint()
    forged = sign_checkpoint(Checkpoint("writ.test", 2, bytes(32)), PrivateKey.generate())
    file.write_text(file.read_text() + forged + "\n")
    with pytest.raises(CheckpointError, match=rf"{file}, line 7: checkpoint of size 2: not signed by the instance"):
        held(file)


# -- the attacks -------------------------------------------------------------------------------------


TREE = [pytest.param(False, id="tree_kept"), pytest.param(True, id="tree_rewritten")]


@pytest.mark.parametrize("tree_rewritten", TREE)
def test_tail_cut_after_checkpoint_is_caught(store: Database, file: Path, tree_rewritten: bool) -> None:
    log = AuditLog(store, on_append=checkpointer(store, file, every_entries=1).after_append)
    fill(log, 10)
    cut_tail_after_7(store)
    if tree_rewritten:
        rewrite_tree(store)
    assert log.verify().ok is tree_rewritten  # the chain and a rebuilt tree agree: only the checkpoints know

    report = log.verify(checkpoints=held(file))
    assert (report.ok, report.problem, report.first_bad_seq, report.first_bad_seq_max) == (
        False, AuditProblem.TRUNCATED, 8, None)
    assert (report.entries, report.head) == (7, hash_of(store, 7))
    assert report.message.startswith("audit log bad at entry 8 (truncated): the log ends at entry 7 but a signed "
                                     f"checkpoint ({file}, line 55) holds 10 entries: entries 8 to 10 were cut")


def test_tail_cut_is_caught_by_the_tree_recorded_at_append(store: Database) -> None:
    log = AuditLog(store)
    fill(log, 10)
    cut_tail_after_7(store)
    report = log.verify()
    assert (report.problem, report.first_bad_seq) == (AuditProblem.TRUNCATED, 8)
    assert "the Merkle tree recorded at append holds 10 entries" in report.message


@pytest.mark.parametrize("attack", [pytest.param(cut_tail_after_7, id="tail_cut"),
                                    pytest.param(delete_entry_4, id="entry_4_deleted")])
def test_entries_removed_under_sparse_checkpoints_are_placed_after_the_last_that_matches(
    store: Database, file: Path, attack: Callable[[Database], None]
) -> None:
    """With the tree rewritten and checkpoints only at 3 and 10, roots cannot tell a cut tail from a deletion."""
    log = AuditLog(store)
    fill(log, 3)
    checkpointer(store, file).checkpoint()
    fill(log, 7)
    checkpointer(store, file).checkpoint()
    attack(store)
    rewrite_tree(store)
    report = log.verify(checkpoints=held(file))
    short = 7 if attack is cut_tail_after_7 else 9
    assert (report.problem, report.first_bad_seq, report.first_bad_seq_max) == (AuditProblem.DELETED, 4, short + 1)
    assert report.message.startswith(
        f"audit log bad at entries 4-{short + 1} (deleted): the log ends at entry {short} but a signed checkpoint "
        f"({file}, line 7) holds 10 entries: {'3 entries were' if short == 7 else '1 entry was'} removed, from the "
        "end or from anywhere after entry 3")


@pytest.mark.parametrize("tree_rewritten", TREE)
def test_deleted_entry_with_chain_recomputed_is_caught(store: Database, file: Path, tree_rewritten: bool) -> None:
    log = AuditLog(store, on_append=checkpointer(store, file, every_entries=1).after_append)
    fill(log, 10)
    delete_entry_4(store)
    if tree_rewritten:
        rewrite_tree(store)
    assert log.verify().ok is tree_rewritten  # with the tree kept, the tree alone already sees it

    report = log.verify(checkpoints=held(file))
    assert (report.ok, report.problem, report.first_bad_seq, report.first_bad_seq_max) == (
        False, AuditProblem.DELETED, 4, None), report.message
    assert (report.entries, report.head) == (3, hash_of(store, 3))
    assert report.message.startswith("audit log bad at entry 4 (deleted): ")


@pytest.mark.parametrize("tree_rewritten", TREE)
def test_edited_entry_with_chain_recomputed_is_caught(store: Database, file: Path, tree_rewritten: bool) -> None:
    log = AuditLog(store, on_append=checkpointer(store, file, every_entries=1).after_append)
    fill(log, 10)
    edit_entry_4(store)
    if tree_rewritten:
        rewrite_tree(store)
    assert log.verify().ok is tree_rewritten

    report = log.verify(checkpoints=held(file))
    assert (report.ok, report.problem, report.first_bad_seq, report.first_bad_seq_max) == (
        False, AuditProblem.EDITED, 4, None), report.message
    assert (report.entries, report.head, report.checkpoints) == (3, hash_of(store, 3), 3)
    assert report.message.startswith("audit log bad at entry 4 (edited): ")


def test_edited_entry_between_two_checkpoints_is_placed_between_them(store: Database, file: Path) -> None:
    """A root names no entry: with checkpoints every 5 entries, entry 4's edit shows as one of entries 1 to 5."""
    log = AuditLog(store, on_append=checkpointer(store, file, every_entries=5).after_append)
    fill(log, 10)
    edit_entry_4(store)
    rewrite_tree(store)
    report = log.verify(checkpoints=held(file))
    assert (report.problem, report.first_bad_seq, report.first_bad_seq_max) == (AuditProblem.EDITED, 1, 5)
    assert report.message.startswith(
        f"audit log bad at entries 1-5 (edited): the first 5 entries do not hash to the root signed in {file}, line 1")


def test_edited_entry_after_the_last_checkpoint_is_left_to_the_chain(store: Database, file: Path) -> None:
    """What no checkpoint covers yet, only the chain and the recorded tree protect (ADR 0017)."""
    log = AuditLog(store)
    fill(log, 6)
    checkpointer(store, file).checkpoint()
    fill(log, 4)
    sql(store, "UPDATE audit_log SET payload = '{}' WHERE seq = 9")
    recompute_chain(store, 9)
    rewrite_tree(store)
    report = log.verify(checkpoints=held(file))
    assert report.ok and (report.checkpoints, report.checkpoint_size) == (1, 6)


def test_an_honest_log_matches_every_checkpoint(store: Database, file: Path) -> None:
    log = AuditLog(store, on_append=checkpointer(store, file, every_entries=3).after_append)
    fill(log, 10)
    report = log.verify(checkpoints=held(file))
    assert (report.ok, report.checkpoints, report.checkpoint_size) == (True, 3, 9)
    assert report.message.endswith("; its tree matches 3 signed checkpoints (the largest of 9 entries)")
    assert MemoryTree(entry_leaf(e.entry_hash) for e in log.tail(10)[:9]).root() == held(file)[-1].checkpoint.root


# -- the CLI, as an operator runs it -----------------------------------------------------------------


def writ_cli(home: Path, *args: str) -> object:
    from writ.engine.cli.main import main

    return CliRunner().invoke(main, [*args, "--data-dir", str(home)])


AttackFn = Callable[[Database], None]


@pytest.mark.parametrize(
    ("attack", "line"),
    [
        pytest.param(cut_tail_after_7, "audit log bad at entry 8 (truncated)", id="tail_cut"),
            pytest.param(delete_entry_4, "audit log bad at entry 4 (deleted)", id="entry_deleted"),
        pytest.param(edit_entry_4, "audit log bad at entry 4 (edited)", id="entry_edited"),
    ],
)
def test_cli_verify_with_a_kept_copy_of_the_checkpoints(tmp_path: Path, attack: AttackFn, line: str) -> None:
    from writ.attestations.audit import audit_log_for
    from writ.engine.core.db import open_database
    from writ.engine.core.settings import CheckpointSettings, Settings

    home = tmp_path / "home"
    assert writ_cli(home, "init").exit_code == 0  # type: ignore[attr-defined]
    settings = Settings(home=home, checkpoint=CheckpointSettings(every_entries=1))  # WRIT_CHECKPOINT__EVERY_ENTRIES=1
    with open_database(settings) as store:
        n = AuditLog(store).tree.size()
        fill(audit_log_for(settings, store), 10 - n)
    made = writ_cli(home, "audit", "checkpoint", "--json")
    assert made.exit_code == 0, made.output  # type: ignore[attr-defined]
    doc = json.loads(made.output)  # type: ignore[attr-defined]
    assert (doc["size"], doc["new"], doc["file"]) == (10, False, str(home / "checkpoints.log"))
    copy = tmp_path / "auditor-copy.log"
    copy.write_text((home / "checkpoints.log").read_text())
    (home / "checkpoints.log").unlink()  # the operator's own file is gone too: the auditor's copy decides

    ok = writ_cli(home, "audit", "verify", "--checkpoint", str(copy))
    assert ok.exit_code == 0 and "its tree matches" in ok.output  # type: ignore[attr-defined]
    with open_database(settings) as store:
        attack(store)
        rewrite_tree(store)
    bad = writ_cli(home, "audit", "verify", "--checkpoint", str(copy))
    assert bad.exit_code == 1 and bad.output.startswith(line), bad.output  # type: ignore[attr-defined]
    unaided = writ_cli(home, "audit", "verify")
    assert unaided.exit_code == 0 and "no signed checkpoint in" in unaided.output  # type: ignore[attr-defined]


def test_cli_checkpoint_prints_the_note_and_trust_export_holds_the_instance_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert writ_cli(home, "init").exit_code == 0  # type: ignore[attr-defined]
    writ_cli(home, "principals", "add", "alice", "--role", "approver")
    printed = writ_cli(home, "audit", "checkpoint").output  # type: ignore[attr-defined]
    exported = writ_cli(home, "trust", "export", "-o", str(tmp_path / "root.json"))
    assert exported.exit_code == 0  # type: ignore[attr-defined]
    instance = json.loads((tmp_path / "root.json").read_text())["instance_key"]
    from writ.plans.keys import PublicKey

    public_key = PublicKey.from_base64(instance["public_key"])
    checkpoint = open_checkpoint(printed, public_key, origin=instance["checkpoint_origin"])
    assert instance["checkpoint_origin"] == "writ." + public_key.key_id.removeprefix("sha256:")[:16]
    assert note_key_id(checkpoint.origin, public_key).hex() == instance["note_key_id"]
    assert printed + "\n" in (home / "checkpoints.log").read_text()


def test_entry_rewritten_with_its_hash_and_the_tree_breaks_the_next_link(store: Database) -> None:
    """Without the later hashes recomputed, the chain itself still shows where: entry 4 no longer links."""
    log = AuditLog(store)
    fill(log, 6)
    sql(store, "UPDATE audit_log SET payload = :p WHERE seq = 3", p='{"allow":false,"decision_id":"d3"}')
    with store.engine.begin() as conn:
        row = conn.execute(text("SELECT * FROM audit_log WHERE seq = 3")).one()
        new = compute_entry_hash(3, row.created_at, row.kind, json.loads(row.payload), row.prev_hash)
        conn.execute(text("UPDATE audit_log SET entry_hash = :h WHERE seq = 3"), {"h": new})
    rewrite_tree(store)
    report = log.verify()
    assert (report.first_bad_seq, report.problem, report.head) == (4, AuditProblem.CHAIN_BROKEN, new)


def test_a_log_gone_quiet_is_checkpointed_by_the_periodic_thread(db_settings: Settings) -> None:
    """`writ serve` and `writ mcp` run this thread: the last entries get signed with no append after them."""
    import time

    from writ.attestations.checkpoints import periodic_checkpoints
    from writ.attestations.instance_key import ensure_instance_key
    from writ.engine.core.db import open_database
    from writ.engine.core.settings import CheckpointSettings

    settings = db_settings.model_copy(update={"checkpoint": CheckpointSettings(every_entries=0, every_seconds=0.05)})
    settings.home.mkdir(parents=True, exist_ok=True)
    key, _ = ensure_instance_key(settings.home)
    with open_database(settings) as store:
        fill(AuditLog(store), 3)  # no checkpoint on append: this log has no on_append hook
        with periodic_checkpoints(settings, store) as running:
            assert running is not None
            deadline = time.monotonic() + 60
            while not (settings.home / "checkpoints.log").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        held = read_checkpoint_file(settings.home / "checkpoints.log", key.public_key)
    assert [h.checkpoint.size for h in held] == [3]  # once: the log did not grow after it
