"""C2SP signed notes carrying tlog checkpoints: the text format Writ signs its audit tree's roots in. Pure.

    from writ.attestations.notes import Checkpoint, sign_checkpoint, open_checkpoint

    note = sign_checkpoint(Checkpoint("writ.3f2a9c0d41be7a55", 1200, root), instance_key)
    print(note)
    # writ.3f2a9c0d41be7a55
    # 1200
    # mNlZ...=                         (base64 of the 32-byte root)
    #
    # — writ.3f2a9c0d41be7a55 AbCd...  (base64 of key id (4 bytes) || Ed25519 signature)
    checkpoint = open_checkpoint(note, instance_key.public_key)    # or CheckpointError naming why

Formats (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint): the note's text
is UTF-8 lines, each ending in a newline, with no control characters but the newline; a blank
line; then one line per signature, ``— <key name> <base64(key id || signature)>``. An Ed25519
key's id is the first 4 bytes of SHA-256(key name || 0x0A || 0x01 || 32-byte public key); the
signature is over the text, its final newline included. A checkpoint's text is its origin, its
tree size in decimal and its root hash in base64, one per line, then any extension lines.
Writ names its key by the origin. Signatures by keys the verifier does not know are skipped,
as the spec requires; a note that no known key signed is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from writ.engine.core import reasons
from writ.engine.core.errors import VerificationError
from writ.plans.keys import PrivateKey, PublicKey

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "NoteSignature",
    "SignedNote",
    "note_key_id",
    "open_checkpoint",
    "open_note",
    "parse_note",
    "sign_checkpoint",
    "sign_note",
    "split_notes",
]

_DASH = "\u2014 "  # an em dash and a space start every signature line
_ALG_ED25519 = b"\x01"
MAX_NOTE_BYTES = 1_000_000
MAX_SIGNATURES = 100
_NAME = re.compile(r"[^\s+]+")
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


class CheckpointError(VerificationError):
    """A checkpoint or signed note is malformed, or not signed by the key expected."""

    code = reasons.CHECKPOINT_INVALID


def note_key_id(name: str, public_key: PublicKey) -> bytes:
    """The 4-byte id of an Ed25519 note key: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + _ALG_ED25519 + public_key.raw).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint: the log's ``origin``, its tree ``size`` and ``root`` (32 bytes). Valid once constructed."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.origin) or _CONTROL.search(self.origin):
            raise CheckpointError(f"checkpoint origin {self.origin[:80]!r} is empty or holds a space or '+'")
        if self.size < 0 or len(self.root) != 32:
            raise CheckpointError(f"checkpoint of size {self.size} with a {len(self.root)}-byte root")
        if any(not line or "\n" in line or _CONTROL.search(line) for line in self.extensions):
            raise CheckpointError("checkpoint extension lines must be non-empty single lines")

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.root).decode()

    def body(self) -> str:
        """The note text: origin, size, base64 root and extension lines, each ending in a newline."""
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), self.root_b64, *self.extensions))

    @classmethod
    def from_body(cls, text: str) -> Checkpoint:
        """Parse a checkpoint's note text; ``CheckpointError`` naming the bad line."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError("a checkpoint has at least three lines (origin, size, root), each ending in a newline")
        origin, size, root, *extensions = lines[:-1]
        if not _SIZE.fullmatch(size):
            raise CheckpointError(f"checkpoint size {size[:40]!r} is not a decimal number without leading zeros")
        try:
            raw = base64.b64decode(root, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32 or base64.b64encode(raw).decode() != root:
            raise CheckpointError(f"checkpoint root {root[:60]!r} is not the base64 of 32 bytes")
        return cls(origin, int(size), raw, tuple(extensions))


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key's name, its 4-byte id, and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{_DASH}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


@dataclass(frozen=True)
class SignedNote:
    """A parsed signed note: its ``text`` (what was signed) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def parse_note(note: str) -> SignedNote:
    """Split a signed note into its text and signatures; ``CheckpointError`` if it is not one."""
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise CheckpointError(f"signed note is larger than {MAX_NOTE_BYTES} bytes")
    if _CONTROL.search(note):
        raise CheckpointError("signed note holds a control character other than newline")
    text, sep, sigs = note.rpartition("\n\n")
    if not sep or not text or not sigs.endswith("\n"):
        raise CheckpointError("not a signed note: expected its text, a blank line, and signature lines")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"signed note has {len(lines)} signatures, at most {MAX_SIGNATURES} are read")
    signatures = []
    for line in lines:
        name, _, b64 = line.removeprefix(_DASH).rpartition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not line.startswith(_DASH) or not _NAME.fullmatch(name) or len(raw) < 5:
            raise CheckpointError(f"signed note: {line[:80]!r} is not a signature line ('— name base64')")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return SignedNote(text + "\n", tuple(signatures))


def sign_note(text: str, key: PrivateKey, name: str) -> str:
    """The signed note of ``text`` (lines ending in newlines) by the Ed25519 ``key`` named ``name``."""
    if not _NAME.fullmatch(name):
        raise CheckpointError(f"note key name {name[:80]!r} is empty or holds a space or '+'")
    if not text.endswith("\n") or "\n\n" in text or _CONTROL.search(text):
        raise CheckpointError("a note's text is non-empty lines, each ending in a newline, without control characters")
    signature = NoteSignature(name, note_key_id(name, key.public_key), key.sign(text.encode()))
    return SignedNote(text, (signature,)).encode()


def open_note(note: str, public_key: PublicKey, name: str) -> str:
    """The text of ``note`` once every signature of ``public_key`` named ``name`` on it verifies (at least one).

    Signatures by other keys are skipped; ``CheckpointError`` says which keys signed when ours did not.
    """
    parsed = parse_note(note)
    want = note_key_id(name, public_key)
    ours = [s for s in parsed.signatures if s.name == name and s.key_id == want]
    if not ours:
        found = ", ".join(f"{s.name} (key id {s.key_id.hex()})" for s in parsed.signatures)
        raise CheckpointError(f"not signed by the instance key (key id {want.hex()} as {name}): signed by {found}")
    try:
        for s in ours:
            public_key.verify(s.signature, parsed.text.encode())
    except VerificationError:
        raise CheckpointError(f"the signature of key {want.hex()} ({name}) does not verify") from None
    return parsed.text


def sign_checkpoint(checkpoint: Checkpoint, key: PrivateKey, name: str | None = None) -> str:
    """The signed note of ``checkpoint`` by ``key``, named ``name`` (the origin by default)."""
    return sign_note(checkpoint.body(), key, name or checkpoint.origin)


def open_checkpoint(note: str, public_key: PublicKey, *, origin: str | None = None) -> Checkpoint:
    """The checkpoint in ``note`` once a signature by ``public_key``, named as the note's origin, verifies.

    ``origin``: refuse a checkpoint of another log. ``CheckpointError`` says what was found instead.
    """
    checkpoint = Checkpoint.from_body(parse_note(note).text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint of log {checkpoint.origin!r}, expected {origin!r}")
    try:
        open_note(note, public_key, checkpoint.origin)
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint of size {checkpoint.size}: {e.message}") from None
    return checkpoint


def split_notes(text: str, source: str) -> list[tuple[int, str]]:
    """The signed notes of a checkpoint file (one after another, each followed by a blank line), with line numbers.

    ``CheckpointError`` names ``source`` and the line where a note is cut short.
    """
    notes: list[tuple[int, str]] = []
    lines = text.split("\n")  # a file ending in a newline ends in ""
    i = 0
    while i < len(lines):
        if lines[i] == "":
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i] != "":  # the note's text, then the blank line
            i += 1
        sig_start = i = i + 1
        while i < len(lines) and lines[i].startswith(_DASH):
            i += 1
        if i == sig_start or i >= len(lines):
            raise CheckpointError(f"{source}, line {start + 1}: a note without signatures or final newline (cut short?)")
        if lines[i] != "":
            raise CheckpointError(f"{source}, line {i + 1}: expected a signature line or a blank line")
        notes.append((start + 1, "\n".join(lines[start:i]) + "\n"))
    return notes
