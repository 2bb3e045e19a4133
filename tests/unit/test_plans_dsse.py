"""DSSE v1: PAE against the spec, the envelope's strict wire form, signing and threshold verification."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from writ.engine.core.errors import EnvelopeError, SignatureError, VerificationError
from writ.plans import dsse
from writ.plans.dsse import Envelope, accepted_keys, pae, sign, verify
from writ.plans.keys import PrivateKey, PublicKey

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "dsse_ed25519.json").read_text())
RFC8032 = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "rfc8032_ed25519.json").read_text())["vectors"]
SEEDS = {"A": RFC8032[0]["secret"], "B": RFC8032[1]["secret"]}
TYPE = "application/vnd.writ.plan+json"

SIGNER = PrivateKey.generate()
OTHER = PrivateKey.generate()
TRUSTED = {SIGNER.key_id: SIGNER.public_key}
SIGNED = sign(Envelope.create(TYPE, b'{"title":"delete the staging database"}'), SIGNER)


def _vector_keys(names: list[str]) -> dict[str, PublicKey]:
    keys = VECTORS["keys"]
    return {keys[n]["key_id"]: PublicKey(bytes.fromhex(keys[n]["public"])) for n in names}


# -- PAE ---------------------------------------------------------------------------------------


def test_pae_matches_the_spec_example():
    # secure-systems-lab/dsse protocol.md, "Test Vectors"
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_lengths_are_utf8_bytes_and_empty_body_keeps_its_space():
    assert pae("ä", b"") == b"DSSEv1 2 \xc3\xa4 0 "
    assert pae("", b"x") == b"DSSEv1 0  1 x"


@given(st.text(), st.binary(), st.text(), st.binary())
def test_pae_is_injective(t1: str, b1: bytes, t2: str, b2: bytes):
    try:
        same = pae(t1, b1) == pae(t2, b2)
    except UnicodeEncodeError:
        return  # lone surrogates: an Envelope refuses them before PAE runs
    assert same == ((t1, b1) == (t2, b2))


# -- vectors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["id"])
def test_dsse_vector(vector: dict[str, Any]):
    env = Envelope.from_dict(vector["envelope"])
    assert env.pae().hex() == vector["pae"]
    keys = _vector_keys(vector["trustedKeys"])
    if vector["expect"] == "accept":
        accepted = verify(env, keys, vector["threshold"], payload_type=vector["expectedPayloadType"])
        assert set(accepted) == set(keys)
        # Ed25519 is deterministic: signing again gives the same envelope, byte for byte
        again = Envelope.create(env.payload_type, env.payload)
        for name in vector["signedBy"]:
            again = sign(again, PrivateKey.from_seed(bytes.fromhex(SEEDS[name])))
        assert again.to_dict() == vector["envelope"]
    else:
        with pytest.raises(SignatureError):
            verify(env, keys, vector["threshold"], payload_type=vector["expectedPayloadType"])


def test_payload_type_is_checked_after_the_signature():
    with pytest.raises(VerificationError, match="payload type is .*, expected 'application/vnd.in-toto") as e:
        verify(SIGNED, TRUSTED, 1, payload_type="application/vnd.in-toto+json")
    assert e.value.code == "payload_type_mismatch"


# -- the wire form -----------------------------------------------------------------------------


def test_round_trip_keeps_the_exact_payload_bytes():
    raw = SIGNED.to_json()
    again = Envelope.from_json(raw)
    assert again == SIGNED and again.payload == SIGNED.payload and again.to_json() == raw


def test_url_safe_base64_is_accepted():
    d = sign(Envelope.create(TYPE, b"\xfb\xff\xbf>?"), SIGNER).to_dict()
    d["payload"] = base64.urlsafe_b64encode(b"\xfb\xff\xbf>?").decode()
    d["signatures"][0]["sig"] = base64.urlsafe_b64encode(base64.b64decode(d["signatures"][0]["sig"])).decode()
    assert "-" in d["payload"] or "_" in d["payload"]
    verify(Envelope.from_dict(d), TRUSTED, 1, payload_type=TYPE)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("payload", "aGVsbG8=\n", "not base64"),
        ("payload", "aGVsbG8", "not padded base64"),
        ("payload", "aGVsbG9=", "not canonical base64"),  # same bytes, non-zero unused bits
        ("payload", "a+b_", "not base64"),  # mixed alphabets
        ("payload", 42, "payload and payloadType are strings"),
        ("payloadType", None, "payload and payloadType are strings"),
        ("payloadType", "\ud800", "invalid envelope"),
        ("signatures", {}, "signatures a list"),
        ("sig", "!!!!", "signature 0 is not base64"),
        ("sig", "QUJD", None),  # well-formed base64 of a 3-byte signature: parses, fails at verify
        ("keyid", 7, "keyid must be a string"),
        ("keyid", "k" * 300, "signature 0: keyid"),
    ],
)
def test_malformed_envelopes_are_envelope_errors(field: str, value: Any, match: str | None):
    d = SIGNED.to_dict()
    if field in ("sig", "keyid"):
        d["signatures"][0][field] = value
    else:
        d[field] = value
    if match is None:
        with pytest.raises(SignatureError, match="0/1 valid signatures"):
            verify(Envelope.from_dict(d), TRUSTED, 1, payload_type=TYPE)
        return
    with pytest.raises(EnvelopeError, match=match):
        Envelope.from_dict(d)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b'{"payload":"","payloadType":"t"}', "no 'signatures' field"),
        (b'{"payload":"","payloadType":"t","signatures":[],"extra":1}', "unknown fields: extra"),
        (
            b'{"payload":"","payload":"eA==","payloadType":"t","signatures":[]}',
            "duplicate JSON object key",
        ),
        (b'[{"payload":""}]', "an envelope is a JSON object"),
        (
            b'{"payload":"","payloadType":"t","signatures":[{"sig":"","by":"x"}]}',
            "signature 0 must be",
        ),
        (b"\xff", "not valid UTF-8"),
    ],
)
def test_malformed_envelope_json(raw: bytes, match: str):
    with pytest.raises(EnvelopeError, match=match):
        Envelope.from_json(raw)


def test_envelope_limits():
    d = SIGNED.to_dict()
    d["signatures"] = d["signatures"] * 17
    with pytest.raises(EnvelopeError, match="17 signatures, the limit is 16"):
        Envelope.from_dict(d, max_signatures=16)
    with pytest.raises(EnvelopeError, match="the limit is 10"):
        Envelope.from_json(SIGNED.to_json(), max_bytes=10)


def test_keyid_is_optional_on_the_wire():
    d = SIGNED.to_dict()
    del d["signatures"][0]["keyid"]
    env = Envelope.from_dict(d)
    assert env.signatures[0].keyid is None and env.to_dict() == d
    assert verify(env, TRUSTED, 1, payload_type=TYPE) == (SIGNER.key_id,)


def test_an_envelope_is_immutable_and_signing_returns_a_copy():
    unsigned = Envelope.create(TYPE, b"x")
    signed = sign(unsigned, SIGNER)
    assert unsigned.signatures == () and len(signed.signatures) == 1
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        signed.payload = b"y"  # type: ignore[misc]
    with pytest.raises(EnvelopeError, match="already signed by key"):
        sign(signed, SIGNER)


# -- verification ------------------------------------------------------------------------------


def test_unsigned_envelope_never_verifies():
    with pytest.raises(SignatureError, match="envelope has no signatures"):
        verify(Envelope.create(TYPE, b"x"), TRUSTED, 1, payload_type=TYPE)


def test_empty_signature_envelope_never_verifies():
    env = Envelope.from_dict({"payload": "eA==", "payloadType": TYPE, "signatures": []})
    with pytest.raises(SignatureError, match="envelope has no signatures"):
        verify(env, TRUSTED, 1, payload_type=TYPE)


def test_no_trusted_keys_is_an_error_not_a_pass():
    with pytest.raises(SignatureError, match="no trusted keys"):
        verify(SIGNED, {}, 1, payload_type=TYPE)


@pytest.mark.parametrize("threshold", [0, -1])
def test_threshold_below_one_is_an_error_not_a_pass(threshold: int):
    with pytest.raises(VerificationError, match="threshold must be at least 1") as e:
        verify(SIGNED, TRUSTED, threshold, payload_type=TYPE)
    assert e.value.code == "threshold_invalid"


def test_one_key_signing_twice_counts_once():
    d = SIGNED.to_dict()
    d["signatures"] = d["signatures"] * 2
    keys = {**TRUSTED, OTHER.key_id: OTHER.public_key}
    with pytest.raises(SignatureError, match="1/2 valid signatures"):
        verify(Envelope.from_dict(d), keys, 2, payload_type=TYPE)
    assert verify(sign(SIGNED, OTHER), keys, 2, payload_type=TYPE) == (SIGNER.key_id, OTHER.key_id)


def test_signature_by_an_untrusted_key_is_not_counted():
    with pytest.raises(SignatureError, match="0/1"):
        verify(sign(Envelope.create(TYPE, b"x"), OTHER), TRUSTED, 1, payload_type=TYPE)


def test_a_bad_signature_does_not_spoil_a_good_one():
    garbage = dsse.Signature(keyid=SIGNER.key_id, sig=b"\x00" * 64)
    env = SIGNED.model_copy(update={"signatures": (garbage, *SIGNED.signatures)})
    assert verify(env, TRUSTED, 1, payload_type=TYPE) == (SIGNER.key_id,)


# -- any change to signed bytes fails (hypothesis) ---------------------------------------------


@given(st.data())
def test_flipping_any_payload_byte_fails(data: st.DataObject):
    i = data.draw(st.integers(0, len(SIGNED.payload) - 1))
    x = data.draw(st.integers(1, 255))
    payload = bytearray(SIGNED.payload)
    payload[i] ^= x
    with pytest.raises(SignatureError):
        verify(SIGNED.model_copy(update={"payload": bytes(payload)}), TRUSTED, 1, payload_type=TYPE)


@given(st.data())
def test_changing_the_payload_type_fails(data: st.DataObject):
    new_type = data.draw(st.text(min_size=0, max_size=60).filter(lambda t: t != TYPE))
    try:
        new_type.encode("utf-8")
    except UnicodeEncodeError:
        return
    tampered = SIGNED.model_copy(update={"payload_type": new_type})
    with pytest.raises(SignatureError):  # even when the verifier expects the new type
        verify(tampered, TRUSTED, 1, payload_type=new_type)


@given(st.data())
def test_flipping_any_signature_byte_fails(data: st.DataObject):
    i = data.draw(st.integers(0, 63))
    x = data.draw(st.integers(1, 255))
    sig = bytearray(SIGNED.signatures[0].sig)
    sig[i] ^= x
    bad = SIGNED.signatures[0].model_copy(update={"sig": bytes(sig)})
    with pytest.raises(SignatureError):
        verify(SIGNED.model_copy(update={"signatures": (bad,)}), TRUSTED, 1, payload_type=TYPE)


@given(st.one_of(st.none(), st.text(max_size=80)))
def test_a_changed_key_id_is_only_a_hint(keyid: str | None):
    """Decision: the key id is not signed, so changing it changes nothing about who signed.

    Verification still succeeds through the trusted key that really signed, reports that key's id (never the
    claimed one), and a key id naming another trusted key never makes that key count.
    """
    hinted = SIGNED.signatures[0].model_copy(update={"keyid": keyid})
    env = SIGNED.model_copy(update={"signatures": (hinted,)})
    assert verify(env, TRUSTED, 1, payload_type=TYPE) == (SIGNER.key_id,)
    with pytest.raises(SignatureError):
        verify(env, {OTHER.key_id: OTHER.public_key}, 1, payload_type=TYPE)


def test_a_key_id_naming_a_trusted_key_does_not_make_it_sign():
    forged = sign(Envelope.create(TYPE, b"x"), OTHER)
    claims_signer = forged.signatures[0].model_copy(update={"keyid": SIGNER.key_id})
    env = forged.model_copy(update={"signatures": (claims_signer,)})
    assert accepted_keys(env, TRUSTED) == {}
    with pytest.raises(SignatureError, match="0/1 valid signatures"):
        verify(env, TRUSTED, 1, payload_type=TYPE)
