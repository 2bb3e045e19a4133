"""The call path's bounds without a gateway: result size, the digest of a refused result, unreadable stdio lines,
pinned path roots. The attacks themselves run end to end in tests/integration/test_attack_call_path.py."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import mcp_types as types
import pytest
from hypothesis import given
from hypothesis import strategies as st

from writ.engine.core import reasons
from writ.engine.gateway.results import refused_digest, result_size
from writ.engine.gateway.stdio import refusal
from writ.engine.gateway.steps import BoundPlan, PathRootChanged, check_roots, choose_step, pin_roots
from writ.plans.models import PathGlob, Plan, PlanStep

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)


def wire_bytes(result: types.CallToolResult) -> int:
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8", "surrogatepass"))


@given(text=st.text(), structured=st.dictionaries(st.text(max_size=8), JSON, max_size=4))
def test_result_size_is_close_to_the_json_the_agent_would_get(text: str, structured: dict[str, object]) -> None:
    result = types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=structured)
    counted = result_size(result, 1 << 40)
    # Escapes are not counted, and a number is one byte: never more than the wire, never far below it.
    assert counted <= wire_bytes(result) + 64
    assert counted >= len(text.encode("utf-8", "surrogatepass"))


def test_result_size_stops_counting_past_the_limit() -> None:
    many = types.CallToolResult(content=[types.TextContent(type="text", text="x" * 100) for _ in range(10_000)])
    assert 1_000 < result_size(many, 1_000) < 1_300  # stopped soon after the limit, not at 1 MB
    assert result_size(many, 1 << 40) > 1_000_000


def test_a_huge_string_is_counted_without_encoding_it() -> None:
    huge = types.CallToolResult(content=[types.TextContent(type="text", text="é" * 5_000_000)])
    assert result_size(huge, 4_194_304) > 4_194_304


def test_the_refused_digest_is_of_the_compact_json_even_with_a_lone_surrogate() -> None:
    result = types.CallToolResult(content=[types.TextContent(type="text", text="big")])
    text = result.model_dump_json(by_alias=True, exclude_none=True)
    assert refused_digest(result) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    lone = types.CallToolResult(content=[types.TextContent(type="text", text="\ud800")])
    assert refused_digest(lone).startswith("sha256:")


def parse_error_of(line: str) -> Exception:
    try:
        types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except Exception as e:  # noqa: BLE001 - what the SDK's stdio reader hands on
        return e
    raise AssertionError(f"{line!r} parsed")


@pytest.mark.parametrize("line", [
    pytest.param("[" * 300 + "]" * 300, id="nested_300_deep"),
    pytest.param('{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "\\ud800"}}', id="lone_surrogate"),
    pytest.param('{"jsonrpc": "2.0", "id": 1, "method"', id="cut_off"),
])
def test_a_line_that_is_not_json_is_a_parse_error(line: str) -> None:
    r = refusal(parse_error_of(line + "\n"))
    assert (r.code, r.jsonrpc_code, r.request_id) == (reasons.MESSAGE_NOT_JSON, -32700, None)
    assert r.line_sha256 == "sha256:" + hashlib.sha256(line.encode()).hexdigest()
    reply = r.reply().message
    assert isinstance(reply, types.JSONRPCError) and reply.id is None and reply.error.code == -32700
    assert r.payload("s-1", "exec-bot")["code"] == "message_not_json"


@pytest.mark.parametrize(("line", "request_id"), [
    pytest.param('{"jsonrpc": "2.0", "id": 11}', 11, id="no_method"),
    pytest.param('{"jsonrpc": "2.0", "id": "a", "method": 5}', "a", id="method_not_a_string"),
    pytest.param("[]", None, id="array"),
    pytest.param('{"jsonrpc": "2.0", "id": true}', None, id="boolean_id"),
])
def test_json_that_is_no_message_is_an_invalid_request(line: str, request_id: object) -> None:
    r = refusal(parse_error_of(line))
    assert (r.code, r.jsonrpc_code, r.request_id) == (reasons.MESSAGE_INVALID, -32600, request_id)


def test_a_root_swapped_after_pinning_refuses_the_steps_of_its_tool(tmp_path: Path) -> None:
    docs, secret = tmp_path / "docs", tmp_path / "secret"
    docs.mkdir()
    secret.mkdir()
    c = PathGlob(arg="path", root=str(docs), glob="*.md")
    step = PlanStep(server="fs", tool="write_file", definition_digest="sha256:" + "a" * 64, args={"content": "x"},
                    constraints=(c,))
    plan = Plan.new(title="t", rationale="r", planner="plan-bot", steps=[step], ttl=timedelta(hours=1))
    bound = BoundPlan(plan.id, plan, pin_roots(plan))
    assert bound.roots == {str(docs): str(docs)}
    check_roots(bound, "fs", "write_file")  # unchanged: no error

    docs.rename(tmp_path / "docs-approved")
    os.symlink(secret, docs)
    with pytest.raises(PathRootChanged, match="root .* of step 0 resolved to .* and now resolves to") as e:
        check_roots(bound, "fs", "write_file")
    assert e.value.code == "path_root_changed"
    check_roots(bound, "fs", "read_text_file")  # no step of that tool: nothing to check
    # Even without the check, the pinned root is what paths must be under: no step matches.
    choice = choose_step(plan, set(), server="fs", tool="write_file", definition_digest=step.definition_digest,
                         args={"path": str(docs / "a.md"), "content": "x"}, roots=bound.roots)
    assert not choice.matches
    with pytest.raises(PathRootChanged, match="was not pinned"):
        check_roots(BoundPlan(plan.id, plan, {}), "fs", "write_file")
