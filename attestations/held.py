"""A checkpoint the auditor kept apart, against the bundle's: the same tree, an older one, or a later one.

    held_against(bundle_checkpoint, held_checkpoint, audit_predicate, proof_json)   # BundleError if rewritten

Older: the bundle carries consistency proofs from the instance's latest 64 stored checkpoints
below its own. Later: the operator gives the proof from the bundle's tree to the held one
(``writ audit consistency --old N --new M -o proof.json``); the proof needs no trust, the
held checkpoint's signature and the bundle's carry it. Either way, a held tree that the
bundle's is not a prefix of (or that is not a prefix of the bundle's) means the log was rewritten.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from writ.attestations.merkle import verify_consistency
from writ.attestations.notes import Checkpoint
from writ.engine.core.errors import BundleError, WritError
from writ.plans.canonical import parse_strict

__all__ = ["CONSISTENCY_PROOF_TYPE", "consistency_document", "held_against"]

CONSISTENCY_PROOF_TYPE: Final = "https://writ.dev/consistency-proof/v1"
MAX_PROOF_BYTES: Final = 1 << 20


def consistency_document(old: Checkpoint | tuple[int, bytes], new: tuple[int, bytes], proof: list[bytes]
                         ) -> dict[str, Any]:
    """The JSON ``writ audit consistency`` writes: sizes, roots (for reading only) and the proof, base64."""
    old_size, old_root = (old.size, old.root) if isinstance(old, Checkpoint) else old
    return {"_type": CONSISTENCY_PROOF_TYPE, "old_size": old_size, "new_size": new[0],
            "old_root": base64.b64encode(old_root).decode(), "new_root": base64.b64encode(new[1]).decode(),
            "proof": [base64.b64encode(h).decode() for h in proof]}


def _later_proof(bundle: Checkpoint, held: Checkpoint, proof_json: bytes | None) -> list[str]:
    if proof_json is None:
        raise BundleError("held checkpoint", f"the checkpoint you hold is of {held.size} entries, later than the "
                          f"bundle's {bundle.size}: give the consistency proof between them (`writ audit "
                          f"consistency --old {bundle.size} --new {held.size} -o proof.json`, then --proof proof.json)")
    try:
        doc = parse_strict(proof_json, max_bytes=MAX_PROOF_BYTES)
    except WritError as e:
        raise BundleError("held checkpoint", f"the consistency proof is not JSON: {e.message}") from None
    if not isinstance(doc, dict) or doc.get("_type") != CONSISTENCY_PROOF_TYPE or \
            not isinstance(doc.get("proof"), list):
        raise BundleError("held checkpoint", f"the consistency proof is not a {CONSISTENCY_PROOF_TYPE} document")
    if (doc.get("old_size"), doc.get("new_size")) != (bundle.size, held.size):
        raise BundleError("held checkpoint", f"the consistency proof is from {doc.get('old_size')} to "
                          f"{doc.get('new_size')} entries, not from the bundle's {bundle.size} to your {held.size}")
    return [str(h) for h in doc["proof"]]


def held_against(bundle: Checkpoint, held: Checkpoint, audit: dict[str, Any], proof_json: bytes | None = None) -> None:
    """The held checkpoint against the bundle's: the same tree, or one the carried or given proof extends."""
    if held.size == bundle.size:
        if held.root != bundle.root:
            raise BundleError("held checkpoint", f"the log was rewritten: the tree of {held.size} entries you hold "
                              f"has root {held.root.hex()}, the bundle's {bundle.root.hex()}")
        return
    proof: list[str] | None
    if held.size > bundle.size:
        old, new, proof = bundle, held, _later_proof(bundle, held, proof_json)
    else:
        old, new, proof = held, bundle, (audit.get("consistency") or {}).get(str(held.size))
        if proof is None:
            raise BundleError("held checkpoint", f"the checkpoint you hold is of {held.size} entries, the bundle's "
                              f"of {bundle.size}, and the bundle carries no consistency proof between them; check "
                              "the log itself with `writ audit verify --checkpoint FILE`")
    try:
        verify_consistency(old.size, new.size, old.root, new.root, [base64.b64decode(h, validate=True) for h in proof])
    except (WritError, binascii.Error) as e:
        what = "since the checkpoint of" if old is held else "between the bundle's checkpoint and the one of"
        raise BundleError("held checkpoint", f"the log was rewritten {what} {held.size} entries you hold: {e}") from None
