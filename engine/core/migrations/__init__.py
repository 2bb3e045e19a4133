"""Alembic migrations of Writ's database, run in code by ``writ.engine.core.db.migrate``."""
