"""What a plan's file writes replace: the content each file had when the plan was proposed (for the diffs).

    contents = ContentStore(db, audit=AuditLog(db))
    contents.put(plan_id, [
        CapturedContent.of_text(0, "fs", "write_file", "/srv/docs/a.md", "old text\\n", max_bytes=262_144),
        CapturedContent.without(1, "fs", "write_file", "/srv/docs/new.md", "absent", "the file does not exist yet"),
    ])                                        # the rows it stored (none if the plan had its contents already)
    for c in contents.for_plan(plan_id):      # in step order
        c.step_index, c.status, c.reason, c.content     # 0, 'captured', None, 'old text\\n'

The gateway reads the content through the upstream's own read tool when the planner proposes
(``writ.engine.gateway.capture``); this module only checks and keeps it. A row's ``status``:

- ``captured``: ``content`` is the file's UTF-8 text then, ``content_sha256`` its ``sha256:<hex>``;
- ``absent``: the file did not exist (the step makes a new file: the diff is against nothing);
- ``unavailable``: no diff, ``reason`` says why (no read tool, read denied, upstream error, binary,
  too large, a path chosen at run time);
- ``not_a_file_write``: the step changes something other than one file's content (a git commit).

Content is bounded: text longer than ``max_bytes`` UTF-8 bytes (``limits.plans.max_args_bytes``)
is kept as ``unavailable`` "too large", and text that is not plain UTF-8 (a NUL, or the U+FFFD a
reader puts for bytes it could not decode) as ``unavailable`` "binary content". The rows of a plan
are written once: ``put`` adds only steps not stored yet, and each ``put`` that stores rows is one
``plan_contents`` audit entry with each step's status and ``content_sha256``, so a row changed
in the database later no longer matches the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from writ.engine.core import reasons
from writ.engine.core.db import Database, db_errors
from writ.engine.core.errors import InputError, NotFoundError
from writ.engine.core.ports import AuditSink
from writ.engine.core.settings import PlanLimits
from writ.engine.core.tables import CONTENT_STATUSES, PlanContentRow, PlanRow
from writ.engine.core.timeutil import aware, db_time, from_db_time, utc_now

__all__ = ["CapturedContent", "ContentStatus", "ContentStore", "text_problem"]

ContentStatus = Literal["captured", "absent", "unavailable", "not_a_file_write"]
REASON_CHARS: Final = 1000
"""The longest ``reason`` kept (an upstream's error text can be long); the rest is cut with an ellipsis."""


def _sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_problem(text: str, max_bytes: int) -> str | None:
    """Why ``text`` cannot be kept for a diff (too large, binary), or None when it can."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        return f"too large: {size} bytes, more than limits.plans.max_args_bytes ({max_bytes})"
    if "\x00" in text or "\ufffd" in text:
        return "binary content: the file is not UTF-8 text"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "binary content: the file is not UTF-8 text"
    return None


@dataclass(frozen=True)
class CapturedContent:
    """One step's row: the content its file write replaces, or why there is none (see the module docstring).

        CapturedContent.of_text(0, "fs", "write_file", "/srv/a.md", text, max_bytes=limits.max_args_bytes)
        CapturedContent.without(2, "git", "git_commit", None, "not_a_file_write", "a git commit: ...")

    Valid once built: ``content`` and ``content_sha256`` (its digest) exactly when ``captured``,
    a ``reason`` otherwise.
    """

    step_index: int
    server: str
    tool: str
    path: str | None
    status: ContentStatus
    reason: str | None
    content: str | None
    content_sha256: str | None
    captured_at: datetime

    def __post_init__(self) -> None:
        aware(self.captured_at, "captured_at")
        if self.step_index < 0 or not self.server or not self.tool:
            raise InputError(f"step {self.step_index}: a content row needs a step index >= 0, a server and a tool",
                             code=reasons.INPUT_INVALID)
        if self.status not in CONTENT_STATUSES:
            raise InputError(f"step {self.step_index}: status {self.status!r} is not one of "
                             f"{', '.join(CONTENT_STATUSES)}", code=reasons.INPUT_INVALID)
        if self.status == "captured":
            if self.content is None or self.content_sha256 != _sha256(self.content):
                raise InputError(f"step {self.step_index}: captured content needs its text and that text's sha256",
                                 code=reasons.INPUT_INVALID)
        elif self.content is not None or self.content_sha256 is not None or not self.reason:
            raise InputError(f"step {self.step_index}: a {self.status} row has a reason and no content",
                             code=reasons.INPUT_INVALID)

    @classmethod
    def of_text(cls, step_index: int, server: str, tool: str, path: str | None, text: str, *, max_bytes: int,
                at: datetime | None = None) -> CapturedContent:
        """``captured`` with ``text``; ``unavailable`` instead when it is too large or not UTF-8 text."""
        problem = text_problem(text, max_bytes)
        if problem is not None:
            return cls.without(step_index, server, tool, path, "unavailable", problem, at=at)
        return cls(step_index, server, tool, path, "captured", None, text, _sha256(text), at or utc_now())

    @classmethod
    def without(cls, step_index: int, server: str, tool: str, path: str | None, status: ContentStatus,
                reason: str, *, at: datetime | None = None) -> CapturedContent:
        """A row with no content (``absent``, ``unavailable``, ``not_a_file_write``) and why."""
        if len(reason) > REASON_CHARS:
            reason = reason[: REASON_CHARS - 1] + "…"
        return cls(step_index, server, tool, path, status, reason, None, None, at or utc_now())

    def bounded(self, max_bytes: int) -> CapturedContent:
        """The row as it is, or ``unavailable`` when its content breaks the bounds (see ``text_problem``)."""
        problem = None if self.content is None else text_problem(self.content, max_bytes)
        if problem is None:
            return self
        return CapturedContent.without(self.step_index, self.server, self.tool, self.path, "unavailable", problem,
                                       at=self.captured_at)

    def summary(self) -> dict[str, object]:
        """What the audit log records of the row: everything but the content itself."""
        return {"step_index": self.step_index, "server": self.server, "tool": self.tool, "path": self.path,
                "status": self.status, "reason": self.reason, "content_sha256": self.content_sha256}


def _row(plan_id: str, c: CapturedContent) -> PlanContentRow:
    return PlanContentRow(plan_id=plan_id, step_index=c.step_index, server=c.server, tool=c.tool, path=c.path,
                          status=c.status, reason=c.reason, content=c.content, content_sha256=c.content_sha256,
                          captured_at=db_time(c.captured_at))


def _record(row: PlanContentRow) -> CapturedContent:
    return CapturedContent(step_index=row.step_index, server=row.server, tool=row.tool, path=row.path,
                           status=row.status,  # type: ignore[arg-type]  # the CHECK constraint holds it to the four
                           reason=row.reason, content=row.content, content_sha256=row.content_sha256,
                           captured_at=from_db_time(row.captured_at))


class ContentStore:
    """The ``plan_contents`` rows: written once per (plan, step) when a plan is proposed, read by the approval page.

        ContentStore(db, audit=AuditLog(db)).for_plan(plan_id)     # [CapturedContent(step_index=0, ...), ...]

    ``max_bytes`` bounds each content (default: ``PlanLimits().max_args_bytes``; the gateway passes
    its ``limits.plans.max_args_bytes``).
    """

    def __init__(self, store: Database, *, audit: AuditSink, max_bytes: int | None = None) -> None:
        self._store = store
        self._audit = audit
        self.max_bytes = max_bytes if max_bytes is not None else PlanLimits().max_args_bytes

    def for_plan(self, plan_id: str) -> list[CapturedContent]:
        """The plan's rows in step order; empty when nothing was captured (or there is no such plan)."""
        query = (select(PlanContentRow).where(col(PlanContentRow.plan_id) == plan_id)
                 .order_by(col(PlanContentRow.step_index)))
        with db_errors(self._store, f"read the captured contents of plan {plan_id}"), self._store.session() as s:
            return [_record(row) for row in s.exec(query)]

    def put(self, plan_id: str, items: Iterable[CapturedContent]) -> list[CapturedContent]:
        """Store the rows of steps the plan has none for yet; the rows stored (audited as one entry).

        A second ``put`` for the same steps, by this process or another, stores nothing and audits
        nothing. ``NotFoundError`` (``plan_not_found``) for a plan that is not stored; ``InputError``
        for two rows of one step.
        """
        wanted = [c.bounded(self.max_bytes) for c in items]
        indexes = [c.step_index for c in wanted]
        if len(set(indexes)) != len(indexes):
            raise InputError(f"plan {plan_id}: two content rows for one step ({sorted(indexes)})",
                             code=reasons.INPUT_INVALID)
        if not wanted:
            return []
        with db_errors(self._store, f"store the captured contents of plan {plan_id}"), \
                self._store.session(write=True) as session:
            if session.get(PlanRow, plan_id) is None:
                raise NotFoundError(f"no plan {plan_id} is stored: its contents cannot be kept",
                                    code=reasons.PLAN_NOT_FOUND)
            have = set(session.exec(select(PlanContentRow.step_index)
                                    .where(col(PlanContentRow.plan_id) == plan_id)))
            new = [c for c in wanted if c.step_index not in have]
            if not new:
                return []
            session.add_all([_row(plan_id, c) for c in new])
            try:
                session.commit()
            except IntegrityError:  # another process stored them between our read and our write: theirs stand
                session.rollback()
                return []
        self._audit.append("plan_contents", {"plan_id": plan_id, "steps": [c.summary() for c in new]})
        return new
