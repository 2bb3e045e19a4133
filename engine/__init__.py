"""Writ's engine: the policy decision point, the store, the CLI (and later the MCP gateway).

Entry points:

- ``writ.engine.policy``: ``EmbeddedEngine`` / ``OpaSidecarEngine`` and the ``Decision`` model.
- ``writ.engine.pdp.DecisionPoint``: bounds the input, decides, appends to the audit log, fails closed.
- ``writ.engine.cli``: the ``writ`` command.
"""
