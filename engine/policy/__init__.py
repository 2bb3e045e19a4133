"""Rego policy evaluation: one decision interface, two engines.

    from writ.engine.policy.embedded import EmbeddedEngine
    engine = EmbeddedEngine.from_dir(Path("policies"))
    decision = engine.decide(policy_input)      # never raises: any failure is a deny
"""
