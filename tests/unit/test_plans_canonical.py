"""Canonical JSON (RFC 8785) and the strict parser for signed payloads."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from writ.engine.core.errors import InputError
from writ.plans.canonical import SAFE_INT, canonical_bytes, digest, is_plain, parse_strict, sha256_digest

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-SAFE_INT, max_value=SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


# -- canonical bytes ---------------------------------------------------------------------------


def test_keys_sorted_by_utf16_no_whitespace():
    # RFC 8785 3.2.3: keys sort by their UTF-16 code units, so U+1F600 (a surrogate pair) sorts before U+FB33
    assert canonical_bytes({"b": 1, "a": [True, None, "x"]}) == b'{"a":[true,null,"x"],"b":1}'
    assert canonical_bytes({"\ufb33": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ufb33":1}'.encode()


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1.0, b"1"),
        (-0.0, b"0"),
        (1e21, b"1e+21"),
        (1e20, b"100000000000000000000"),
        (0.000001, b"0.000001"),
        (1e-7, b"1e-7"),
        (333333333.3333333, b"333333333.3333333"),
        (9007199254740991, b"9007199254740991"),
    ],
)
def test_numbers_follow_ecmascript(number: float, text: bytes):
    assert canonical_bytes(number) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, 2**53, "\ud800", {"\udc00": 1}, {1: "x"}, object()])
def test_values_without_a_canonical_form_are_input_errors(value: Any):
    with pytest.raises(InputError) as e:
        canonical_bytes(value)
    assert e.value.code == "not_canonicalizable"


def test_digest_is_sha256_of_canonical_bytes():
    assert digest({"b": 1, "a": 2}) == sha256_digest(b'{"a":2,"b":1}')
    assert digest({"a": 2, "b": 1}) == digest({"b": 1, "a": 2})
    assert sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# -- the strict parser -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b'{"a":1,"a":2}', "duplicate JSON object key 'a'"),
        (b'{"x":{"approver":"bob","approver":"alice"}}', "duplicate JSON object key 'approver'"),
        (b'"\\ud800"', "lone surrogate"),
        (b'{"\\udc00":1}', "object key holds a lone surrogate"),
        (b'"\\udc00\\ud800"', "lone surrogate"),  # a reversed pair is two lone surrogates
        (b'"\xff"', "not valid UTF-8"),
        (b'"\xed\xa0\x80"', "not valid UTF-8"),  # a surrogate encoded as UTF-8 (CESU-8)
        (b'"\xc0\xaf"', "not valid UTF-8"),  # overlong "/"
        (b"NaN", "NaN is not JSON"),
        (b"[Infinity]", "Infinity is not JSON"),
        (b"-Infinity", "Infinity is not JSON"),
        (b"1e400", "overflows to infinity"),
        (b"9007199254740993", "not the canonical form of a double"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),  # a byte order mark
        (b"{'a': 1}", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1,]", "not valid JSON"),
    ],
)
def test_ambiguous_json_is_refused(raw: bytes, match: str):
    with pytest.raises(InputError, match=match):
        parse_strict(raw)


def test_depth_and_size_are_bounded():
    with pytest.raises(InputError, match="deeper than 3"):
        parse_strict(b"[[[[1]]]]", max_depth=3)
    with pytest.raises(InputError, match="nests too deeply"):
        parse_strict(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(InputError, match="5 bytes, the limit is 4"):
        parse_strict(b"[1,2]", max_bytes=4)
    with pytest.raises(InputError, match="not valid JSON"):
        parse_strict(b"1" * 5000)  # beyond Python's int digit limit: an error, not a crash


def test_large_doubles_written_as_integers_parse_back():
    # RFC 8785 writes 1e20 as an integer literal; it must parse to the same number
    assert parse_strict(canonical_bytes(1e20)) == 1e20
    assert parse_strict(b"[9007199254740991, -9007199254740991]") == [SAFE_INT, -SAFE_INT]


@given(json_values)
def test_canonicalize_then_parse_is_the_identity(value: Any):
    data = canonical_bytes(value)
    parsed = parse_strict(data, max_depth=1000)
    assert parsed == value
    assert canonical_bytes(parsed) == data


def _as_javascript_reads_it(text: str) -> int | float:
    return int(text) if abs(int(text)) <= SAFE_INT else float(text)


@given(json_values)
def test_parse_strict_reads_numbers_as_doubles_like_javascript(value: Any):
    data = canonical_bytes(value)
    assert parse_strict(data, max_depth=1000) == json.loads(data, parse_int=_as_javascript_reads_it)


def test_a_big_integer_literal_is_read_as_the_double_it_names():
    # Python's json reads 71762956253674210 exactly; a JavaScript verifier reads the double 7.176295625367421e16.
    # The literal is RFC 8785's form of that double, so Writ reads the double too (and signs the same bytes).
    assert json.loads(b"71762956253674210") == 71762956253674210
    parsed = parse_strict(b"71762956253674210")
    assert isinstance(parsed, float)
    assert parsed == 7.176295625367421e16
    assert parsed != 71762956253674210


# -- the fast encoder gives RFC 8785's bytes, or gives way ----------------------------------------

keys_anywhere_in_unicode = st.text(st.characters(blacklist_categories=("Cs",)), max_size=4)
any_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys_anywhere_in_unicode, children, max_size=5),
    max_leaves=30,
)


@given(any_json)
def test_canonical_bytes_are_rfc8785s_for_every_value(value: Any):
    """The json.dumps fast path may only ever produce what the reference implementation produces."""
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(InputError):
            canonical_bytes(value)
        return
    assert canonical_bytes(value) == expected


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({"a": [1, "x", None, True]}, True),
        ({"a": 1.0}, False),  # json.dumps writes 1.0, RFC 8785 writes 1
        ({"x": 1e-7}, False),  # 1e-07 against 1e-7
        ({"n": SAFE_INT + 1}, False),
        ({"\U0001f600": 1, "\ufb33": 2}, False),  # code point order is not UTF-16 order beyond U+FFFF
        ({1: "x"}, False),
        ((1, 2), True),
    ],
    ids=["plain", "float_one", "small_float", "big_int", "astral_key", "int_key", "tuple"],
)
def test_values_the_fast_encoder_would_get_wrong_are_not_plain(value: Any, plain: bool):
    assert is_plain(value) is plain
