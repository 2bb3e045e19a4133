"""Writ's HTTP side: the decision API, the policy bundle, health, and the MCP gateway at ``/mcp``.

    from writ.engine.web.app import create_app
    app = create_app(settings)          # served by `writ serve` with uvicorn

The approval form (HTML pages for approvers) will live beside ``app`` in this package.
"""
