"""The composition root: settings in, the stores, the audit log and the approval evaluator out, wired once.

    from writ.engine.wiring.services import open_services
    with open_services(settings) as s:
        s.trust.add_principal("alice", "approver")

Everything above this layer (the gateway, the web app, the CLI) gets its stores from here;
nothing below it knows how they are put together.
"""
