"""Ed25519 keys: RFC 8032 vectors, malformed and forged signatures, weak public keys, key files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from writ.engine.core.errors import ConfigError, InputError, SignatureError
from writ.plans.keys import PrivateKey, PublicKey, key_id_of, short_key_id
from writ.plans.trust import TrustedKey, TrustSet

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "rfc8032_ed25519.json").read_text())["vectors"]
L = 2**252 + 27742317777372353535851937790883648493  # the order of the Ed25519 base point
P = 2**255 - 19


def _vector(name: str) -> dict[str, Any]:
    return next(v for v in VECTORS if v["name"] == name)


def _key_msg_sig(name: str) -> tuple[PublicKey, bytes, bytes]:
    v = _vector(name)
    return (
        PublicKey(bytes.fromhex(v["public"])),
        bytes.fromhex(v["message"]),
        bytes.fromhex(v["signature"]),
    )


# -- RFC 8032 section 7.1 ----------------------------------------------------------------------


def test_the_vector_file_holds_rfc8032_section_7_1():
    assert [v["name"] for v in VECTORS] == [
        "TEST 1",
        "TEST 2",
        "TEST 3",
        "TEST 1024",
        "TEST SHA(abc)",
    ]
    assert len(bytes.fromhex(_vector("TEST 1024")["message"])) == 1023
    assert bytes.fromhex(_vector("TEST SHA(abc)")["message"]) == hashlib.sha512(b"abc").digest()


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_rfc8032_vector_signs_and_verifies(vector: dict[str, Any]):
    key = PrivateKey.from_seed(bytes.fromhex(vector["secret"]))
    message, signature = bytes.fromhex(vector["message"]), bytes.fromhex(vector["signature"])
    assert key.public_key.raw.hex() == vector["public"]
    assert key.sign(message) == signature
    key.public_key.verify(signature, message)
    PublicKey.parse(vector["public"]).verify(signature, message)


# -- malformed and forged signatures: always the typed error ----------------------------------


@pytest.mark.parametrize("name", ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"])
def test_truncated_signature(name: str):
    pub, msg, sig = _key_msg_sig(name)
    with pytest.raises(SignatureError, match="signature is 63 bytes, an Ed25519 signature is 64"):
        pub.verify(sig[:63], msg)


@pytest.mark.parametrize("length", [0, 1, 32, 65, 128])
def test_wrong_length_signature(length: int):
    pub, msg, sig = _key_msg_sig("TEST 2")
    with pytest.raises(SignatureError, match=f"signature is {length} bytes"):
        pub.verify((sig * 2)[:length], msg)


def test_s_at_or_above_group_order():
    """S + L passes the verification equation unless S < L is checked (signature malleability)."""
    pub, msg, sig = _key_msg_sig("TEST 2")
    s = int.from_bytes(sig[32:], "little")
    for bad_s in (s + L, L, 2**256 - 1):
        with pytest.raises(SignatureError, match="does not verify"):
            pub.verify(sig[:32] + bad_s.to_bytes(32, "little"), msg)


def test_another_messages_signature():
    pub, msg, sig = _key_msg_sig("TEST 3")
    _, _, other_sig = _key_msg_sig("TEST 2")
    with pytest.raises(SignatureError, match="does not verify"):
        pub.verify(other_sig, msg)
    with pytest.raises(SignatureError):
        pub.verify(sig, msg + b"\x00")
    two_pub, _, _ = _key_msg_sig("TEST 2")
    with pytest.raises(SignatureError):
        two_pub.verify(sig, msg)  # TEST 3's signature under TEST 2's key


@pytest.mark.parametrize("index", [0, 31, 32, 63])
def test_flipped_signature_bit(index: int):
    pub, msg, sig = _key_msg_sig("TEST 1024")
    flipped = bytearray(sig)
    flipped[index] ^= 0x01
    with pytest.raises(SignatureError):
        pub.verify(bytes(flipped), msg)


# -- public keys that must never be trusted ----------------------------------------------------

SMALL_ORDER_POINTS = {
    "identity": (1).to_bytes(32, "little"),
    "order_2": (P - 1).to_bytes(32, "little"),
    "order_4": bytes(32),
    "order_8_a": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order_8_b": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
}


def test_identity_public_key_universal_forgery_is_why_small_order_keys_are_refused():
    identity = SMALL_ORDER_POINTS["identity"]
    forged = identity + bytes(32)  # R = identity, S = 0
    # OpenSSL (through cryptography) accepts this for ANY message under the identity key ...
    Ed25519PublicKey.from_public_bytes(identity).verify(forged, b"approve everything")
    # ... so Writ refuses such a key before it can enter a trust set
    with pytest.raises(InputError, match="small-order point"):
        PublicKey(identity)


@pytest.mark.parametrize("name", sorted(SMALL_ORDER_POINTS))
def test_small_order_public_key_refused(name: str):
    with pytest.raises(InputError, match="small-order point"):
        PublicKey(SMALL_ORDER_POINTS[name])


@pytest.mark.parametrize(
    "raw",
    [
        P.to_bytes(32, "little"),
        (P + 1).to_bytes(32, "little"),
        (1 | 1 << 255).to_bytes(32, "little"),
        (2).to_bytes(32, "little"),
    ],
    ids=["y_equals_p", "y_above_p", "negative_zero_x", "not_on_curve"],
)
def test_non_canonical_or_off_curve_public_key_refused(raw: bytes):
    with pytest.raises(InputError, match="not a canonical encoding"):
        PublicKey(raw)


def test_generated_keys_are_never_weak():
    for _ in range(50):
        PublicKey(PrivateKey.generate().public_key.raw)


# -- key ids and parsing -----------------------------------------------------------------------


def test_key_id_is_sha256_of_raw_public_key():
    pub, _, _ = _key_msg_sig("TEST 1")
    assert pub.key_id == "sha256:" + hashlib.sha256(pub.raw).hexdigest() == key_id_of(pub.raw)
    assert short_key_id(pub.key_id) == pub.key_id[7:19]
    assert short_key_id(None) == "(none)"


def test_public_key_parses_raw_hex_base64_and_pem():
    key = PrivateKey.generate().public_key
    forms: list[str | bytes] = [
        key.raw,
        key.raw.hex(),
        key.to_base64(),
        key.to_pem(),
        key.to_pem().encode(),
    ]
    assert all(PublicKey.parse(form) == key for form in forms)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"\x01" * 31).decode(), "32 bytes, got 31"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a valid PEM"),
        (b"\xff" * 40, "neither 32 raw bytes nor text"),
    ],
)
def test_bad_public_keys_are_input_errors(value: str | bytes, match: str):
    with pytest.raises(InputError, match=match):
        PublicKey.parse(value)


def test_non_ed25519_pem_refused():
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(InputError, match="expected Ed25519"):
        PublicKey.from_pem(pem)


# -- private key files -------------------------------------------------------------------------


def test_private_key_file_is_created_0600_and_loads_back(tmp_path: Path):
    old = os.umask(0)  # even with a permissive umask
    try:
        key = PrivateKey.generate()
        key.save(tmp_path / "k.pem")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert (tmp_path / "k.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert PrivateKey.load(tmp_path / "k.pem").key_id == key.key_id


def test_private_key_file_never_overwritten(tmp_path: Path):
    PrivateKey.generate().save(tmp_path / "k.pem")
    before = (tmp_path / "k.pem").read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        PrivateKey.generate().save(tmp_path / "k.pem")
    assert (tmp_path / "k.pem").read_bytes() == before


def test_private_key_save_does_not_follow_a_planted_symlink(tmp_path: Path):
    (tmp_path / "k.pem").symlink_to(tmp_path / "elsewhere.pem")
    with pytest.raises(ConfigError):
        PrivateKey.generate().save(tmp_path / "k.pem")
    assert not (tmp_path / "elsewhere.pem").exists()


def test_group_readable_private_key_refused(tmp_path: Path):
    PrivateKey.generate().save(tmp_path / "k.pem")
    (tmp_path / "k.pem").chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644; only its owner may read it") as e:
        PrivateKey.load(tmp_path / "k.pem")
    assert e.value.code == "key_file_insecure"


def test_encrypted_private_key(tmp_path: Path):
    key = PrivateKey.generate()
    key.save(tmp_path / "k.pem", password=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / "k.pem").read_bytes()
    assert PrivateKey.load(tmp_path / "k.pem", password=b"correct horse").key_id == key.key_id
    with pytest.raises(ConfigError):
        PrivateKey.load(tmp_path / "k.pem", password=b"wrong")
    with pytest.raises(ConfigError):
        PrivateKey.load(tmp_path / "k.pem")


def test_missing_or_garbage_private_key_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read private key"):
        PrivateKey.load(tmp_path / "absent.pem")
    fd = os.open(tmp_path / "junk.pem", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"junk")
    os.close(fd)
    with pytest.raises(ConfigError, match="not a PKCS#8 PEM Ed25519 key"):
        PrivateKey.load(tmp_path / "junk.pem")


def test_private_key_repr_shows_only_the_key_id():
    key = PrivateKey.generate()
    assert repr(key) == f"PrivateKey({key.key_id})"
    assert "PRIVATE" not in repr(key) and "PRIVATE" not in str(key)


# -- trusted keys ------------------------------------------------------------------------------

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_validity_window_and_revocation():
    pub = PrivateKey.generate().public_key
    key = TrustedKey(
        principal="bob",
        role="approver",
        public_key=pub,
        not_before=T0,
        not_after=T0 + timedelta(days=30),
        revoked_at=T0 + timedelta(days=10),
    )
    assert key.is_valid_at(T0 + timedelta(days=1))
    assert key.invalid_reason(T0 - timedelta(seconds=1)) == "not valid before 2026-11-01T00:00:00Z"
    assert key.invalid_reason(T0 + timedelta(days=10)) == "revoked at 2026-11-11T00:00:00Z"
    unrevoked = key.model_copy(update={"revoked_at": None})
    assert unrevoked.invalid_reason(T0 + timedelta(days=30)) == "expired at 2026-12-01T00:00:00Z"
    with pytest.raises(ValueError, match="naive"):
        key.is_valid_at(datetime(2026, 11, 2))


def test_trusted_key_round_trips_through_json():
    pub = PrivateKey.generate().public_key
    key = TrustedKey(principal="bob", role="approver", public_key=pub, revoked_at=T0)
    again = TrustedKey.model_validate_json(key.model_dump_json())
    assert again == key and again.key_id == pub.key_id


def test_trust_set_refuses_one_key_for_two_principals():
    pub = PrivateKey.generate().public_key
    with pytest.raises(ValidationError, match="listed twice"):
        TrustSet.of(
            [
                TrustedKey(principal="alice", role="planner", public_key=pub),
                TrustedKey(principal="bob", role="approver", public_key=pub),
            ]
        )


def test_trust_set_refuses_principals_differing_only_by_case():
    keys = [TrustedKey(principal="Bob", role="approver", public_key=PrivateKey.generate().public_key)]
    with pytest.raises(ValidationError, match="differ only by case"):
        TrustSet.of(keys, groups={"code-owners": ["bob"]})


def test_trust_set_refuses_weak_key_text():
    with pytest.raises(ValidationError, match="small-order"):
        TrustedKey(principal="eve", role="approver", public_key=SMALL_ORDER_POINTS["identity"].hex())
