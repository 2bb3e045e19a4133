"""One Alembic script per schema revision (``0001_audit_log`` ...), applied in order."""
