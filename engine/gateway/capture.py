"""What a proposed plan's file writes replace, read when the planner proposes: the base of the approval page's diffs.

    capture = ContentCapture(gateway)                 # one per gateway session
    rows = await capture.plan(record.id, plan)        # kept in plan_contents (writ.plans.contents); never raises

For each step of a plan just stored (``Governance.propose``, after its workflow started):

- a ``write_file`` / ``edit_file`` call with a fixed ``path`` argument: the file is read through
  its upstream's own read tool (``read_text_file``, else ``read_file``) as a ``tools/call`` of the
  planner's session (``ToolCalls.call_tool``): decided by policy and audited (``decision``,
  ``tool_result``) like any read the planner makes. Its text is ``captured``; a missing file is
  ``absent`` (a new file); a read that is denied, fails, or returns something else than text is
  ``unavailable`` with the reason;
- such a call whose path is chosen at run time (a ``path_glob`` or ``one_of`` constraint):
  ``unavailable``, naming the root and glob;
- any other write (a git commit, a move, a new directory): ``not_a_file_write``.

A capture that fails (the store, the audit log) is logged and leaves the plan as it is: the
plan is stored already, the page then says no diff was captured. A plan whose contents are
stored already (proposed again) is not read again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError

from writ.engine.core.errors import WritError
from writ.engine.gateway.config import SEPARATOR
from writ.engine.gateway.results import META
from writ.plans.contents import CapturedContent, ContentStatus, ContentStore
from writ.plans.models import OneOf, PathGlob, Plan, PlanStep

if TYPE_CHECKING:
    from writ.engine.gateway.server import Gateway

__all__ = ["FILE_WRITE_TOOLS", "READ_TOOLS", "ContentCapture", "Target", "read_outcome", "read_tool", "target_of"]

log = logging.getLogger(__name__)

FILE_WRITE_TOOLS: Final = frozenset({"write_file", "edit_file"})
"""Tools that replace one file's content, named by their ``path`` argument (the filesystem server's)."""
READ_TOOLS: Final = ("read_text_file", "read_file")
"""An upstream's own read tool, in order of preference; it takes ``{"path": ...}``."""
PATH_ARG: Final = "path"
REASON_TEXT: Final = 300
"""How much of an upstream's or the gateway's message a reason quotes."""

# How the filesystem server says the file is not there (a new file), on Node: ENOENT, or a missing parent.
_ABSENT_MARKERS: Final = ("ENOENT", "no such file or directory", "Parent directory does not exist")
ABSENT_REASON: Final = "the file does not exist yet: the step makes a new file"


@dataclass(frozen=True)
class Target:
    """What capture does for one step: read ``path`` (``status`` None), or keep ``status`` and ``reason``.

        target_of(step)     # Target(path="/srv/docs/a.md", status=None, reason="")
    """

    path: str | None
    status: ContentStatus | None
    reason: str = ""


def target_of(step: PlanStep) -> Target:
    """Whether the step writes one file named in its arguments, and if not, what the page should say."""
    if step.tool not in FILE_WRITE_TOOLS:
        if step.tool == "git_commit":
            return Target(None, "not_a_file_write", "a git commit: it records what is staged in the repository; "
                          "see the staged diff there (git diff --staged)")
        return Target(None, "not_a_file_write", f"{step.server}{SEPARATOR}{step.tool} does not replace one "
                      "file's content: there is no diff to show")
    for c in step.constraints:
        if c.arg != PATH_ARG:
            continue
        if isinstance(c, PathGlob):
            return Target(None, "unavailable", f"the path is chosen at run time within {c.root.rstrip('/')}/{c.glob}")
        if isinstance(c, OneOf):
            values = ", ".join(str(v) for v in c.values)
            return Target(None, "unavailable", f"the path is chosen at run time among: {values}"[:REASON_TEXT])
    path = step.args.get(PATH_ARG)
    if not isinstance(path, str) or not path:
        return Target(None, "unavailable", f"the step has no {PATH_ARG!r} argument naming the file")
    return Target(path, None)


def read_tool(tools: Iterable[str]) -> str | None:
    """The read tool among an upstream's tool names (``READ_TOOLS`` order), or None."""
    names = set(tools)
    return next((t for t in READ_TOOLS if t in names), None)


def _text(result: types.CallToolResult) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, types.TextContent)).strip()


def _quote(message: str) -> str:
    return message if len(message) <= REASON_TEXT else message[: REASON_TEXT - 1] + "…"


def read_outcome(result: types.CallToolResult) -> tuple[ContentStatus, str, str | None]:
    """``(status, reason, text)`` of the read's result, as the gateway returned it to this session.

    ``captured`` with the file's text; ``absent`` when the upstream says the file is not there;
    ``unavailable`` with why for a denial (the gateway's ``writ/decision`` says allow false), a
    call the gateway stopped (``error [code]``), any other upstream error, or non-text content.
    """
    decision: Mapping[str, Any] = (result.meta or {}).get(f"{META}decision") or {}
    message = _text(result)
    if decision and not decision.get("allow", False):
        return "unavailable", _quote(f"the read was denied by policy: {message}"), None
    if decision.get("error"):
        return "unavailable", _quote(f"the read failed: {message}"), None
    if result.is_error:
        if any(marker in message for marker in _ABSENT_MARKERS):
            return "absent", ABSENT_REASON, None
        return "unavailable", _quote(f"the upstream refused the read: {message}"), None
    structured = result.structured_content
    if isinstance(structured, dict) and isinstance(structured.get("content"), str):
        return "captured", "", str(structured["content"])
    other = sorted({b.type for b in result.content if not isinstance(b, types.TextContent)})
    if other:
        return "unavailable", f"binary content: the upstream returned {', '.join(other)} content", None
    return "captured", "", "".join(b.text for b in result.content if isinstance(b, types.TextContent))


class ContentCapture:
    """Reads and keeps what each step of a proposed plan replaces, as the proposing session (see the module doc).

        rows = await ContentCapture(gateway).plan(plan_id, plan)     # [CapturedContent(step_index=0, ...), ...]
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def store(self) -> ContentStore:
        stores = self.gateway.stores
        return ContentStore(stores.store, audit=stores.audit, max_bytes=stores.plans.limits.max_args_bytes)

    async def plan(self, plan_id: str, plan: Plan) -> list[CapturedContent]:
        """The plan's rows: read now and stored, or those stored before; empty if the capture failed (logged)."""
        try:
            store = self.store()
            before = store.for_plan(plan_id)
            if before:  # proposed again: what approvers see stays what was read the first time
                return before
            rows = [await self.step(i, s) for i, s in enumerate(plan.steps)]
            store.put(plan_id, rows)
            return store.for_plan(plan_id)
        except anyio.get_cancelled_exc_class():
            raise
        except WritError as e:
            log.warning("the contents of plan %s were not captured (%s): %s; its approval page shows no diff",
                        plan_id, e.code, e.message)
        except Exception:
            log.exception("the contents of plan %s were not captured; its approval page shows no diff", plan_id)
        return []

    async def step(self, index: int, step: PlanStep) -> CapturedContent:
        """One step's row: what its file holds now, or why there is none."""
        limit = self.gateway.stores.plans.limits.max_args_bytes

        def without(status: ContentStatus, reason: str, path: str | None) -> CapturedContent:
            return CapturedContent.without(index, step.server, step.tool, path, status, reason)

        target = target_of(step)
        if target.status is not None:
            return without(target.status, target.reason, target.path)
        path = target.path
        upstream = self.gateway.upstreams.upstreams.get(step.server)
        tool = read_tool(t.tool.name for t in upstream.tools.values()) if upstream is not None else None
        if tool is None:
            return without("unavailable", f"upstream {step.server!r} has no read tool ({' or '.join(READ_TOOLS)}) "
                           "to read the file with", path)
        name = f"{step.server}{SEPARATOR}{tool}"
        try:
            result = await self.gateway.calls.call_tool(None, types.CallToolRequestParams(
                name=name, arguments={PATH_ARG: path}))
        except MCPError as e:  # the upstream's own JSON-RPC error, or the read tool vanished
            return without("unavailable", _quote(f"the read failed: {e.message}"), path)
        status, reason, text = read_outcome(result)
        if status == "captured" and text is not None:
            return CapturedContent.of_text(index, step.server, step.tool, path, text, max_bytes=limit)
        return without(status, reason, path)
