"""Writ's engine: the policy decision point, the MCP gateway, the store, the CLI.

Entry points:

- ``writ.engine.policy``: ``EmbeddedEngine`` / ``OpaSidecarEngine`` and the ``Decision`` model.
- ``writ.engine.policy.pdp.DecisionPoint``: bounds the input, decides, appends to the audit log, fails closed.
- ``writ.engine.cli.main``: the ``writ`` command.
"""
