"""Writ's HTTP side: the decision API, the policy bundle, health and readiness, the MCP gateway at ``/mcp``, and the approval form.

    from writ.engine.web.app import create_app
    app = create_app(settings)          # served by `writ serve` with uvicorn

``app`` builds the app and its small routes; ``decisions`` is ``POST /v1/decisions`` (who may
ask, and what is logged); ``ready`` is ``/healthz`` and ``/readyz``; ``deps`` what routes share.
The approval form for people: ``pages`` (plans waiting, all plans, one plan, the decision form),
``auth`` (enrolment by invite, login by a signed challenge), ``api`` (``/v1/plans``), on
``views`` (what a viewer may see of a plan), ``decide`` (one decision to the workflow),
``invites`` and ``sessions`` (their tables), ``security`` (headers, CSRF, Origin), ``context``
(what the routes share), ``diffs``; the pages' one script is ``static/writ.js``.
"""
