"""The pure parts of the diff capture: which steps are read, how a read's result is understood, valid rows."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import get_args

import mcp_types as types
import pytest

from writ.engine.core import reasons
from writ.engine.core.errors import InputError
from writ.engine.core.tables import CONTENT_STATUSES
from writ.engine.gateway.capture import ABSENT_REASON, Target, read_outcome, read_tool, target_of
from writ.engine.gateway.results import deny_result, error_result
from writ.engine.policy.models import Decision, Reason
from writ.plans.contents import CapturedContent, ContentStatus, text_problem
from writ.plans.models import PlanStep

DEF = "sha256:" + "ab" * 32
NOW = datetime(2026, 12, 12, 9, 0, tzinfo=UTC)


def step(tool: str, server: str = "fs", **kw: object) -> PlanStep:
    return PlanStep.model_validate({"server": server, "tool": tool, "definition_digest": DEF, **kw})


def decision(allow: bool, code: str = reasons.ROLE_NOT_PERMITTED) -> Decision:
    return Decision(decision_id="d-1", allow=allow, reasons=[] if allow else [Reason(code=code, message="no")],
                    obligations=[], policy_revision=None, engine="embedded", duration_us=1)


def text_result(text: str, *, is_error: bool = False, structured: dict[str, object] | None = None
                ) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=is_error,
                                structured_content=structured)


def test_the_row_statuses_are_the_tables_statuses() -> None:
    assert set(get_args(ContentStatus)) == set(CONTENT_STATUSES)


# --- which steps are read ----------------------------------------------------------------------------


def test_a_file_write_with_a_fixed_path_is_read() -> None:
    assert target_of(step("write_file", args={"path": "/srv/a.md", "content": "x"})) == Target("/srv/a.md", None)
    assert target_of(step("edit_file", args={"path": "/srv/a.md", "edits": []})) == Target("/srv/a.md", None)


def test_a_path_chosen_at_run_time_names_its_root_and_glob() -> None:
    s = step("write_file", args={"content": "x"},
             constraints=[{"kind": "path_glob", "arg": "path", "root": "/srv/docs", "glob": "**/*.md"}])
    assert target_of(s) == Target(None, "unavailable", "the path is chosen at run time within /srv/docs/**/*.md")
    one_of = step("write_file", args={"content": "x"},
                  constraints=[{"kind": "one_of", "arg": "path", "values": ["/a.md", "/b.md"]}])
    assert target_of(one_of) == Target(None, "unavailable", "the path is chosen at run time among: /a.md, /b.md")


def test_a_git_commit_and_other_writes_are_not_file_writes() -> None:
    commit = target_of(step("git_commit", server="git", args={"message": "m"}))
    assert commit.status == "not_a_file_write" and "git diff --staged" in commit.reason
    mkdir = target_of(step("create_directory", args={"path": "/srv/new"}))
    assert mkdir == Target(None, "not_a_file_write",
                           "fs__create_directory does not replace one file's content: there is no diff to show")


def test_a_file_write_without_a_path_string_is_unavailable() -> None:
    assert target_of(step("write_file", args={"path": 7})).status == "unavailable"
    assert target_of(step("write_file", args={})).reason == "the step has no 'path' argument naming the file"


def test_the_read_tool_is_the_upstreams_own() -> None:
    assert read_tool(["write_file", "read_file", "read_text_file"]) == "read_text_file"
    assert read_tool(["write_file", "read_file"]) == "read_file"
    assert read_tool(["git_commit", "git_status"]) is None


# --- what a read's result says ----------------------------------------------------------------------


def test_a_read_text_is_captured_structured_or_not() -> None:
    assert read_outcome(text_result("ignored", structured={"content": "a\nb\n"})) == ("captured", "", "a\nb\n")
    assert read_outcome(text_result("a\nb\n")) == ("captured", "", "a\nb\n")


def test_a_missing_file_is_absent() -> None:
    enoent = text_result("ENOENT: no such file or directory, open '/srv/new.md'", is_error=True)
    assert read_outcome(enoent) == ("absent", ABSENT_REASON, None)
    no_parent = text_result("Parent directory does not exist: /srv/new", is_error=True)
    assert read_outcome(no_parent)[0] == "absent"


def test_a_read_denied_by_policy_quotes_the_denial() -> None:
    denied = deny_result(decision(False))
    assert read_outcome(denied) == ("unavailable", "the read was denied by policy: denied [role_not_permitted]: no",
                                    None)


def test_a_read_the_gateway_stopped_or_the_upstream_refused_is_unavailable() -> None:
    timeout = error_result(reasons.UPSTREAM_TIMEOUT, "upstream 'fs' did not answer", decision(True))
    assert read_outcome(timeout)[:2] == ("unavailable", "the read failed: error [upstream_timeout]: upstream 'fs' "
                                                        "did not answer")
    refused = text_result("Access denied - path outside allowed directories: /etc/x not in /srv", is_error=True)
    status, reason, _ = read_outcome(refused)
    assert (status, reason) == ("unavailable", "the upstream refused the read: Access denied - path outside "
                                               "allowed directories: /etc/x not in /srv")
    long = read_outcome(text_result("x" * 5000, is_error=True))[1]
    assert len(long) == 300 and long.endswith("…")


def test_a_read_that_returns_an_image_is_binary() -> None:
    image = types.CallToolResult(content=[types.ImageContent(type="image", data="AAAA", mime_type="image/png")])
    assert read_outcome(image) == ("unavailable", "binary content: the upstream returned image content", None)


# --- rows -----------------------------------------------------------------------------------------------


def test_a_captured_row_carries_its_texts_digest() -> None:
    row = CapturedContent.of_text(0, "fs", "write_file", "/a", "é\n", max_bytes=100, at=NOW)
    assert row.content_sha256 == "sha256:" + hashlib.sha256("é\n".encode()).hexdigest()
    assert row.summary() == {"step_index": 0, "server": "fs", "tool": "write_file", "path": "/a",
                             "status": "captured", "reason": None, "content_sha256": row.content_sha256}


@pytest.mark.parametrize(("fields", "message"), [
    ({"status": "captured", "content": "x", "content_sha256": "sha256:" + "00" * 32}, "its text and that text's"),
    ({"status": "captured", "content": None, "content_sha256": None}, "its text and that text's"),
    ({"status": "absent", "reason": None}, "a reason and no content"),
    ({"status": "unavailable", "reason": "r", "content": "x"}, "a reason and no content"),
    ({"status": "diffed", "reason": "r"}, "is not one of captured, absent"),
    ({"step_index": -1, "status": "absent", "reason": "r"}, "a step index >= 0"),
], ids=["wrong_digest", "captured_without_text", "absent_without_reason", "unavailable_with_text",
        "unknown_status", "negative_step"])
def test_an_invalid_row_cannot_be_built(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"step_index": 0, "server": "fs", "tool": "write_file", "path": "/a", "reason": None,
                               "content": None, "content_sha256": None, "captured_at": NOW}
    with pytest.raises(InputError, match=message):
        CapturedContent(**{**base, **fields})  # type: ignore[arg-type]


def test_a_naive_capture_time_is_refused() -> None:
    with pytest.raises(InputError, match="captured_at must be timezone-aware"):
        CapturedContent.without(0, "fs", "write_file", "/a", "absent", "new", at=datetime(2026, 12, 12))


def test_text_problems() -> None:
    assert text_problem("abc", 3) is None
    assert text_problem("abcd", 3) == "too large: 4 bytes, more than limits.plans.max_args_bytes (3)"
    assert text_problem("a\x00b", 10) == "binary content: the file is not UTF-8 text"
    assert text_problem("a\ud800b", 10) == "binary content: the file is not UTF-8 text"  # a lone surrogate


def test_a_long_reason_is_cut() -> None:
    row = CapturedContent.without(0, "fs", "write_file", "/a", "unavailable", "r" * 5000)
    assert row.reason is not None and len(row.reason) == 1000 and row.reason.endswith("…")
