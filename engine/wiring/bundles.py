"""Export a plan's attestation bundle from a data directory's stores (ADR 0020).

    with open_services(settings) as w:
        raw = export_bundle(w, plan_id)          # the bytes `writ attest export` writes

The approval requirement is asked of the policy now (``writ.approval.requirement``) and carried
in the bundle with the revision that gave it; the bundle also carries the OPA bundle of that
revision and of every revision that decided the plan's calls (recorded as engines load them:
``writ.engine.wiring.policy_record``), so the verifier re-runs them (ADR 0022). The instance
key (``writ init``) signs the manifest and a fresh checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast

from writ.attestations.bundle import build_bundle
from writ.attestations.checkpoints import Checkpointer
from writ.attestations.instance_key import load_instance_key
from writ.engine.wiring.policy_record import record_sidecar
from writ.engine.wiring.services import Services
from writ.plans.assessment import requirement_for
from writ.plans.backing import policy_revision
from writ.plans.canonical import sha256_digest

if TYPE_CHECKING:
    from writ.engine.policy.base import PolicyEngine

__all__ = ["bundle_path", "export_bundle", "save_bundle"]

BUNDLES_DIR: Final = "bundles"


def export_bundle(w: Services, plan_id: str) -> bytes:
    """The bundle of ``plan_id`` (a full id) as its stores hold it now."""
    record = w.plans.get(plan_id)
    plan = record.unverified_plan(w.plans.limits)  # for the policy's input only: the verifier checks the signature
    requirement = requirement_for(w.policy, plan, plan.created_at)  # what it needed when it was made
    # after the evaluation: a sidecar learns the revision from OPA's answer
    revision = policy_revision(w.policy)
    if w.settings.engine == "opa":
        record_sidecar(w.store, cast("PolicyEngine", w.policy), w.settings.effective_policy_dir)
    checkpointer = Checkpointer.from_settings(w.settings, w.store)
    return build_bundle(w.plans, w.store, checkpointer, load_instance_key(w.settings.home), plan_id, requirement,
                        requirement_revision=revision)


def bundle_path(home: Path, plan_id: str) -> Path:
    """Where the workflow keeps a plan's bundle: ``<data dir>/bundles/<plan hex>.json``."""
    return home / BUNDLES_DIR / f"{plan_id.removeprefix('sha256:')}.json"


def save_bundle(w: Services, plan_id: str) -> tuple[Path, str]:
    """Export ``plan_id``'s bundle to ``bundle_path`` (replacing an earlier one); (the path, its sha256)."""
    raw = export_bundle(w, plan_id)
    path = bundle_path(w.settings.home, plan_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(raw)
    os.replace(partial, path)  # a reader sees the old bundle or the new one, never half of one
    return path, sha256_digest(raw)
