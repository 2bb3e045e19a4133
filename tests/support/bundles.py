"""An honest attestation bundle of a completed plan, and the helpers its attacks are made with.

    honest = Honest(make_world(store, engine), PrivateKey.generate(), engine)
    verify_offline(honest.raw, honest.trust_root)                     # the auditor's view: it verifies
    raw = honest.resigned(statement_edit(EXECUTION_PART, edit))       # an operator holding the instance key
    refused(honest, raw, "executed steps", "step 0 ran with arguments")

Used by tests/integration/test_attest_bundle*.py (each attack a named test) and by
tests/vectors/bundles/make_corpus.py, which runs those named tests to write the committed corpus.
``keyed_world`` is ``make_world`` with the principals' keys given: worlds made with the same keys
export the same trust set, so bundles made in several databases verify under one trust root.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.test_plan_store import CALLS, NOW, PRINCIPALS, World
from writ.attestations.audit import AuditLog
from writ.attestations.bundle import build_bundle
from writ.attestations.bundle_format import MANIFEST_PAYLOAD_TYPE, bundle_document, manifest_payload, split_bundle
from writ.attestations.checkpoints import Checkpointer, default_origin
from writ.attestations.notes import note_key_id
from writ.engine.core.db import Database
from writ.engine.core.errors import BundleError
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.models import PlanContext, PolicyInput, Session, Tool
from writ.engine.policy.offline import verify_offline
from writ.engine.policy.pdp import DecisionPoint
from writ.engine.wiring.policy_record import watch_embedded
from writ.plans import dsse
from writ.plans.approval_result import ApprovalRequirement
from writ.plans.canonical import canonical_bytes, parse_strict
from writ.plans.keys import PrivateKey
from writ.plans.lifecycle import PlanState
from writ.plans.models import Plan
from writ.plans.store import PlanStore
from writ.plans.trust_store import TrustStore, policy_groups

REQUIREMENT = ApprovalRequirement(quorum=2, required_groups=("code-owners",), max_ttl_seconds=86400)
Parts = dict[str, bytes]


def step_input(plan_id: str, index: int, *, matches: bool = True, principal: str = "exec-bot") -> PolicyInput:
    """The policy input the gateway builds for step ``index`` of the plan bound to exec-bot's session."""
    call = CALLS[index]
    return PolicyInput(principal=principal, role="executor", session=Session(id="s-exec"),
                       tool=Tool(server=call["server"], name=call["tool"], definition_digest=call["definition_digest"]),
                       args=call["args"], now=NOW,
                       plan=PlanContext(id=plan_id, state="executing", planner="plan-bot",
                                        expires_at=NOW + timedelta(hours=4), step_matches=matches, step_index=index))


def keyed_world(store: Database, engine: Any, keys: dict[str, PrivateKey]) -> World:
    """``make_world`` (tests/integration/test_plan_store.py) with each principal's key given, not generated."""
    trust = TrustStore(store, policy_groups(engine), audit=AuditLog(store))
    world = World(store, trust, PlanStore(store, trust, engine, audit=AuditLog(store)), keys=dict(keys))
    for name, role in PRINCIPALS:
        trust.add_principal(name, role)
        trust.add_key(name, keys[name].public_key)
    return world


class Honest:
    """A completed plan, its decisions, its bundle, the instance key and the trust root an auditor holds.

        honest = Honest(make_world(store, engine), PrivateKey.generate(), engine)
        verify_offline(honest.raw, honest.trust_root).state == "completed"
    """

    def __init__(self, world: World, instance: PrivateKey, engine: EmbeddedEngine,
                 run: Callable[[Honest], Plan] | None = None) -> None:
        """``run``: how the plan is made and run (default: two steps, each decided, claimed and succeeded)."""
        self.world, self.instance, self.engine = world, instance, engine
        watch_embedded(world.store, engine)  # what the composition root does when an engine loads its policies
        self.checkpointer = Checkpointer(world.store, instance)
        self.pdp = DecisionPoint(engine, AuditLog(world.store))
        self.plan = (run or Honest.run_two_steps)(self)
        self.raw = self.build()
        root = world.trust.export_trust_root()
        origin = default_origin(instance.public_key)
        root["instance_key"] = {"public_key": instance.public_key.to_base64(), "key_id": instance.public_key.key_id,
                                "checkpoint_origin": origin,
                                "note_key_id": note_key_id(origin, instance.public_key).hex()}
        self.trust_root = json.dumps(root).encode()

    def run_two_steps(self) -> Plan:
        world, plan = self.world, self.world.executing()
        for i in range(2):
            assert self.pdp.decide(step_input(plan.id, i)).allow  # the gateway asks policy before each step
            world.claim(plan, i)
            world.plans.record_result(plan.id, i, "sha256:" + "cd" * 32, "succeeded", now=NOW)
        assert world.plans.finish(plan.id, "completed", now=NOW) is PlanState.COMPLETED
        return plan

    def build(self, plan_id: str | None = None, requirement: ApprovalRequirement = REQUIREMENT) -> bytes:
        return build_bundle(self.world.plans, self.world.store, self.checkpointer, self.instance,
                            plan_id or self.plan.id, requirement, requirement_revision=self.engine.revision)

    def resigned(self, change: Callable[[Parts], None], key: PrivateKey | None = None) -> bytes:
        """The bundle with its parts changed and the manifest re-signed (an attacker holding the instance key)."""
        parts, manifest = split_bundle(self.raw)
        change(parts)
        created = parse_strict(manifest.payload)["created_at"]
        env = dsse.Envelope.create(MANIFEST_PAYLOAD_TYPE, manifest_payload(self.plan.id, created, parts))
        return bundle_document(parts, dsse.sign(env, key or self.instance))


def refused(honest: Honest, raw: bytes, check: str, match: str) -> None:
    """``raw`` is refused by the offline verifier, under ``honest``'s trust root, by ``check`` with ``match``."""
    with pytest.raises(BundleError, match=match) as caught:
        verify_offline(raw, honest.trust_root)
    assert caught.value.check == check


def statement_edit(part: str, edit: Callable[[dict[str, Any]], None]) -> Callable[[Parts], None]:
    """A change of ``part``'s statement: ``edit`` its predicate, write it back canonical."""
    def change(parts: Parts) -> None:
        doc = parse_strict(parts[part])
        edit(doc["predicate"])
        parts[part] = canonical_bytes(doc)
    return change
