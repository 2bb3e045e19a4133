"""The content a proposed file write replaces (``plan_contents``), kept by ``ContentStore`` on real databases."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from writ.attestations.audit import AuditLog
from writ.engine.core.db import Database
from writ.engine.core.errors import InputError, NotFoundError
from writ.engine.core.tables import PlanRow
from writ.engine.core.timeutil import db_time
from writ.plans.contents import CapturedContent, ContentStore
from writ.plans.trust_store import TrustStore

NOW = datetime(2026, 12, 12, 9, 0, 0, 123456, tzinfo=UTC)
PLAN = "sha256:" + "ab" * 32
OLD = "line one\nline two: é ✓\n"


@pytest.fixture
def log(store: Database) -> AuditLog:
    return AuditLog(store)


@pytest.fixture
def contents(store: Database, log: AuditLog) -> ContentStore:
    """A content store beside one stored plan (the row its foreign key needs)."""
    TrustStore(store, audit=log).add_principal("plan-bot", "planner")
    with store.session(write=True) as session:
        session.add(PlanRow(id=PLAN, planner="plan-bot", title="Fix docs", state="pending", envelope=b"{}",
                            created_at=db_time(NOW), expires_at=db_time(NOW + timedelta(hours=4)),
                            submitted_at=db_time(NOW), updated_at=db_time(NOW)))
        session.commit()
    return ContentStore(store, audit=log, max_bytes=1024)


def rows() -> list[CapturedContent]:
    return [
        CapturedContent.without(3, "git", "git_commit", None, "not_a_file_write",
                                "a git commit: see the staged diff in the repository", at=NOW),
        CapturedContent.of_text(0, "fs", "write_file", "/srv/docs/a.md", OLD, max_bytes=1024, at=NOW),
        CapturedContent.without(1, "fs", "write_file", "/srv/docs/new.md", "absent",
                                "the file does not exist yet: a new file", at=NOW),
        CapturedContent.without(2, "fs", "edit_file", "/etc/passwd", "unavailable",
                                "the upstream refused the read: Access denied - path outside allowed directories",
                                at=NOW),
    ]


def content_entries(log: AuditLog) -> list[dict[str, object]]:
    return [dict(e.payload) for e in log.tail(100) if e.kind == "plan_contents"]


def test_rows_read_back_in_step_order_exactly_as_stored(contents: ContentStore) -> None:
    stored = contents.put(PLAN, rows())
    assert [c.step_index for c in stored] == [3, 0, 1, 2]
    got = contents.for_plan(PLAN)
    assert got == sorted(rows(), key=lambda c: c.step_index)
    first = got[0]
    assert (first.status, first.content, first.reason, first.captured_at) == ("captured", OLD, None, NOW)
    assert first.content_sha256 == "sha256:" + hashlib.sha256(OLD.encode()).hexdigest()
    assert [c.status for c in got] == ["captured", "absent", "unavailable", "not_a_file_write"]
    assert all(c.content is None and c.content_sha256 is None and c.reason for c in got[1:])


def test_a_plan_with_nothing_captured_has_no_rows(contents: ContentStore) -> None:
    assert contents.for_plan(PLAN) == []
    assert contents.for_plan("sha256:" + "00" * 32) == []
    assert contents.put(PLAN, []) == []


def test_a_second_put_for_the_same_plan_stores_nothing_new(contents: ContentStore, store: Database,
                                                           log: AuditLog) -> None:
    """A re-proposal of the same plan (or a second gateway) cannot replace what approvers were shown."""
    contents.put(PLAN, rows())
    later = CapturedContent.of_text(0, "fs", "write_file", "/srv/docs/a.md", "swapped\n", max_bytes=1024)
    assert contents.put(PLAN, [later]) == []
    assert ContentStore(store, audit=log).put(PLAN, rows()) == []
    assert contents.for_plan(PLAN)[0].content == OLD
    assert len(content_entries(log)) == 1


def test_steps_not_stored_yet_are_added_alone(contents: ContentStore) -> None:
    contents.put(PLAN, rows()[:2])
    added = contents.put(PLAN, rows())
    assert [c.step_index for c in added] == [1, 2]
    assert [c.step_index for c in contents.for_plan(PLAN)] == [0, 1, 2, 3]


def test_each_put_is_audited_with_digests_never_the_content(contents: ContentStore, log: AuditLog) -> None:
    contents.put(PLAN, rows())
    [entry] = content_entries(log)
    assert entry["plan_id"] == PLAN
    steps = entry["steps"]
    assert isinstance(steps, list)
    assert [(s["step_index"], s["status"]) for s in steps] == [
        (3, "not_a_file_write"), (0, "captured"), (1, "absent"), (2, "unavailable")]
    assert steps[1]["content_sha256"] == contents.for_plan(PLAN)[0].content_sha256
    assert "line one" not in json.dumps(entry)


def test_content_larger_than_the_limit_is_kept_as_too_large(contents: ContentStore) -> None:
    big = CapturedContent.of_text(0, "fs", "write_file", "/srv/big.txt", "x" * 2000, max_bytes=10_000)
    assert big.status == "captured"
    [stored] = contents.put(PLAN, [big])  # the store's own bound (1024 bytes) still holds
    assert (stored.status, stored.content) == ("unavailable", None)
    assert stored.reason == "too large: 2000 bytes, more than limits.plans.max_args_bytes (1024)"
    assert contents.for_plan(PLAN) == [stored]


def test_multibyte_text_is_bounded_by_its_utf8_bytes(contents: ContentStore) -> None:
    text_ = "é" * 600  # 600 characters, 1200 bytes
    [stored] = contents.put(PLAN, [CapturedContent.of_text(0, "fs", "write_file", "/a", text_, max_bytes=10_000)])
    assert stored.status == "unavailable" and "1200 bytes" in (stored.reason or "")


@pytest.mark.parametrize("content", ["PNG\x00\x01\x02", "caf\ufffd latin-1 bytes read as UTF-8"],
                         ids=["nul_byte", "undecodable_bytes"])
def test_binary_content_is_unavailable(contents: ContentStore, content: str) -> None:
    [stored] = contents.put(PLAN, [CapturedContent.of_text(0, "fs", "write_file", "/a.bin", content,
                                                           max_bytes=1024)])
    assert (stored.status, stored.reason, stored.content) == (
        "unavailable", "binary content: the file is not UTF-8 text", None)


def test_contents_of_a_plan_that_is_not_stored_are_refused(contents: ContentStore) -> None:
    with pytest.raises(NotFoundError, match=r"no plan sha256:0+ is stored: its contents cannot be kept"):
        contents.put("sha256:" + "00" * 32, rows())


def test_two_rows_for_one_step_are_refused(contents: ContentStore) -> None:
    with pytest.raises(InputError, match="two content rows for one step"):
        contents.put(PLAN, [rows()[1], rows()[1]])
    assert contents.for_plan(PLAN) == []


def test_the_database_refuses_a_captured_row_without_its_content(contents: ContentStore, store: Database) -> None:
    """Even a writer that bypasses ContentStore cannot store a 'captured' diff base with no text."""
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(text("INSERT INTO plan_contents (plan_id, step_index, server, tool, status, captured_at) "
                          "VALUES (:p, 0, 'fs', 'write_file', 'captured', :t)"), {"p": PLAN, "t": db_time(NOW)})
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(text("INSERT INTO plan_contents (plan_id, step_index, server, tool, status, captured_at) "
                          "VALUES (:p, 0, 'fs', 'write_file', 'diffed', :t)"), {"p": PLAN, "t": db_time(NOW)})
    assert contents.for_plan(PLAN) == []
