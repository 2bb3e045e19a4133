"""Policy decisions per second, embedded engine vs OPA sidecar, on the shipped policies.

    python benchmarks/policy_decisions.py [--n 2000] [--warmup 200]

One run measures, on the same realistic mix of inputs (reads, writes with and without
a plan, governance tools):

- ``embedded``: ``EmbeddedEngine.decide`` (regorus in process: the compiled program, ADR 0014);
- ``embedded_interpreted``: the same with ``compiled=False`` (regorus's tree interpreter alone);
- ``opa_sidecar_http``: ``OpaSidecarEngine.decide`` -> HTTP on loopback -> the OPA REST
  server of ``tests/support/opa_rest_server.py`` (OPA's Go engine) in a subprocess;
- ``opa_in_process``: the same Go engine called directly (``opa_bindings``), without
  Writ's checks or HTTP, as a reference point.

Progress goes to stderr, one JSON document to stdout. ``goals`` says whether this run met
issue 13's: embedded p50 <= 100 µs, p99 <= 250 µs, and at least 4x faster than OPA in process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import opa_bindings
from support.opa_rest_server import spawn

from writ.engine.core.settings import Limits, shipped_policy_dir
from writ.engine.policy.base import DECISION_PATH, canonical_input_json
from writ.engine.policy.bundle import write_bundle
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.models import PolicyInput
from writ.engine.policy.sidecar import OpaSidecarEngine

NOW = datetime.now(UTC)

# (share of calls, description, builder)
MIX: list[tuple[int, str, Callable[[random.Random], dict[str, Any]]]] = []


def _input(rng: random.Random, *, principal: str, role: str, server: str, tool: str,
           args: dict[str, Any], plan: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "principal": principal, "role": role, "groups": [],
        "session": {"id": f"s-{rng.randrange(1000)}", "locked": False},
        "tool": {"server": server, "name": tool, "annotations": {"readOnlyHint": tool.startswith(("git_s", "git_l"))},
                 "definition_digest": "sha256:" + "ab" * 32},
        "args": args, "plan": plan, "now": NOW,
    }


def _plan(rng: random.Random, *, matches: bool = True) -> dict[str, Any]:
    return {"id": "sha256:" + "cd" * 32, "state": rng.choice(["approved", "executing"]), "planner": "plan-bot",
            "expires_at": NOW + timedelta(minutes=rng.randrange(1, 120)), "step_matches": matches,
            "step_index": rng.randrange(5)}


def mix(share: int, name: str) -> Callable[[Callable[[random.Random], dict[str, Any]]], Any]:
    def register(fn: Callable[[random.Random], dict[str, Any]]) -> Any:
        MIX.append((share, name, fn))
        return fn
    return register


@mix(30, "planner read (git, fs)")
def planner_read(rng: random.Random) -> dict[str, Any]:
    server, tool = rng.choice([("git", "git_status"), ("git", "git_log"), ("git", "git_diff"),
                               ("fs", "read_text_file"), ("fs", "list_directory")])
    return _input(rng, principal="plan-bot", role="planner", server=server, tool=tool,
                  args={"repo_path": "/srv/repo", "path": f"src/mod{rng.randrange(50)}.py"})


@mix(15, "executor read")
def executor_read(rng: random.Random) -> dict[str, Any]:
    return _input(rng, principal="exec-bot", role="executor", server="fs", tool="read_text_file",
                  args={"path": f"/srv/repo/src/mod{rng.randrange(50)}.py"})


@mix(20, "executor write under an approved plan")
def executor_write_planned(rng: random.Random) -> dict[str, Any]:
    server, tool = rng.choice([("git", "git_commit"), ("git", "git_add"), ("fs", "write_file"), ("fs", "edit_file")])
    return _input(rng, principal="exec-bot", role="executor", server=server, tool=tool,
                  args={"path": "src/app.py", "content": "x = 1\n" * rng.randrange(1, 40)}, plan=_plan(rng))


@mix(8, "executor write without a plan")
def executor_write_unplanned(rng: random.Random) -> dict[str, Any]:
    return _input(rng, principal="exec-bot", role="executor", server="git", tool="git_commit",
                  args={"repo_path": "/srv/repo", "message": "quick fix"})


@mix(4, "executor write off-plan (step mismatch)")
def executor_write_off_plan(rng: random.Random) -> dict[str, Any]:
    return _input(rng, principal="exec-bot", role="executor", server="fs", tool="move_file",
                  args={"source": "a", "destination": "b"}, plan=_plan(rng, matches=False))


@mix(8, "planner write (denied, locks session)")
def planner_write(rng: random.Random) -> dict[str, Any]:
    return _input(rng, principal="plan-bot", role="planner", server="fs", tool="write_file",
                  args={"path": "notes.md", "content": "todo"})


@mix(15, "governance tools (propose, begin, finish, status)")
def governance(rng: random.Random) -> dict[str, Any]:
    role, tool = rng.choice([("planner", "writ_plan_propose"), ("executor", "writ_plan_begin"),
                             ("executor", "writ_plan_finish"), ("planner", "writ_plan_status"),
                             ("executor", "writ_plan_status")])
    return _input(rng, principal=f"{role[:4]}-bot", role=role, server="writ", tool=tool,
                  args={"plan_id": "sha256:" + "cd" * 32})


def build_inputs(n: int, seed: int) -> list[PolicyInput]:
    rng = random.Random(seed)
    weights = [share for share, _, _ in MIX]
    builders = [fn for _, _, fn in MIX]
    return [PolicyInput.model_validate(rng.choices(builders, weights)[0](rng)) for _ in range(n)]


def measure(name: str, call: Callable[[PolicyInput], Any], warm: list[PolicyInput],
            inputs: list[PolicyInput]) -> dict[str, Any]:
    """Call once per warm-up input, then time each call on ``inputs``."""
    for inp in warm:
        call(inp)
    durations: list[int] = []
    results: list[Any] = []
    started = time.perf_counter_ns()
    for i, inp in enumerate(inputs):
        t0 = time.perf_counter_ns()
        results.append(call(inp))
        durations.append(time.perf_counter_ns() - t0)
        if (i + 1) % 1000 == 0:
            print(f"  {name}: {i + 1}/{len(inputs)}", file=sys.stderr, flush=True)
    wall_s = (time.perf_counter_ns() - started) / 1e9
    us = sorted(d / 1000 for d in durations)
    return {
        "decisions": len(inputs),
        "decisions_per_s": round(len(inputs) / wall_s, 1),
        "p50_us": round(statistics.median(us), 1),
        "p99_us": round(us[min(len(us) - 1, int(len(us) * 0.99))], 1),
        "mean_us": round(statistics.fmean(us), 1),
        "max_us": round(us[-1], 1),
        "_results": results,
    }


def goals(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Issue 13's goals for the embedded engine, checked on this run's figures."""
    e, opa = runs["embedded"], runs["opa_in_process"]
    speedup = round(opa["p50_us"] / e["p50_us"], 2)
    return {
        "embedded_p50_us_at_most_100": e["p50_us"] <= 100,
        "embedded_p99_us_at_most_250": e["p99_us"] <= 250,
        "opa_in_process_p50_over_embedded_p50": speedup,
        "at_least_4x_opa_in_process": speedup >= 4,
        "interpreted_p50_over_compiled_p50": round(runs["embedded_interpreted"]["p50_us"] / e["p50_us"], 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="measured decisions per engine (default 2000)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured decisions first (default 200)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    load_start = os.getloadavg()[0]
    inputs = build_inputs(args.n, args.seed)
    warm = build_inputs(args.warmup, args.seed + 1)
    embedded = EmbeddedEngine(shipped_policy_dir(), Limits(policy_reload_interval_s=3600))
    interpreted = EmbeddedEngine(shipped_policy_dir(), Limits(policy_reload_interval_s=3600), compiled=False)
    ps = embedded.policy_set
    print(f"policy set {ps.revision}: {len(inputs)} inputs, {args.warmup} warm-up", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "writ-bundle.tar.gz"
        write_bundle(ps, bundle)
        with spawn(bundle) as server:
            sidecar = OpaSidecarEngine(server.url, Limits(engine_timeout_s=5))
            opa = opa_bindings.OpaEngine()
            opa.add_data(ps.data, "")
            for path, source in ps.modules.items():
                opa.add_policy(path, source)

            runs: dict[str, dict[str, Any]] = {}
            print("embedded (regorus, reused engine) ...", file=sys.stderr, flush=True)
            runs["embedded"] = measure("embedded", embedded.decide, warm, inputs)
            print("embedded, interpreter only (compiled=False) ...", file=sys.stderr, flush=True)
            runs["embedded_interpreted"] = measure("embedded_interpreted", interpreted.decide, warm, inputs)
            print(f"opa sidecar over HTTP ({server.url}) ...", file=sys.stderr, flush=True)
            runs["opa_sidecar_http"] = measure("opa_sidecar_http", sidecar.decide, warm, inputs)
            print("opa in process (opa_bindings, reference) ...", file=sys.stderr, flush=True)
            runs["opa_in_process"] = measure(
                "opa_in_process", lambda inp: opa.eval_document(DECISION_PATH, json.loads(canonical_input_json(inp))),
                warm, inputs)
            sidecar.close()
            opa.close()

    # The engines must agree on every decision they just made.
    disagreements = 0
    for a, i, b, raw in zip(runs["embedded"]["_results"], runs["embedded_interpreted"]["_results"],
                            runs["opa_sidecar_http"]["_results"], runs["opa_in_process"]["_results"], strict=True):
        raw_view = (raw["allow"], sorted(r["code"] for r in raw["reasons"]))
        views = [(d.allow, d.reason_codes) for d in (a, i, b)]
        disagreements += not (views[0] == views[1] == views[2] == raw_view)
    allowed = sum(d.allow for d in runs["embedded"]["_results"])
    for run in runs.values():
        del run["_results"]

    report = {
        "benchmark": "policy_decisions",
        "policy_revision": ps.revision,
        "decisions_per_engine": len(inputs),
        "warmup": args.warmup,
        "allowed_share": round(allowed / len(inputs), 3),
        "engine_disagreements": disagreements,
        "mix": {name: share for share, name, _ in MIX},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "loadavg_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "engines": runs,
        "goals": goals(runs),
        "compiled_entry_points": embedded.compiled.report(),
        "notes": {
            "embedded": "EmbeddedEngine.decide: bounds, regorus's compiled program (RVM), result validation "
                        "(one thread, VM reused)",
            "embedded_interpreted": "EmbeddedEngine(compiled=False).decide: the same on regorus's tree interpreter",
            "opa_sidecar_http": "OpaSidecarEngine.decide -> POST /v1/data/writ/authz/decision?provenance=True "
                                "-> tests/support/opa_rest_server.py (OPA Go engine) over loopback keep-alive HTTP",
            "opa_in_process": "opa_bindings.OpaEngine.eval_document only: no Writ checks, no HTTP (reference)",
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
