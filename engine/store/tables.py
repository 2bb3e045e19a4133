"""Writ's tables, as SQLModel classes. The schema itself is made by the migrations in ``migrations/``.

    from sqlmodel import col, select
    from writ.engine.store.tables import AuditLogRow

    with store.session() as session:
        last = session.exec(select(AuditLogRow).order_by(col(AuditLogRow.seq).desc())).first()

Rows of ``audit_log`` are written only by ``writ.attestations.audit.AuditLog.append``;
its constraints keep the chain linear: ``seq`` and ``prev_hash`` are unique (two
entries can never claim the same predecessor), ``seq`` starts at 1, and only
entry 1 links to the genesis hash.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

GENESIS_HASH = "sha256:" + "0" * 64
"""The ``prev_hash`` of the first audit entry."""


class AuditLogRow(SQLModel, table=True):
    """One stored audit entry, exactly as hashed (see ``writ.attestations.audit``)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
        UniqueConstraint("entry_hash", name="uq_audit_log_entry_hash"),
        CheckConstraint("seq >= 1", name="ck_audit_log_seq_positive"),
        CheckConstraint(
            f"(seq = 1 AND prev_hash = '{GENESIS_HASH}') OR (seq > 1 AND prev_hash <> '{GENESIS_HASH}')",
            name="ck_audit_log_genesis",
        ),
    )

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))
    kind: str = Field(sa_column=Column(String(64), nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(sa_column=Column(String(71), nullable=False))
    entry_hash: str = Field(sa_column=Column(String(71), nullable=False))
