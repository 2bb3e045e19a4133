"""Benchmark: Ed25519 through Writ's plan code vs raw `cryptography`, and a 100-step plan's full check.

    python benchmarks/plans.py [--n 2000] [--rounds 50]

Prints one JSON document on stdout (progress on stderr):
- raw `cryptography` Ed25519 sign and verify per second (the floor),
- Writ's PrivateKey.sign / PublicKey.verify per second (key checks included),
- the time to verify a 100-step plan envelope and count 3 signed approvals
  (verify_plan_envelope + evaluate_approvals), p50 and p99, and how much of it is
  the raw signature cost (4 verifies).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from writ.plans.approval_result import ApprovalRequirement
from writ.plans.keys import PrivateKey
from writ.plans.models import Plan, PlanStep
from writ.plans.statements import sign_approval, sign_plan
from writ.plans.trust import TrustedKey, TrustSet
from writ.plans.verify import evaluate_approvals, verify_plan_envelope


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
    samples = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        verified = verify_plan_envelope(envelope, trust, now=now)
        result = evaluate_approvals(verified, approvals, trust, now=now, requirement=requirement)
        samples.append((time.perf_counter() - start) * 1e6)
        assert result.approved, result.summary
    raw_floor_us = 4 * 1e6 / raw_verify

    print(json.dumps({
        "benchmark": "plans",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "message_bytes": len(msg),
        "ed25519_raw_cryptography": {"sign_per_s": round(raw_sign), "verify_per_s": round(raw_verify)},
        "ed25519_writ": {"sign_per_s": round(writ_sign), "verify_per_s": round(writ_verify),
                         "verify_overhead_ratio": round(raw_verify / writ_verify, 2)},
        "plan_100_steps_3_approvals": {
            "envelope_bytes": len(envelope),
            "rounds": args.rounds,
            "p50_us": round(statistics.median(samples)),
            "p99_us": round(percentile(samples, 0.99)),
            "raw_signature_floor_us": round(raw_floor_us),
            "p50_over_floor": round(statistics.median(samples) / raw_floor_us, 1),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
