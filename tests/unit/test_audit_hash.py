"""The audit append's one-canonicalization hash equals the full RFC 8785 hash of the entry, for any entry.

``entry_hash_of_text`` builds the entry's RFC 8785 bytes around the payload's canonical text; an
existing log must still verify, so it must agree with ``compute_entry_hash`` byte for byte.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from writ.attestations.chain import compute_entry_hash, entry_hash_of_text, parse_payload

SAFE = 2**53 - 1
scalars = st.none() | st.booleans() | st.integers(-SAFE, SAFE) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
payloads = st.dictionaries(st.text(max_size=12), json_values, max_size=6)
ascii_fields = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
any_fields = st.text(max_size=40)  # quotes, backslashes, controls, non-ASCII: the fallback path


def full_hash(seq: int, created_at: str, kind: str, payload: Any, prev_hash: str) -> str:
    doc = {"seq": seq, "created_at": created_at, "kind": kind, "payload": payload, "prev_hash": prev_hash}
    return "sha256:" + hashlib.sha256(rfc8785.dumps(doc)).hexdigest()


@settings(max_examples=400, deadline=None)
@given(seq=st.integers(0, SAFE), created_at=ascii_fields, kind=ascii_fields, payload=payloads, prev_hash=ascii_fields)
def test_concatenated_entry_bytes_equal_rfc8785_of_the_whole_entry(seq: int, created_at: str, kind: str,
                                                                    payload: dict[str, Any], prev_hash: str) -> None:
    text = rfc8785.dumps(payload).decode()
    assert entry_hash_of_text(seq, created_at, kind, text, prev_hash) == full_hash(
        seq, created_at, kind, parse_payload(text), prev_hash)
    assert entry_hash_of_text(seq, created_at, kind, text, prev_hash) == compute_entry_hash(
        seq, created_at, kind, parse_payload(text), prev_hash)


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(0, SAFE), created_at=any_fields, kind=any_fields, payload=payloads, prev_hash=any_fields)
def test_fields_that_are_not_plain_ascii_hash_as_rfc8785_says(seq: int, created_at: str, kind: str,
                                                               payload: dict[str, Any], prev_hash: str) -> None:
    text = rfc8785.dumps(payload).decode()
    assert entry_hash_of_text(seq, created_at, kind, text, prev_hash) == full_hash(
        seq, created_at, kind, parse_payload(text), prev_hash)


@settings(max_examples=300, deadline=None)
@given(payload=payloads)
def test_stored_payload_text_reads_back_to_the_same_canonical_text(payload: dict[str, Any]) -> None:
    """What verify does with a stored payload (parse, re-canonicalize) gives back the text append hashed."""
    text = rfc8785.dumps(payload).decode()
    assert rfc8785.dumps(parse_payload(text)).decode() == text


def test_quotes_and_controls_in_a_field_take_the_full_path() -> None:
    text = rfc8785.dumps({"a": 1}).decode()
    for kind in ('say "hi"', "back\\slash", "tab\there", "caf\u00e9", "del\x7f"):
        assert entry_hash_of_text(7, "2025-06-01T12:00:00.000000Z", kind, text, "sha256:00") == full_hash(
            7, "2025-06-01T12:00:00.000000Z", kind, {"a": 1}, "sha256:00")


def test_a_known_entry_keeps_its_hash() -> None:
    """Pinned bytes: the entry form of the existing logs (keys sorted, no spaces)."""
    doc = b'{"created_at":"2025-06-01T12:00:00.000000Z","kind":"decision","payload":{"allow":false},' \
          b'"prev_hash":"sha256:' + b"0" * 64 + b'","seq":1}'
    expected = "sha256:" + hashlib.sha256(doc).hexdigest()
    assert entry_hash_of_text(1, "2025-06-01T12:00:00.000000Z", "decision", '{"allow":false}',
                              "sha256:" + "0" * 64) == expected
    assert compute_entry_hash(1, "2025-06-01T12:00:00.000000Z", "decision", {"allow": False},
                              "sha256:" + "0" * 64) == expected
