"""Bounds on untrusted JSON: the depth scanner agrees with a real parser, and limits hold."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from writ.engine.core.bounds import check_depth, json_depth, parse_json_bounded
from writ.engine.core.errors import InputError
from writ.engine.core.settings import Limits

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=30,
)


def depth(v: Any) -> int:
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    return 0


@given(json_values)
def test_depth_scan_matches_structure(v: Any) -> None:
    text = json.dumps(v)
    assert json_depth(text) == depth(v)
    assert json_depth(text.encode()) == depth(v)


@given(json_values)
def test_bounded_parse_is_identity_within_limits(v: Any) -> None:
    text = json.dumps(v)
    assert parse_json_bounded(text, Limits(max_json_depth=100)) == v


@given(st.text())
def test_brackets_inside_strings_do_not_count(s: str) -> None:
    assert json_depth(json.dumps({"k": s})) == 1


def test_ten_thousand_deep_is_refused_without_recursion() -> None:
    raw = "[" * 10_000 + "]" * 10_000
    with pytest.raises(InputError) as exc:
        parse_json_bounded(raw, Limits())
    assert exc.value.code == "input_too_deep"
    doc: Any = {}
    for _ in range(10_000):
        doc = {"a": doc}
    with pytest.raises(InputError, match="deeper than 64"):
        check_depth(doc, 64)


def test_ten_megabytes_is_refused_before_parsing() -> None:
    raw = b'{"a": "' + b"x" * 10_000_000 + b'"}'
    with pytest.raises(InputError, match="10000009 bytes, the limit is 1048576") as exc:
        parse_json_bounded(raw, Limits())
    assert exc.value.code == "input_too_large"


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"NaN?", b'{"a": 1,}'])
def test_malformed_json_is_a_typed_error(raw: bytes) -> None:
    with pytest.raises(InputError) as exc:
        parse_json_bounded(raw, Limits())
    assert exc.value.code == "input_not_json"
