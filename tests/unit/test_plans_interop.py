"""Interop with securesystemslib, an independent DSSE implementation: each side verifies the other's envelopes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from writ.engine.core.errors import SignatureError
from writ.plans.approval_result import ApprovalRequirement
from writ.plans.dsse import Envelope
from writ.plans.keys import PrivateKey, PublicKey
from writ.plans.models import Plan, PlanStep
from writ.plans.statements import (
    IN_TOTO_PAYLOAD_TYPE,
    PLAN_PAYLOAD_TYPE,
    ApprovalStatement,
    sign_plan,
)
from writ.plans.trust import TrustedKey, TrustSet
from writ.plans.verify import evaluate_approvals, verify_plan_envelope

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "dsse_ed25519.json").read_text())


def _plan(planner: str = "alice") -> Plan:
    step = PlanStep(
        server="fs",
        tool="write_file",
        definition_digest="sha256:" + "ab" * 32,
        args={"path": "/repo/README.md", "content": "hello"},
    )
    return Plan.new(
        title="Fix README",
        rationale="typo",
        planner=planner,
        steps=[step],
        ttl=timedelta(hours=1),
        now=NOW - timedelta(minutes=5),
    )


def _sslib_key(key: PrivateKey) -> SSlibKey:
    return SSlibKey(key.key_id, "ed25519", "ed25519", {"public": key.public_key.raw.hex()})


def _writ_key(signer: CryptoSigner) -> PublicKey:
    return PublicKey.parse(signer.public_key.keyval["public"])


def test_securesystemslib_verifies_a_writ_plan_envelope():
    key, plan = PrivateKey.generate(), _plan()
    theirs = SslibEnvelope.from_dict(json.loads(sign_plan(plan, key).to_json()))
    assert theirs.payload == plan.canonical_bytes()
    assert theirs.payload_type == PLAN_PAYLOAD_TYPE
    assert list(theirs.verify([_sslib_key(key)], 1)) == [key.key_id]


def test_securesystemslib_rejects_a_tampered_writ_envelope():
    key = PrivateKey.generate()
    wire: dict[str, Any] = sign_plan(_plan(), key).to_dict()
    wire["payload"] = sign_plan(_plan(), key).to_dict()["payload"]  # another plan (fresh nonce), same signature
    with pytest.raises(SslibVerificationError):
        SslibEnvelope.from_dict(wire).verify([_sslib_key(key)], 1)


def test_writ_verifies_a_securesystemslib_plan_envelope():
    signer, plan = CryptoSigner.generate_ed25519(), _plan()
    theirs = SslibEnvelope(payload=plan.canonical_bytes(), payload_type=PLAN_PAYLOAD_TYPE, signatures={})
    theirs.sign(signer)
    ours = Envelope.from_dict(theirs.to_dict())
    # securesystemslib's key id is its own (sha256 of its key dict): for Writ it is a hint that matches nothing
    assert ours.signatures[0].keyid == signer.public_key.keyid != _writ_key(signer).key_id
    trust = TrustSet.of([TrustedKey(principal="alice", role="planner", public_key=_writ_key(signer))])
    assert verify_plan_envelope(ours, trust, now=NOW) == plan


def test_writ_rejects_a_securesystemslib_envelope_by_the_wrong_role():
    signer, plan = CryptoSigner.generate_ed25519(), _plan()
    theirs = SslibEnvelope(payload=plan.canonical_bytes(), payload_type=PLAN_PAYLOAD_TYPE, signatures={})
    theirs.sign(signer)
    trust = TrustSet.of([TrustedKey(principal="alice", role="executor", public_key=_writ_key(signer))])
    with pytest.raises(SignatureError, match="does not verify under any trusted planner key"):
        verify_plan_envelope(Envelope.from_dict(theirs.to_dict()), trust, now=NOW)


def test_writ_counts_an_approval_signed_by_securesystemslib():
    planner, signer, plan = PrivateKey.generate(), CryptoSigner.generate_ed25519(), _plan()
    statement = ApprovalStatement.for_plan(plan.id, approver="bob", decision="approve", comment="ok", at=NOW)
    theirs = SslibEnvelope(payload=statement.payload(), payload_type=IN_TOTO_PAYLOAD_TYPE, signatures={})
    theirs.sign(signer)
    trust = TrustSet.of(
        [
            TrustedKey(principal="alice", role="planner", public_key=planner.public_key),
            TrustedKey(principal="bob", role="approver", public_key=_writ_key(signer)),
        ]
    )
    raw = json.dumps(theirs.to_dict()).encode()
    result = evaluate_approvals(plan, [raw], trust, now=NOW, requirement=ApprovalRequirement(quorum=1))
    assert result.approved and result.approvers == ("bob",)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["id"])
def test_securesystemslib_agrees_on_the_dsse_vectors(vector: dict[str, Any]):
    keys = [
        SSlibKey(
            VECTORS["keys"][n]["key_id"],
            "ed25519",
            "ed25519",
            {"public": VECTORS["keys"][n]["public"]},
        )
        for n in vector["trustedKeys"]
    ]
    try:
        theirs = SslibEnvelope.from_dict(json.loads(json.dumps(vector["envelope"])))
        assert theirs.pae().hex() == vector["pae"]
        theirs.verify(keys, vector["threshold"])
        ok = theirs.payload_type == vector["expectedPayloadType"]
    except (
        SslibVerificationError,
        ValueError,
    ):  # ValueError: sslib refuses two signatures with one keyid
        ok = False
    assert ok == (vector["expect"] == "accept")
