"""The diff a plan step's file write makes, against the content the gateway captured when the plan was proposed.

    view = step_diff(step, captured)        # DiffView, or None for a step that writes no file
    view.available, view.note               # False, 'no diff: the file could not be read (read denied)'
    [(line.kind, line.text) for line in view.lines]    # [('file', '--- a/srv/notes.txt'), ('del', '-old'), ...]

The new content comes from the step itself: ``write_file``'s pinned ``content``, or
``edit_file``'s ``edits`` (each ``oldText`` replaced by its ``newText``, as the filesystem server
does) applied to the captured text. When there is no diff the note says why, from the captured
row's status and reason, or because the plan pins only a digest of the content.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

from writ.plans.contents import CapturedContent
from writ.plans.models import PlanStep

__all__ = ["DiffLine", "DiffView", "step_diff"]

WRITE_TOOLS = ("write_file", "edit_file")
LineKind = Literal["file", "hunk", "add", "del", "ctx"]


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff, with its kind (for the page's colours and screen-reader labels)."""

    kind: LineKind
    text: str


@dataclass(frozen=True)
class DiffView:
    """A step's diff, or why there is none (``note``)."""

    available: bool
    note: str
    lines: tuple[DiffLine, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"available": self.available, "note": self.note, "diff": "\n".join(line.text for line in self.lines)}


def _kind(line: str) -> LineKind:
    if line.startswith(("---", "+++")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    return {"+": "add", "-": "del"}.get(line[:1], "ctx")  # type: ignore[return-value]


def _new_content(step: PlanStep, old: str) -> tuple[str | None, str]:
    """The step's new content and an empty note, or None and why it cannot be known from the plan."""
    if step.tool == "edit_file":
        edits = step.args.get("edits")
        if not isinstance(edits, list):
            return None, "no diff: the plan does not pin this edit's changes (edits)"
        text = old
        for i, edit in enumerate(edits):
            old_text = edit.get("oldText") if isinstance(edit, dict) else None
            new_text = edit.get("newText") if isinstance(edit, dict) else None
            if not isinstance(old_text, str) or not isinstance(new_text, str):
                return None, f"no diff: edit {i} has no oldText and newText"
            if old_text not in text:
                return None, f"no diff: edit {i}'s oldText is not in the content captured when the plan was proposed"
            text = text.replace(old_text, new_text, 1)
        return text, ""
    content = step.args.get("content")
    if isinstance(content, str):
        return content, ""
    if any(c.arg == "content" for c in step.constraints):
        return None, "no diff: the plan pins only a digest of the new content (a constraint), not the content"
    return None, "no diff: the plan does not pin the new content"


def step_diff(step: PlanStep, captured: CapturedContent | None) -> DiffView | None:
    """The step's diff against ``captured``; None when the step writes no file and nothing was captured for it."""
    if captured is None:
        if step.tool not in WRITE_TOOLS:
            return None
        return DiffView(False, "no diff: nothing was captured when this plan was proposed (the gateway captures "
                        "the current content when a planner proposes through writ_plan_propose)")
    if captured.status == "not_a_file_write":
        return DiffView(False, f"no diff: this step writes no single file's content ({captured.reason or 'not a file write'})")
    if captured.status == "unavailable":
        return DiffView(False, f"no diff: the content could not be captured ({captured.reason or 'unavailable'})")
    old = captured.content or "" if captured.status == "captured" else ""
    new, note = _new_content(step, old)
    if new is None:
        return DiffView(False, note)
    path = captured.path or str(step.args.get("path", "file"))
    before = f"a{path}" if path.startswith("/") else f"a/{path}"
    after = f"b{path}" if path.startswith("/") else f"b/{path}"
    if captured.status == "absent":
        before = "/dev/null"
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=before, tofile=after, lineterm=""))
    if not lines:
        return DiffView(True, "no change: the new content is the content captured when the plan was proposed")
    what = "a new file" if captured.status == "absent" else "against the content when the plan was proposed"
    return DiffView(True, f"unified diff, {what}", tuple(DiffLine(_kind(line), line) for line in lines))
