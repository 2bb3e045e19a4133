"""Benchmark: export and offline verify of one plan's attestation bundle (issue 12), by plan size.

    python benchmarks/attest_bundles.py [--steps 10,100,256]

For each size: a plan of that many steps is submitted, approved by two approvers, executed
(each step decided by the policy and logged first, as the gateway does) and completed in a
fresh SQLite data directory; then ``build_bundle`` (export: reads the stores, signs a
checkpoint, proves each of the plan's audit entries, copies the policy bundle) and
``verify_offline`` (every check, the requirement and every decision re-evaluated by regorus
from the included policy bundle, ADR 0022) are timed: ``verify_s`` with the policy compiled
in that call (a fresh auditor process), ``verify_warm_s`` with it cached. Prints one JSON
document; ``goals``: verify of the largest plan <= 1 s and cost per step roughly constant.
Plans over the default 256 steps run with ``max_steps`` raised on both sides
(``WRIT_LIMITS__PLANS__MAX_STEPS``, ``verify_offline(limits=...)``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from writ.attestations.audit import AuditLog
from writ.attestations.bundle import build_bundle
from writ.attestations.checkpoints import Checkpointer, default_origin
from writ.engine.core.db import open_database
from writ.engine.core.settings import Settings, shipped_policy_dir
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.models import PlanContext, PolicyInput, Session, Tool
from writ.engine.policy.offline import RegorusReplayer, verify_offline
from writ.engine.policy.pdp import DecisionPoint
from writ.engine.wiring.policy_record import watch_embedded
from writ.plans.approval_result import ApprovalRequirement
from writ.plans.keys import PrivateKey
from writ.plans.models import Plan, PlanLimits, PlanStep
from writ.plans.statements import sign_approval, sign_plan
from writ.plans.store import PlanStore
from writ.plans.trust_store import TrustStore, policy_groups

DEF = "sha256:" + "ab" * 32
PEOPLE = [("plan-bot", "planner"), ("alice", "approver"), ("bob", "approver"), ("exec-bot", "executor")]


def one_size(n: int, policy_dir: Path, home: Path) -> dict[str, Any]:
    store = open_database(Settings(home=home))
    engine = EmbeddedEngine(policy_dir)
    watch_embedded(store, engine)
    pdp = DecisionPoint(engine, AuditLog(store))
    trust = TrustStore(store, policy_groups(engine), audit=AuditLog(store))
    limits = PlanLimits(max_steps=max(n, 256))
    plans = PlanStore(store, trust, engine, audit=AuditLog(store), limits=limits)
    keys = {}
    for name, role in PEOPLE:
        trust.add_principal(name, role)  # type: ignore[arg-type]
        keys[name] = PrivateKey.generate()
        trust.add_key(name, keys[name].public_key)
    now = datetime.now(UTC)
    steps = [PlanStep(server="fs", tool="write_file", definition_digest=DEF,
                      args={"path": f"/repo/f{i}.txt", "content": f"line {i}\n"}) for i in range(n)]
    plan = Plan.new(title="bench", rationale="bench", planner="plan-bot", steps=steps, ttl=timedelta(hours=1),
                    now=now - timedelta(seconds=5))
    plans.submit(sign_plan(plan, keys["plan-bot"]).to_json(), now=now)
    for who in ("alice", "bob"):
        plans.add_approval(plan.id, sign_approval(plan.id, keys[who], approver=who, decision="approve",
                                                  comment="", at=now).to_json(), now=now)
    plans.begin(plan.id, "exec-bot", now=now)
    for i, s in enumerate(steps):
        context = PlanContext(id=plan.id, state="executing", planner="plan-bot", expires_at=plan.expires_at,
                              step_matches=True, step_index=i)
        inp = PolicyInput(principal="exec-bot", role="executor", session=Session(id="bench"), args=s.args,
                          tool=Tool(server=s.server, name=s.tool, definition_digest=DEF), plan=context, now=now)
        assert pdp.decide(inp).allow  # noqa: S101 - the benchmark's own precondition
        plans.claim_step(plan.id, i, "exec-bot", server=s.server, tool=s.tool, definition_digest=DEF,
                         args=s.args, now=now)
        plans.record_result(plan.id, i, "sha256:" + "cd" * 32, "succeeded", now=now)
    plans.finish(plan.id, "completed", now=now)
    instance = PrivateKey.generate()
    root = trust.export_trust_root()
    root["instance_key"] = {"public_key": instance.public_key.to_base64(),
                            "checkpoint_origin": default_origin(instance.public_key)}
    trust_root = json.dumps(root).encode()
    requirement = ApprovalRequirement(quorum=2, required_groups=(), max_ttl_seconds=None)
    t0 = time.perf_counter()
    raw = build_bundle(plans, store, Checkpointer(store, instance), instance, plan.id, requirement,
                       requirement_revision=engine.revision)
    t1 = time.perf_counter()
    RegorusReplayer._cache.clear()  # as a fresh auditor process: the policy is compiled in this call
    report = verify_offline(raw, trust_root, limits=limits)
    t2 = time.perf_counter()
    verify_offline(raw, trust_root, limits=limits)
    t3 = time.perf_counter()
    store.close()
    return {"steps": n, "bundle_bytes": len(raw), "audit_entries": report.entries,
            "decisions_replayed": report.decisions_replayed,
            "export_s": round(t1 - t0, 4), "verify_s": round(t2 - t1, 4), "verify_warm_s": round(t3 - t2, 4),
            "verify_us_per_step": round((t2 - t1) / n * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="10,100,1000")
    args = parser.parse_args()
    results = []
    for n in (int(x) for x in args.steps.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            print(f"plan of {n} steps ...", file=sys.stderr)
            results.append(one_size(n, shipped_policy_dir(), Path(tmp)))
    largest = results[-1]
    per_step = [r["verify_us_per_step"] for r in results if r["steps"] >= 100] or [1.0]  # small plans: fixed costs
    print(json.dumps({
        "benchmark": "attest_bundles", "python": platform.python_version(), "sizes": results,
        "goals": {"verify_largest_le_1s": largest["verify_s"] <= 1.0,
                  "verify_per_step_spread_from_100_steps": round(max(per_step) / min(per_step), 2)},
    }, indent=2))


if __name__ == "__main__":
    main()
