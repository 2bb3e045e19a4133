"""C2SP signed notes and tlog checkpoints: the Go reference note byte for byte, and every way a note is refused."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from writ.attestations.notes import (
    Checkpoint,
    CheckpointError,
    note_key_id,
    open_checkpoint,
    open_note,
    parse_note,
    sign_checkpoint,
    sign_note,
    split_notes,
)
from writ.plans.keys import PrivateKey

# golang.org/x/mod/sumdb/note's example: PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALV... (0x01 || seed)
GO_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_PUBLIC = base64.b64decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")[1:]
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"

KEY = PrivateKey.from_seed(bytes(range(32)))
ROOT = hashlib.sha256(b"root").digest()


def test_go_reference_note_is_signed_and_opened_byte_for_byte() -> None:
    key = PrivateKey.from_seed(GO_SEED)
    assert key.public_key.raw == GO_PUBLIC
    assert note_key_id("PeterNeumann", key.public_key).hex() == "c74f20a3"
    assert sign_note(GO_TEXT, key, "PeterNeumann") == GO_NOTE
    assert open_note(GO_NOTE, key.public_key, "PeterNeumann") == GO_TEXT


def test_checkpoint_note_is_origin_size_root_then_signature() -> None:
    checkpoint = Checkpoint("writ.example", 1200, ROOT)
    note = sign_checkpoint(checkpoint, KEY)
    body, _, signature = note.partition("\n\n")
    assert body.split("\n") == ["writ.example", "1200", base64.b64encode(ROOT).decode()]
    assert signature.startswith("\u2014 writ.example ") and signature.endswith("\n")
    blob = base64.b64decode(signature.split(" ")[2])
    assert blob[:4] == hashlib.sha256(b"writ.example\n\x01" + KEY.public_key.raw).digest()[:4]
    KEY.public_key.verify(blob[4:], (body + "\n").encode())
    assert open_checkpoint(note, KEY.public_key) == checkpoint
    assert open_checkpoint(note, KEY.public_key, origin="writ.example") == checkpoint


def test_checkpoint_signed_by_another_key_is_refused() -> None:
    note = sign_checkpoint(Checkpoint("writ.example", 3, ROOT), PrivateKey.generate())
    with pytest.raises(CheckpointError, match="checkpoint of size 3: not signed by the instance key"):
        open_checkpoint(note, KEY.public_key)


def test_a_foreign_signature_beside_ours_is_skipped() -> None:
    """C2SP: signatures by unknown keys are ignored (a witness may cosign), ours must verify."""
    text = Checkpoint("writ.example", 3, ROOT).body()
    other = sign_note(text, PrivateKey.generate(), "witness.example").partition("\n\n")[2]
    note = sign_note(text, KEY, "writ.example") + other
    assert open_checkpoint(note, KEY.public_key).size == 3
    assert len(parse_note(note).signatures) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda n: n.replace("\n3\n", "\n4\n", 1), "does not verify", id="size_changed"),
        pytest.param(lambda n: n.replace("writ.example\n", "writ.other\n", 1), "not signed by the instance key",
                     id="origin_changed"),
        pytest.param(lambda n: n.replace("\n\n", "\n", 1), "not a signed note", id="blank_line_removed"),
        pytest.param(lambda n: n.rstrip("\n"), "not a signed note", id="final_newline_removed"),
        pytest.param(lambda n: n.replace("\u2014 ", "- ", 1), "not a signature line", id="hyphen_for_em_dash"),
        pytest.param(lambda n: n.replace("\n3\n", "\n03\n", 1), "without leading zeros", id="size_leading_zero"),
        pytest.param(lambda n: n.replace("\n3\n", "\n3\r\n", 1), "control character", id="carriage_return"),
        pytest.param(lambda n: n.replace("=\n\n", "\n\n", 1), "base64 of 32 bytes", id="root_not_canonical_base64"),
    ],
)
def test_a_changed_checkpoint_note_is_refused(change, message: str) -> None:  # type: ignore[no-untyped-def]
    note = sign_checkpoint(Checkpoint("writ.example", 3, ROOT), KEY)
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(change(note), KEY.public_key)


@pytest.mark.parametrize("origin", ["", "has space", "a+b", "tab\there"])
def test_an_origin_that_cannot_name_a_key_is_refused(origin: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(origin, 1, ROOT)


@hypothesis_settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 2**63 - 1), root=st.binary(min_size=32, max_size=32), data=st.data())
def test_any_flipped_bit_of_a_signed_checkpoint_fails(size: int, root: bytes, data: st.DataObject) -> None:
    note = sign_checkpoint(Checkpoint("writ.example", size, root), KEY).encode()
    assert open_checkpoint(note.decode(), KEY.public_key) == Checkpoint("writ.example", size, root)
    bit = data.draw(st.integers(0, len(note) * 8 - 1))
    flipped = bytearray(note)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        text = bytes(flipped).decode()
    except UnicodeDecodeError:
        return  # not text: the file reader refuses it before any parsing
    with pytest.raises(CheckpointError):
        open_checkpoint(text, KEY.public_key)


def test_a_checkpoint_file_is_notes_each_followed_by_a_blank_line() -> None:
    a = sign_checkpoint(Checkpoint("writ.example", 1, ROOT), KEY)
    b = sign_checkpoint(Checkpoint("writ.example", 2, ROOT), KEY)
    assert split_notes(a + "\n" + b + "\n", "f") == [(1, a), (7, b)]
    assert split_notes("", "f") == []
    with pytest.raises(CheckpointError, match=r"f, line 7: a note without signatures or final newline \(cut short"):
        split_notes(a + "\n" + b[:40], "f")
    with pytest.raises(CheckpointError, match="f, line 6: expected a signature line"):
        split_notes(a + "garbage\n", "f")
