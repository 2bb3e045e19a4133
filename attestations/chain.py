"""The audit log's hash chain: how an entry is hashed, and the walk that names the first bad entry. No IO.

    report = walk_chain(rows_in_seq_order, expected_head=None)
    report.ok, report.first_bad_seq, report.problem       # False 42 AuditProblem.EDITED

Entry ``seq`` hashes ``{seq, created_at, kind, payload, prev_hash}`` in RFC 8785 form
(``entry_hash``); its ``prev_hash`` is the ``entry_hash`` of entry ``seq - 1``, or
``GENESIS_HASH`` for entry 1. ``writ.attestations.audit.AuditLog`` writes and reads the rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import rfc8785

from writ.engine.core.tables import GENESIS_HASH, AuditLogRow

__all__ = ["AuditProblem", "AuditReport", "compute_entry_hash", "entry_hash_of_text", "parse_payload", "walk_chain"]


class AuditProblem(StrEnum):
    """What ``AuditLog.verify`` found wrong at the first bad entry.

        report = log.verify(expected_head=checkpoint)
        report.problem, report.first_bad_seq      # AuditProblem.EDITED 42
    """

    EDITED = "edited"  # the entry's contents no longer match its hash
    DELETED = "deleted"  # an entry is missing: a gap in seq
    REORDERED = "reordered"  # an intact entry sits at the wrong place in the chain
    CHAIN_BROKEN = "chain_broken"  # the entry does not link to the one before it
    TRUNCATED = "truncated"  # the expected head is not in the log: the tail was cut


@dataclass(frozen=True)
class AuditReport:
    """What ``verify`` found. ``entries`` and ``head`` cover the entries that verified.

    ``first_bad_seq_max``: when only a signed checkpoint's root shows the damage, the first bad
    entry is somewhere from ``first_bad_seq`` to this (None: ``first_bad_seq`` is exact).
    ``checkpoints``: how many signed checkpoints the entries reproduce, the largest of ``checkpoint_size``.
    """

    ok: bool
    entries: int
    head: str
    first_bad_seq: int | None = None
    problem: AuditProblem | None = None
    message: str = ""
    first_bad_seq_max: int | None = None
    checkpoints: int = 0
    checkpoint_size: int = 0


def compute_entry_hash(seq: int, created_at: str, kind: str, payload: Any, prev_hash: str) -> str:
    """``sha256:`` + hex SHA-256 of the RFC 8785 JSON of the entry's five fields."""
    doc = {
        "seq": seq,
        "created_at": created_at,
        "kind": kind,
        "payload": payload,
        "prev_hash": prev_hash,
    }
    return "sha256:" + hashlib.sha256(rfc8785.dumps(doc)).hexdigest()


# A created_at, kind or prev_hash RFC 8785 writes as is between quotes: printable ASCII, no quote or backslash.
_PLAIN = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_MAX_SAFE = 2**53 - 1


def entry_hash_of_text(seq: int, created_at: str, kind: str, payload_text: str, prev_hash: str) -> str:
    """``compute_entry_hash`` of an entry whose payload is already RFC 8785 text: no second canonicalization.

    ``payload_text`` must be ``rfc8785.dumps(payload)`` (``AuditLog.append`` makes it so). The
    entry's RFC 8785 form is then built by concatenation, keys in their sorted order, since the
    other four fields are fixed-format ASCII; a field that is not (or a ``seq`` beyond 2**53) takes
    the full path. ``test_audit_hash`` proves both give the same bytes.
    """
    if (type(seq) is int and 0 <= seq <= _MAX_SAFE and _PLAIN.fullmatch(created_at)
            and _PLAIN.fullmatch(kind) and _PLAIN.fullmatch(prev_hash)):
        doc = (f'{{"created_at":"{created_at}","kind":"{kind}","payload":{payload_text},'
               f'"prev_hash":"{prev_hash}","seq":{seq}}}')
        return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()
    return compute_entry_hash(seq, created_at, kind, parse_payload(payload_text), prev_hash)


def parse_payload(text: str) -> Any:
    """Parse stored payload JSON as RFC 8785 reads numbers: integers beyond 2**53 are doubles."""
    return json.loads(text, parse_int=_parse_int)


def _parse_int(digits: str) -> int | float:
    value = int(digits)
    return value if abs(value) < 2**53 else float(value)


def walk_chain(
    rows: Iterable[AuditLogRow],
    *,
    expected_head: str | None = None,
    find_seq: Callable[[str], int | None] = lambda _: None,
    on_verified: Callable[[AuditLogRow], None] = lambda _: None,
) -> AuditReport:
    """Check rows given in seq order (no IO but ``find_seq``: the seq of the entry with a hash).

    ``on_verified`` sees each row that passed, in order (the Merkle tree check follows them).
    """
    count, prev = 0, GENESIS_HASH
    seen_head = expected_head is None or expected_head == GENESIS_HASH
    for row in rows:
        bad = _check_entry(row, count + 1, prev, find_seq)
        if bad is not None:
            problem, message = bad
            return AuditReport(
                False,
                count,
                prev,
                count + 1,
                problem,
                f"audit log bad at entry {count + 1} ({problem.value}): {message}",
            )
        count, prev = count + 1, row.entry_hash
        on_verified(row)
        seen_head = seen_head or prev == expected_head
    if not seen_head:
        return AuditReport(
            False,
            count,
            prev,
            count + 1,
            AuditProblem.TRUNCATED,
            f"audit log bad at entry {count + 1} (truncated): the log ends at entry {count} "
            f"(head {prev}) and does not contain the expected head {expected_head}",
        )
    return AuditReport(True, count, prev, message=f"audit log OK: {count} entries, head {prev}")


def _check_entry(
    row: AuditLogRow, seq: int, prev: str, find_seq: Callable[[str], int | None]
) -> tuple[AuditProblem, str] | None:
    """Why entry ``seq`` (stored as ``row``, following hash ``prev``) is bad, or None."""
    if row.seq != seq:
        missing = f"entry {seq} is" if row.seq == seq + 1 else f"entries {seq} to {row.seq - 1} are"
        where = (
            f"entry {row.seq} follows entry {seq - 1}"
            if seq > 1
            else f"the log starts at {row.seq}"
        )
        return AuditProblem.DELETED, f"{missing} missing: {where}"
    try:
        payload = parse_payload(row.payload)
        canonical = rfc8785.dumps(payload).decode() == row.payload
    except (ValueError, rfc8785.CanonicalizationError):
        return AuditProblem.EDITED, "its payload is not valid JSON"
    if not canonical or not isinstance(payload, dict):
        return AuditProblem.EDITED, "its payload is not a JSON object in RFC 8785 form"
    try:
        computed = compute_entry_hash(row.seq, row.created_at, row.kind, payload, row.prev_hash)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):  # SQLite stores any type
        return AuditProblem.EDITED, "a field holds a value of the wrong type"
    if computed != row.entry_hash:
        other = find_seq(row.prev_hash) if row.prev_hash != prev else None
        if other is not None:
            return AuditProblem.REORDERED, (
                f"it follows the entry now at seq {other} (prev_hash {row.prev_hash}), not entry {seq - 1}"
            )
        return (
            AuditProblem.EDITED,
            f"its contents hash to {computed}, its stored entry_hash is {row.entry_hash}",
        )
    if row.prev_hash != prev:
        return AuditProblem.CHAIN_BROKEN, (
            f"its prev_hash is {row.prev_hash}, entry {seq - 1} hashes to {prev} "
            "(one of the two was rewritten with a recomputed hash)"
        )
    return None
