"""Writ's HTTP side: the decision API, the policy bundle, health and readiness, and the MCP gateway at ``/mcp``.

    from writ.engine.web.app import create_app
    app = create_app(settings)          # served by `writ serve` with uvicorn

``app`` builds the app and its small routes; ``decisions`` is ``POST /v1/decisions`` (who may
ask, and what is logged); ``ready`` is ``/healthz`` and ``/readyz``; ``deps`` what routes share.
The approval form (HTML pages for approvers) will live beside ``app`` in this package.
"""
