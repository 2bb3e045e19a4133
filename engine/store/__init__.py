"""Writ's database layer: ``open_store(settings)`` in ``db``, the tables in ``tables``.

    from writ.engine.settings import Settings
    from writ.engine.store.db import open_store

    store = open_store(Settings())     # creates .writ/ (0700) and migrates the schema
    print(store.url, store.dialect)    # sqlite:////home/me/.writ/writ.sqlite sqlite

New tables go in ``tables.py`` with a migration in ``migrations/versions/``.
"""
