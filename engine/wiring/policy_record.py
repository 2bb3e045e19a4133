"""Keep the OPA bundle of every policy revision this instance's engines load (ADR 0022).

    watch_embedded(store, engine)                 # now, and on every reload that changes the revision
    record_sidecar(store, engine, policy_dir)     # OPA: the local directory's bundle, if OPA runs that revision

An attestation bundle carries the policy that decided its plan; ``writ attest export`` takes it
from ``PolicyBundles``. Recording never stops a decision: a database error is logged (the export
then names the revision it lacks).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from writ.attestations.policy_bundles import PolicyBundles
from writ.engine.core.db import Database
from writ.engine.core.errors import WritError

if TYPE_CHECKING:
    from writ.engine.policy.base import PolicyEngine
    from writ.engine.policy.embedded import EmbeddedEngine
    from writ.engine.policy.policyset import PolicySet

__all__ = ["record_policy_set", "record_sidecar", "watch_embedded"]

log = logging.getLogger(__name__)


def record_policy_set(store: Database, ps: PolicySet) -> None:
    """Store ``ps``'s OPA bundle under its revision, once; a failure is logged, never raised."""
    from writ.engine.policy.bundle import bundle_bytes

    try:
        PolicyBundles(store).record(ps.revision, bundle_bytes(ps))
    except WritError as e:
        log.error("could not record policy revision %s (bundles of plans it decides cannot be exported): %s",
                  ps.revision, e.message)


def watch_embedded(store: Database, engine: EmbeddedEngine) -> None:
    """Record the engine's revision now and each new one it reloads."""
    record_policy_set(store, engine.policy_set)
    engine.on_load = lambda ps: record_policy_set(store, ps)


def record_sidecar(store: Database, engine: PolicyEngine, policy_dir: Path) -> bool:
    """Record the local policy directory's bundle if it is the revision OPA last answered from; True if it is."""
    from writ.engine.policy.policyset import load_policy_set

    if engine.revision is None:
        return False
    try:
        local = load_policy_set(policy_dir)
    except WritError as e:
        log.warning("cannot read the local policy directory %s to record OPA's revision: %s", policy_dir, e.message)
        return False
    if local.revision != engine.revision:
        return False
    record_policy_set(store, local)
    return True
