"""DSSE v1 (Dead Simple Signing Envelope), exactly as in secure-systems-lab/dsse ``protocol.md``.

    env = Envelope.create("application/vnd.writ.plan+json", payload_bytes)
    env = sign(env, private_key)                        # a new envelope with one more signature
    raw = env.to_json()                                 # {"payload", "payloadType", "signatures": [{"keyid", "sig"}]}
    env = Envelope.from_json(raw)                       # EnvelopeError if malformed
    verify(env, {kid: pub, ...}, threshold=1, payload_type="application/vnd.writ.plan+json")

Signatures cover ``pae(payload_type, payload)``. A signature's ``keyid`` is an
unauthenticated hint (the spec: "MUST NOT be used for security decisions"): it
only decides which of the given keys is tried first, and every given key is
tried. Whoever calls ``verify`` decides which keys are acceptable; ``verify``
counts distinct keys, so one key signing twice is one signature.

Base64: standard or URL-safe alphabet (the spec says verifiers must accept
either), with padding, and only in its canonical form (zero unused bits), so
an envelope's text cannot be varied without changing its bytes. Writ writes
standard base64.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from writ.engine.core import reasons
from writ.engine.core.errors import EnvelopeError, SignatureError, VerificationError, WritError
from writ.plans.canonical import canonical_bytes, parse_strict
from writ.plans.keys import PrivateKey, PublicKey, short_key_id

MAX_KEYID_CHARS = 256
_STD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: ``DSSEv1 SP LEN(type) SP type SP LEN(body) SP body``."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def b64decode_strict(text: str, what: str) -> bytes:
    """Decode padded, canonical base64 in the standard or the URL-safe alphabet."""
    # Fast path: canonical standard base64 (what Writ writes) is exactly the text that re-encodes to
    # itself; the lenient C decoder skips nothing in such a text, so any other text fails the compare.
    try:
        raw = text.encode("ascii")
        data = binascii.a2b_base64(raw)
        if binascii.b2a_base64(data, newline=False) == raw:
            return data
    except (binascii.Error, ValueError, TypeError, AttributeError):
        pass  # the checks below say what is wrong
    return _b64decode_checked(text, what)


def _b64decode_checked(text: str, what: str) -> bytes:
    if _STD.fullmatch(text):
        altchars = None
    elif _URL.fullmatch(text):
        altchars = b"-_"
    else:
        raise EnvelopeError(f"{what} is not base64 (standard or URL-safe alphabet, no whitespace)")
    if len(text) % 4:
        raise EnvelopeError(f"{what} is not padded base64 ({len(text)} characters, not a multiple of 4)")
    try:
        data = base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{what} is not valid base64") from None
    again = base64.b64encode(data) if altchars is None else base64.urlsafe_b64encode(data)
    if again.decode("ascii") != text:
        raise EnvelopeError(f"{what} is not canonical base64 (non-zero unused bits)")
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Signature(BaseModel):
    """One signature: the raw signature bytes and the signer's key id hint."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    keyid: str | None = Field(None, max_length=MAX_KEYID_CHARS)
    sig: bytes


class Envelope(BaseModel):
    """A DSSE envelope holding the exact payload bytes that were signed."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...] = ()

    @field_validator("payload_type")
    @classmethod
    def _utf8_type(cls, v: str) -> str:
        v.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
        return v

    @classmethod
    def create(cls, payload_type: str, payload: bytes) -> Envelope:
        return cls._build(payload=payload, payload_type=payload_type, signatures=())

    @classmethod
    def _build(cls, **fields: Any) -> Envelope:
        try:
            return cls(**fields)
        except ValidationError as e:
            raise EnvelopeError(f"invalid envelope: {_first_error(e)}") from None

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    @classmethod
    def from_dict(cls, data: Any, *, max_signatures: int | None = None) -> Envelope:
        """Parse the JSON form. Exactly the fields ``payload``, ``payloadType`` and ``signatures``."""
        if not isinstance(data, dict):
            raise EnvelopeError(f"an envelope is a JSON object, got {type(data).__name__}")
        missing = [k for k in ("payload", "payloadType", "signatures") if k not in data]
        if missing:
            raise EnvelopeError(f"envelope has no {', '.join(repr(m) for m in missing)} field (unsigned?)")
        unknown = sorted(set(data) - {"payload", "payloadType", "signatures"})
        if unknown:
            raise EnvelopeError(f"envelope has unknown fields: {', '.join(unknown)}")
        payload, payload_type, sigs = data["payload"], data["payloadType"], data["signatures"]
        if not isinstance(payload, str) or not isinstance(payload_type, str) or not isinstance(sigs, list):
            raise EnvelopeError("envelope fields: payload and payloadType are strings, signatures a list")
        if max_signatures is not None and len(sigs) > max_signatures:
            raise EnvelopeError(f"envelope has {len(sigs)} signatures, the limit is {max_signatures}")
        signatures = []
        for i, s in enumerate(sigs):
            if not isinstance(s, dict) or not isinstance(s.get("sig"), str) or set(s) - {"keyid", "sig"}:
                raise EnvelopeError(f"signature {i} must be an object with a string 'sig' and optional 'keyid'")
            keyid = s.get("keyid")
            if keyid is not None and not isinstance(keyid, str):
                raise EnvelopeError(f"signature {i}: keyid must be a string")
            sig = b64decode_strict(s["sig"], f"signature {i}")
            try:
                signatures.append(Signature(keyid=keyid, sig=sig))
            except ValidationError as e:
                raise EnvelopeError(f"signature {i}: {_first_error(e)}") from None
        return cls._build(
            payload=b64decode_strict(payload, "payload"),
            payload_type=payload_type,
            signatures=tuple(signatures),
        )

    @classmethod
    def from_json(cls, raw: bytes, *, max_bytes: int | None = None, max_signatures: int | None = None) -> Envelope:
        try:
            data = parse_strict(raw, max_bytes=max_bytes, max_depth=4)
        except WritError as e:
            raise EnvelopeError(f"envelope is not strict JSON: {e}", code=e.code) from None
        return cls.from_dict(data, max_signatures=max_signatures)

    def to_dict(self) -> dict[str, Any]:
        sigs: list[dict[str, str]] = []
        for s in self.signatures:
            sigs.append({"sig": _b64(s.sig)} if s.keyid is None else {"keyid": s.keyid, "sig": _b64(s.sig)})
        return {"payload": _b64(self.payload), "payloadType": self.payload_type, "signatures": sigs}

    def to_json(self) -> bytes:
        return canonical_bytes(self.to_dict())


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else str(err["msg"])


def sign(envelope: Envelope, key: PrivateKey) -> Envelope:
    """A copy of ``envelope`` with ``key``'s signature over its PAE added (key id: ``key.key_id``)."""
    if any(s.keyid == key.key_id for s in envelope.signatures):
        raise EnvelopeError(f"envelope is already signed by key {short_key_id(key.key_id)}")
    sig = Signature(keyid=key.key_id, sig=key.sign(envelope.pae()))
    return envelope.model_copy(update={"signatures": (*envelope.signatures, sig)})


def accepted_keys(envelope: Envelope, keys: Mapping[str, PublicKey]) -> dict[str, int]:
    """Which of ``keys`` signed: key id -> index of its first valid signature. Never raises on a bad signature.

    Per signature, the key its ``keyid`` names is tried first, then every other
    given key not yet accepted: the hint saves work, it never decides.
    """
    data = envelope.pae()
    accepted: dict[str, int] = {}
    for i, s in enumerate(envelope.signatures):
        hinted = [s.keyid] if s.keyid is not None and s.keyid in keys else []
        order = hinted + [k for k in keys if k != s.keyid]
        for kid in order:
            if kid in accepted:
                continue
            try:
                keys[kid].verify(s.sig, data)
            except SignatureError:
                continue
            accepted[kid] = i
            break
    return accepted


def verify(envelope: Envelope, keys: Mapping[str, PublicKey], threshold: int, *, payload_type: str) -> tuple[str, ...]:
    """The ids of the distinct ``keys`` whose signatures verify; raise unless there are ``threshold`` of them.

    Steps as in the spec: signatures present, keys given, threshold met, then the payload type.
    """
    if threshold < 1:
        raise VerificationError(f"threshold must be at least 1, got {threshold}", code=reasons.THRESHOLD_INVALID)
    if not envelope.signatures:
        raise SignatureError("envelope has no signatures")
    if not keys:
        raise SignatureError("no trusted keys to verify the envelope with")
    accepted = accepted_keys(envelope, keys)
    if len(accepted) < threshold:
        hints = ", ".join(short_key_id(s.keyid) for s in envelope.signatures)
        raise SignatureError(
            f"envelope has {len(accepted)}/{threshold} valid signatures by trusted keys (signature key ids: {hints})"
        )
    if envelope.payload_type != payload_type:
        raise VerificationError(
            f"envelope payload type is {envelope.payload_type!r}, expected {payload_type!r}",
            code=reasons.PAYLOAD_TYPE_MISMATCH,
        )
    return tuple(accepted)
