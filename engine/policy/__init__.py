"""Rego policy evaluation: one decision interface, two engines, and the decision point that uses them.

    from writ.engine.policy.embedded import EmbeddedEngine
    engine = EmbeddedEngine(Path("policies"))
    decision = engine.decide(policy_input)      # never raises: any failure is a deny

``pdp.DecisionPoint`` bounds the input, decides, appends the decision to the audit log, and fails closed.
"""
