"""Build one plan's attestation bundle from the stores (ADR 0020, ADR 0022).

    raw = build_bundle(plans, store, checkpointer, instance_key, plan_id, requirement,
                       requirement_revision=engine.revision)
    Path("plan.bundle.json").write_bytes(raw)

Parts: the plan envelope, every approval and rejection envelope as received, the approval
requirement the policy gave and the revision that gave it (a Statement), the execution records
(a Statement: every attempt of every step, a retried step's earlier attempts taken from its
audit entries), the plan's decisions (a Statement), the plan's audit entries, decisions included,
with inclusion proofs (a Statement) against the signed checkpoint, with consistency proofs from
the latest stored checkpoints to it, the checkpoint itself, the trust-root subset the plan needs
(a Statement), and the OPA bundle of every policy revision the verifier re-runs (``policy/*.tar.gz``,
from ``PolicyBundles``; ``NotFoundError`` naming a revision that was never recorded). The
manifest is signed by the instance key.
"""

from __future__ import annotations

import base64
from typing import Any

from sqlmodel import col, select

from writ.attestations.bundle_format import (
    AUDIT_PART,
    AUDIT_PREDICATE,
    CHECKPOINT_PART,
    DECISIONS_PART,
    DECISIONS_PREDICATE,
    EXECUTION_PART,
    EXECUTION_PREDICATE,
    MANIFEST_PAYLOAD_TYPE,
    PLAN_PART,
    REQUIREMENT_PART,
    REQUIREMENT_PREDICATE,
    TRUST_PART,
    TRUST_PREDICATE,
    approval_part,
    bundle_document,
    entry_plan_id,
    manifest_payload,
    policy_part,
    statement,
)
from writ.attestations.bundle_parts import decision_record, needed_revisions, step_attempts, trust_subset
from writ.attestations.chain import parse_payload
from writ.attestations.checkpoints import Checkpointer
from writ.attestations.notes import note_key_id
from writ.attestations.policy_bundles import PolicyBundles
from writ.attestations.tree import AuditTree
from writ.engine.core.db import Database
from writ.engine.core.errors import NotFoundError
from writ.engine.core.tables import AuditLogRow
from writ.engine.core.timeutil import iso, utc_now
from writ.plans import dsse
from writ.plans.approval_result import ApprovalRequirement
from writ.plans.keys import PrivateKey
from writ.plans.store import PlanStore

__all__ = ["build_bundle"]

MAX_CONSISTENCY_PROOFS = 64  # from the latest stored checkpoints: what an auditor may hold, bounded


def _execution(plans: PlanStore, plan_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The plan's state and every attempt of every step (a retried step's earlier attempts from its entries)."""
    record = plans.get(plan_id)
    rows = [{
        "step_index": c.step_index, "executor": c.executor, "claimed_at": iso(c.claimed_at),
        "args_digest": c.args_digest, "result_digest": c.result_digest, "outcome": c.outcome,
        "finished_at": iso(c.finished_at) if c.finished_at else None, "attempt": c.attempt,
    } for c in plans.claims(plan_id)]
    steps = step_attempts(rows, [(e["seq"], e["kind"], e["payload"]) for e in entries])
    return {"state": record.state.value, "executor": record.executor, "steps": steps}


def _plan_entries(store: Database, plan_id: str, size: int) -> list[AuditLogRow]:
    """The audit entries within the checkpointed tree whose payload names the plan."""
    with store.session() as session:
        rows = session.exec(select(AuditLogRow).where(col(AuditLogRow.seq) <= size)
                            .where(col(AuditLogRow.payload).contains(plan_id)).order_by(col(AuditLogRow.seq)))
        return [r for r in rows if entry_plan_id(parse_payload(r.payload)) == plan_id]


def _consistency(tree: AuditTree, checkpointer: Checkpointer, size: int) -> dict[str, list[str]]:
    """Proofs that each of the latest stored checkpoints below ``size`` is a prefix of the bundle's tree."""
    older = sorted({h.checkpoint.size for h in checkpointer.stored() if 0 < h.checkpoint.size < size})
    return {str(m): [base64.b64encode(h).decode() for h in tree.consistency_proof(m, size)]
            for m in older[-MAX_CONSISTENCY_PROOFS:]}


def _audit(store: Database, checkpointer: Checkpointer, plan_id: str, size: int) -> dict[str, Any]:
    tree = AuditTree(store)
    entries = [{
        "seq": r.seq, "created_at": r.created_at, "kind": r.kind, "payload": parse_payload(r.payload),
        "prev_hash": r.prev_hash, "entry_hash": r.entry_hash,
        "proof": [base64.b64encode(h).decode() for h in tree.inclusion_proof(r.seq, size)],
    } for r in _plan_entries(store, plan_id, size)]
    return {"tree_size": size, "entries": entries, "consistency": _consistency(tree, checkpointer, size)}


def _trust(plans: PlanStore, checkpointer: Checkpointer, plan_id: str) -> dict[str, Any]:
    """The trust-root subset: the planner's, approvers' and executors' keys, and the instance key."""
    record = plans.get(plan_id)
    principals = [record.planner, *(a.approver for a in plans.approvals(plan_id)),
                  *([record.executor] if record.executor else []), *(c.executor for c in plans.claims(plan_id))]
    pub = checkpointer.public_key
    instance = {"public_key": pub.to_base64(), "key_id": pub.key_id, "checkpoint_origin": checkpointer.origin,
                "note_key_id": note_key_id(checkpointer.origin, pub).hex()}
    return trust_subset(plans.trust.export_trust_root(), principals, instance)


def _policies(store: Database, revisions: list[str]) -> dict[str, bytes]:
    """The stored OPA bundle of each revision; ``NotFoundError`` naming the first never recorded."""
    stored = PolicyBundles(store)
    out: dict[str, bytes] = {}
    for revision in revisions:
        bundle = stored.get(revision)
        if bundle is None:
            raise NotFoundError(
                f"policy revision {revision} decided this plan but its policy bundle was never recorded "
                "(an engine records each revision it loads, from migration 0011 on); the bundle cannot "
                "carry the policy an auditor must re-run, so it is not exported")
        out[policy_part(revision)] = bundle
    return out


def build_bundle(
    plans: PlanStore,
    store: Database,
    checkpointer: Checkpointer,
    instance_key: PrivateKey,
    plan_id: str,
    requirement: ApprovalRequirement,
    *,
    requirement_revision: str | None,
) -> bytes:
    """The bundle of ``plan_id`` as it stands now, its audit entries proven against a fresh checkpoint.

    ``requirement_revision``: the policy revision that gave ``requirement`` (the verifier re-runs it).
    """
    record = plans.get(plan_id)
    checkpoint = checkpointer.checkpoint()
    size = checkpoint.checkpoint.size
    parts: dict[str, bytes] = {PLAN_PART: record.envelope, CHECKPOINT_PART: checkpoint.note.encode()}
    for a in plans.approvals(plan_id):
        parts[approval_part(a.seq)] = a.envelope
    parts[REQUIREMENT_PART] = statement(plan_id, REQUIREMENT_PREDICATE, {
        "requirement": requirement.model_dump(mode="json"), "policy_revision": requirement_revision,
        "evaluated_at": iso(record.unverified_plan(plans.limits).created_at)})
    audit = _audit(store, checkpointer, plan_id, size)
    parts[EXECUTION_PART] = statement(plan_id, EXECUTION_PREDICATE, _execution(plans, plan_id, audit["entries"]))
    decisions = [decision_record(e["seq"], e["payload"]) for e in audit["entries"] if e["kind"] == "decision"]
    parts[DECISIONS_PART] = statement(plan_id, DECISIONS_PREDICATE, {"decisions": decisions})
    parts[AUDIT_PART] = statement(plan_id, AUDIT_PREDICATE, audit)
    parts[TRUST_PART] = statement(plan_id, TRUST_PREDICATE, _trust(plans, checkpointer, plan_id))
    parts.update(_policies(store, needed_revisions(decisions, requirement_revision)))
    manifest = dsse.sign(
        dsse.Envelope.create(MANIFEST_PAYLOAD_TYPE, manifest_payload(plan_id, iso(utc_now()), parts)), instance_key)
    return bundle_document(parts, manifest)
