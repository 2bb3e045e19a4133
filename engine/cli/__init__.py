"""The ``writ`` command: one module per command group, assembled in ``main``.

    $ writ init && writ principals add plan-bot --role planner

Each command imports the heavy layers (MCP SDK, FastAPI, the database) only when it runs,
so ``writ --help`` and ``writ --version`` start fast.
"""
