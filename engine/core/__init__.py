"""The bottom layer: what every other part of Writ stands on, importing no other Writ code.

- ``errors``: ``WritError`` and its subclasses; ``reasons``: every reason code as a constant.
- ``settings``: ``Settings`` (``WRIT_*``) with every bound on untrusted input (``Limits``); ``bounds``.
- ``timeutil``: one way to write and read times.
- ``ports``: the small protocols a lower layer takes from above (the audit sink).
- ``db``: ``open_database(settings)``, the tables (``tables``) and their migrations.

    from writ.engine.core.settings import Settings
    from writ.engine.core.db import open_database

    with open_database(Settings()) as db:   # migrates the schema of an initialised data directory
        print(db.url, db.dialect)           # sqlite:////home/me/.writ/writ.sqlite sqlite
"""
