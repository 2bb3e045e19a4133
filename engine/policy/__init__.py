"""Rego policy evaluation: one decision interface, two engines.

    from writ.engine.policy.embedded import EmbeddedEngine
    engine = EmbeddedEngine.from_dir(Path("policies"))
    decision = engine.decide(policy_input)      # never raises: any failure is a deny
"""

import os

# regorus (Rust) reads this lazily, at its first error: keep backtraces out of user-facing messages.
os.environ.setdefault("RUST_LIB_BACKTRACE", "0")
