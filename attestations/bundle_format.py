"""The attestation bundle's format (ADR 0020): one JSON document, a signed manifest and its parts. Pure, no IO.

    doc = bundle_document(parts, manifest_envelope)     # what `writ attest export` writes
    parts, manifest = split_bundle(raw)                  # what `writ attest verify` reads

A bundle is ``{"_type": BUNDLE_TYPE, "manifest": <DSSE envelope>, "parts": {name: base64}}``.
The manifest's payload (``MANIFEST_PAYLOAD_TYPE``) is RFC 8785 JSON naming the plan and the
sha256 of every part; the instance key signs it. Parts are kept as the exact bytes that were hashed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

from writ.engine.core.errors import BundleError, WritError
from writ.plans import dsse
from writ.plans.canonical import canonical_bytes, parse_strict, sha256_digest

__all__ = [
    "AUDIT_PART",
    "BUNDLE_TYPE",
    "CHECKPOINT_PART",
    "DECISIONS_PART",
    "EXECUTION_PART",
    "IN_TOTO_STATEMENT",
    "MANIFEST_PAYLOAD_TYPE",
    "MANIFEST_TYPE",
    "PLAN_PART",
    "POLICY_PREFIX",
    "REQUIREMENT_PART",
    "TRUST_PART",
    "approval_part",
    "bundle_document",
    "entry_plan_id",
    "manifest_payload",
    "policy_part",
    "split_bundle",
    "statement",
    "statement_predicate",
]

BUNDLE_TYPE: Final = "https://writ.dev/attestation-bundle/v1"
MANIFEST_TYPE: Final = "https://writ.dev/attestation-bundle-manifest/v1"
MANIFEST_PAYLOAD_TYPE: Final = "application/vnd.writ.bundle-manifest+json"
IN_TOTO_STATEMENT: Final = "https://in-toto.io/Statement/v1"
EXECUTION_PREDICATE: Final = "https://writ.dev/execution/v1"
AUDIT_PREDICATE: Final = "https://writ.dev/audit-inclusion/v1"
REQUIREMENT_PREDICATE: Final = "https://writ.dev/approval-requirement/v2"  # + the revision that gave it (ADR 0022)
DECISIONS_PREDICATE: Final = "https://writ.dev/decisions/v1"
TRUST_PREDICATE: Final = "https://writ.dev/trust-subset/v1"

PLAN_PART: Final = "plan.dsse.json"
REQUIREMENT_PART: Final = "requirement.intoto.json"
EXECUTION_PART: Final = "execution.intoto.json"
AUDIT_PART: Final = "audit.intoto.json"
CHECKPOINT_PART: Final = "checkpoint.note"
DECISIONS_PART: Final = "decisions.intoto.json"
TRUST_PART: Final = "trust.intoto.json"
POLICY_PREFIX: Final = "policy/"
MAX_BUNDLE_BYTES: Final = 256 * 1024 * 1024


def approval_part(seq: int) -> str:
    """The part name of the ``seq``-th stored approval or rejection envelope."""
    return f"approvals/{seq:06d}.dsse.json"


def policy_part(revision: str) -> str:
    """The part name of a policy revision's OPA bundle: ``policy/<hex of the revision>.tar.gz``."""
    return f"{POLICY_PREFIX}{revision.removeprefix('sha256:')}.tar.gz"


def entry_plan_id(payload: Mapping[str, Any]) -> str | None:
    """The plan an audit entry is about: ``plan_id``, or for a decision the plan its input names."""
    if isinstance(plan_id := payload.get("plan_id"), str):
        return plan_id
    inp = payload.get("input")
    plan = inp.get("plan") if isinstance(inp, dict) else None
    found = plan.get("id") if isinstance(plan, dict) else None
    return found if isinstance(found, str) else None


def statement(plan_id: str, predicate_type: str, predicate: Mapping[str, Any]) -> bytes:
    """An in-toto Statement v1 about the plan (subject: its digest), as RFC 8785 bytes."""
    return canonical_bytes({
        "_type": IN_TOTO_STATEMENT,
        "subject": [{"name": plan_id, "digest": {"sha256": plan_id.removeprefix("sha256:")}}],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    })


def manifest_payload(plan_id: str, created_at: str, parts: Mapping[str, bytes]) -> bytes:
    """The manifest: the plan, when the bundle was made and the sha256 of every part."""
    return canonical_bytes({
        "_type": MANIFEST_TYPE,
        "plan_id": plan_id,
        "created_at": created_at,
        "parts": {name: sha256_digest(data) for name, data in sorted(parts.items())},
    })


def bundle_document(parts: Mapping[str, bytes], manifest: dsse.Envelope) -> bytes:
    """The bundle file's bytes."""
    return canonical_bytes({
        "_type": BUNDLE_TYPE,
        "manifest": manifest.to_dict(),
        "parts": {name: base64.b64encode(data).decode() for name, data in sorted(parts.items())},
    })


def split_bundle(raw: bytes) -> tuple[dict[str, bytes], dsse.Envelope]:
    """The parts (name -> exact bytes) and the manifest envelope of a bundle file; unverified."""
    try:
        doc = parse_strict(raw, max_bytes=MAX_BUNDLE_BYTES)
    except WritError as e:
        raise BundleError("bundle format", f"the file is not a bundle's JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("_type") != BUNDLE_TYPE:
        raise BundleError("bundle format", f"expected a JSON object with _type {BUNDLE_TYPE!r}")
    raw_parts = doc.get("parts")
    if not isinstance(raw_parts, dict) or not all(isinstance(v, str) for v in raw_parts.values()):
        raise BundleError("bundle format", "parts must be an object of base64 strings")
    parts: dict[str, bytes] = {}
    for name, text in raw_parts.items():
        try:
            parts[name] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BundleError("bundle format", f"part {name!r} is not base64") from None
    try:
        manifest = dsse.Envelope.from_dict(doc.get("manifest"))
    except WritError as e:
        raise BundleError("bundle format", f"the manifest is not a DSSE envelope: {e}") from None
    return parts, manifest


def statement_predicate(parts: Mapping[str, bytes], name: str, plan_id: str) -> dict[str, Any]:
    """The predicate of part ``name``, an in-toto Statement about ``plan_id``; ``BundleError`` otherwise."""
    doc = parse_strict(parts[name])
    subject = [{"name": plan_id, "digest": {"sha256": plan_id.removeprefix("sha256:")}}]
    if not isinstance(doc, dict) or doc.get("_type") != IN_TOTO_STATEMENT or doc.get("subject") != subject:
        raise BundleError("statement subject", f"part {name} is not a statement about plan {plan_id}")
    predicate = doc.get("predicate")
    if not isinstance(predicate, dict):
        raise BundleError("statement subject", f"part {name} has no predicate")
    return predicate
