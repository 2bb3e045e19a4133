"""Ed25519 keys: generate, sign, verify, save and load, with key ids derived from the public key.

    key = PrivateKey.generate()
    key.save(home / "keys" / "alice.pem")                 # PKCS#8 PEM, created with mode 0600, never overwritten
    key = PrivateKey.load(home / "keys" / "alice.pem")    # refuses a file others can read
    pub = PublicKey.parse("MCowBQYDK2VwAyEA...")           # raw bytes, hex, base64 or PEM
    pub.key_id                                            # 'sha256:<64 hex>' of the 32 raw public key bytes
    pub.verify(signature, data)                           # SignatureError unless valid

A key id names a key; it proves nothing. Whoever verifies looks keys up in a
trust set (``writ.plans.trust``) and tries only the keys of the principal and
role it expects. ``short_key_id`` gives the 12-hex form used in messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, InputError, SignatureError
from writ.plans._edwards import weak_public_key_reason

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_PATTERN = r"^sha256:[0-9a-f]{64}$"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def key_id_of(raw_public_key: bytes) -> str:
    """``sha256:`` + hex SHA-256 of the raw 32-byte public key."""
    return "sha256:" + hashlib.sha256(raw_public_key).hexdigest()


def short_key_id(key_id: str | None) -> str:
    """The first 12 hex digits of a key id, for messages (``sha256:`` dropped)."""
    if not key_id:
        return "(none)"
    return key_id.removeprefix("sha256:")[:12]


class PublicKey:
    """An Ed25519 public key that is safe to trust: canonical, on the curve, not of small order."""

    __slots__ = ("_key", "_raw")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != PUBLIC_KEY_BYTES:
            got = len(raw) if isinstance(raw, (bytes, bytearray)) else type(raw).__name__
            raise InputError(f"an Ed25519 public key is 32 bytes, got {got}", code=reasons.KEY_INVALID)
        reason = weak_public_key_reason(bytes(raw))
        if reason is not None:
            raise InputError(f"refusing Ed25519 public key {bytes(raw).hex()}: {reason}", code=reasons.KEY_INVALID)
        self._raw = bytes(raw)
        self._key = Ed25519PublicKey.from_public_bytes(self._raw)

    @classmethod
    def from_base64(cls, text: str) -> PublicKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise InputError("public key is not valid base64", code=reasons.KEY_INVALID) from None
        return cls(raw)

    @classmethod
    def from_pem(cls, pem: bytes | str) -> PublicKey:
        data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise InputError("public key is not a valid PEM SubjectPublicKeyInfo", code=reasons.KEY_INVALID) from None
        if not isinstance(key, Ed25519PublicKey):
            raise InputError(f"public key is {type(key).__name__}, expected Ed25519", code=reasons.KEY_INVALID)
        return cls(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    @classmethod
    def parse(cls, value: str | bytes) -> PublicKey:
        """Raw 32 bytes, or text: PEM, 64 hex digits, or base64 of the 32 raw bytes."""
        if isinstance(value, (bytes, bytearray)):
            if len(value) == PUBLIC_KEY_BYTES:
                return cls(bytes(value))
            try:
                value = bytes(value).decode("ascii")
            except UnicodeDecodeError:
                raise InputError("public key is neither 32 raw bytes nor text", code=reasons.KEY_INVALID) from None
        text = value.strip()
        if text.startswith("-----BEGIN"):
            return cls.from_pem(text)
        if _HEX64.match(text):
            return cls(bytes.fromhex(text))
        return cls.from_base64(text)

    @property
    def raw(self) -> bytes:
        return self._raw

    @property
    def key_id(self) -> str:
        return key_id_of(self._raw)

    def to_base64(self) -> str:
        return base64.b64encode(self._raw).decode("ascii")

    def to_pem(self) -> str:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raise ``SignatureError`` unless ``signature`` is this key's Ed25519 signature of ``data``."""
        if len(signature) != SIGNATURE_BYTES:
            raise SignatureError(f"signature is {len(signature)} bytes, an Ed25519 signature is {SIGNATURE_BYTES}")
        try:
            self._key.verify(signature, data)  # OpenSSL: RFC 8032 checks, including S < L
        except InvalidSignature:
            raise SignatureError(f"signature does not verify under key {short_key_id(self.key_id)}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        raw = getattr(self, "_raw", None)
        return f"PublicKey({key_id_of(raw) if raw else 'invalid'})"


class PrivateKey:
    """An Ed25519 private key. Its repr shows only the key id; it never prints its secret."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._public = PublicKey(
            key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        """From the 32-byte RFC 8032 secret (the test vectors' ``SECRET KEY``)."""
        if len(seed) != 32:
            raise InputError(f"an Ed25519 seed is 32 bytes, got {len(seed)}", code=reasons.KEY_INVALID)
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, pem: bytes, password: bytes | None = None) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except TypeError as e:  # password given for an unencrypted key, or missing for an encrypted one
            raise ConfigError(f"private key: {e}", code=reasons.KEY_INVALID) from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(
                "private key is not a PKCS#8 PEM Ed25519 key (or the password is wrong)",
                code=reasons.KEY_INVALID,
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"private key is {type(key).__name__}, expected Ed25519", code=reasons.KEY_INVALID)
        return cls(key)

    @classmethod
    def load(cls, path: Path, password: bytes | None = None) -> PrivateKey:
        """Read a PEM key file; refuse one that the group or others can read or write."""
        try:
            with open(path, "rb") as f:  # check the mode of the file we read, not of a path that may change
                mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
                if mode & 0o077:
                    raise ConfigError(
                        f"private key {path} has mode {mode:04o}; only its owner may read it (chmod 600 {path})",
                        code=reasons.KEY_FILE_INSECURE,
                    )
                data = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read private key {path}: {e.strerror}", code=reasons.KEY_FILE_UNREADABLE) from None
        return cls.from_pem(data, password)

    def to_pem(self, password: bytes | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    def save(self, path: Path, password: bytes | None = None) -> None:
        """Write a new PEM file with mode 0600. Never overwrites, never follows a symlink."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise ConfigError(f"refusing to overwrite existing key file {path}", code=reasons.KEY_FILE_EXISTS) from None
        except OSError as e:
            raise ConfigError(f"cannot create key file {path}: {e.strerror}", code=reasons.KEY_FILE_UNWRITABLE) from None
        with os.fdopen(fd, "wb") as f:
            f.write(self.to_pem(password))

    @property
    def public_key(self) -> PublicKey:
        return self._public

    @property
    def key_id(self) -> str:
        return self._public.key_id

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"PrivateKey({self.key_id})"
