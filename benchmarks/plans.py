"""Benchmark: Ed25519 through Writ's plan code vs raw `cryptography`, and a 100-step plan's full check.

    python benchmarks/plans.py [--n 2000] [--rounds 50]

Prints one JSON document on stdout (progress on stderr):
- raw `cryptography` Ed25519 sign and verify per second (the floor),
- Writ's PrivateKey.sign / PublicKey.verify per second (key checks included),
- the time to verify a 100-step plan envelope and count 3 signed approvals
  (verify_plan_envelope + evaluate_approvals), p50 and p99, and how much of it is
  the raw signature cost (4 verifies of the 4 KB message: ``raw_signature_floor_us``; and
  of the very envelopes, the plan's 70 KB included: ``raw_signature_exact_us``), all four
  timed round by round, side by side:
  ``cold`` with the verified-envelope cache emptied before each round (what a first check
  costs), ``warm`` when the same envelopes and trusted keys were verified before (what
  ``status``, ``begin`` and step claims pay again).

``goals`` says whether the run met issue 13's: cold p50 <= 2x the floor, warm p50 <= 200 µs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from writ.plans.approval_result import ApprovalRequirement
from writ.plans.dsse import Envelope
from writ.plans.keys import PrivateKey
from writ.plans.models import Plan, PlanStep
from writ.plans.statements import sign_approval, sign_plan
from writ.plans.trust import TrustedKey, TrustSet
from writ.plans.verify import evaluate_approvals, verify_plan_envelope
from writ.plans.verify_cache import clear_verified


def per_second(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="signatures per sign/verify measurement")
    parser.add_argument("--rounds", type=int, default=50, help="full plan verifications to time")
    args = parser.parse_args()
    msg = b"x" * 4096
    load_start = os.getloadavg()[0]

    print("raw cryptography ...", file=sys.stderr)
    raw_key = Ed25519PrivateKey.generate()
    raw_pub = raw_key.public_key()
    raw_sig = raw_key.sign(msg)
    raw_sign = per_second(lambda: raw_key.sign(msg), args.n)
    raw_verify = per_second(lambda: raw_pub.verify(raw_sig, msg), args.n)

    print("writ keys ...", file=sys.stderr)
    key = PrivateKey.generate()
    pub = key.public_key
    sig = key.sign(msg)
    writ_sign = per_second(lambda: key.sign(msg), args.n)
    writ_verify = per_second(lambda: pub.verify(sig, msg), args.n)

    print("100-step plan with 3 approvals ...", file=sys.stderr)
    now = datetime.now(UTC)
    planner = PrivateKey.generate()
    approvers = {f"approver-{i}": PrivateKey.generate() for i in range(3)}
    trust = TrustSet.of(
        [TrustedKey(principal="plan-bot", role="planner", public_key=planner.public_key)]
        + [TrustedKey(principal=name, role="approver", public_key=k.public_key) for name, k in approvers.items()],
        groups={"code-owners": list(approvers)},
    )
    steps = [
        PlanStep(server="fs", tool="write_file", definition_digest="sha256:" + f"{i:064x}",
                 args={"path": f"/srv/app/src/module_{i}.py", "content": "print('hello')\n" * 20})
        for i in range(100)
    ]
    plan = Plan.new(title="bench", rationale="benchmark", planner="plan-bot", steps=steps,
                    ttl=timedelta(hours=1), now=now - timedelta(seconds=5))
    envelope = sign_plan(plan, planner).to_json()
    approvals = [sign_approval(plan.id, k, approver=name, at=now).to_json() for name, k in approvers.items()]
    requirement = ApprovalRequirement(quorum=3, required_groups=("code-owners",), max_ttl_seconds=86400)

    def check() -> None:
        verified = verify_plan_envelope(envelope, trust, now=now)
        result = evaluate_approvals(verified, approvals, trust, now=now, requirement=requirement)
        assert result.approved, result.summary

    def floor() -> None:
        for _ in range(4):
            raw_pub.verify(raw_sig, msg)

    exact = exact_signature_work([envelope, *approvals], trust)
    # Round by round, side by side, so load from other work on the machine hits all four alike.
    rounds = interleaved({"floor": (floor, None), "exact": (exact, None), "cold": (check, clear_verified),
                          "warm": (check, None)}, args.rounds)
    samples, warm = rounds["cold"], rounds["warm"]
    raw_floor_us, exact_us = statistics.median(rounds["floor"]), statistics.median(rounds["exact"])
    cold_p50, warm_p50 = statistics.median(samples), statistics.median(warm)

    print(json.dumps({
        "benchmark": "plans",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "message_bytes": len(msg),
        "ed25519_raw_cryptography": {"sign_per_s": round(raw_sign), "verify_per_s": round(raw_verify)},
        "ed25519_writ": {"sign_per_s": round(writ_sign), "verify_per_s": round(writ_verify),
                         "verify_overhead_ratio": round(raw_verify / writ_verify, 2)},
        "plan_100_steps_3_approvals": {
            "envelope_bytes": len(envelope),
            "rounds": args.rounds,
            "p50_us": round(cold_p50),
            "p99_us": round(percentile(samples, 0.99)),
            "raw_signature_floor_us": round(raw_floor_us),
            "raw_signature_exact_us": round(exact_us),
            "p50_over_floor": round(cold_p50 / raw_floor_us, 1),
            "warm": {"p50_us": round(warm_p50), "p99_us": round(percentile(warm, 0.99))},
        },
        "goals": {
            "cold_p50_at_most_2x_floor": cold_p50 <= 2 * raw_floor_us,
            "warm_p50_at_most_200_us": warm_p50 <= 200,
        },
    }, indent=2))


def interleaved(work: dict[str, tuple[Any, Any]], rounds: int) -> dict[str, list[float]]:
    """Per round, each ``name: (fn, before)`` once: ``before`` untimed (to empty a cache), ``fn`` timed, in µs."""
    samples: dict[str, list[float]] = {name: [] for name in work}
    for fn, _ in work.values():
        fn()
    for _ in range(rounds):
        for name, (fn, before) in work.items():
            if before is not None:
                before()
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e6)
    return samples


def exact_signature_work(envelopes: list[bytes], trust: TrustSet) -> Any:
    """Raw ``cryptography`` verification of each envelope's one signature over its PAE (no parsing, no checks)."""
    work = []
    for raw in envelopes:
        env = Envelope.from_json(raw)
        signer = trust.key(env.signatures[0].keyid)
        assert signer is not None
        work.append((signer.public_key, env.signatures[0].sig, env.pae()))

    def verify_all() -> None:
        for key, sig, pae in work:
            key.verify(sig, pae)

    return verify_all


if __name__ == "__main__":
    main()
