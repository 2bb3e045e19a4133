"""Builders for realistic policy inputs (tests only)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def call_input(
    *,
    principal: str = "exec-bot",
    role: str = "executor",
    server: str = "git",
    tool: str = "git_status",
    args: dict[str, Any] | None = None,
    plan: dict[str, Any] | None = None,
    locked: bool = False,
    annotations: dict[str, Any] | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """A policy input document as the gateway builds it (JSON-shaped).

    ``method`` is left out unless given, as callers older than the field send it. For a
    method other than tools/call, ``tool`` is the resource URI, prompt name or method, and
    the gateway sends no definition digest and (unless ``args`` says otherwise) no arguments.
    """
    tool_call = method in (None, "tools/call")
    doc: dict[str, Any] = {
        "principal": principal,
        "role": role,
        "groups": [],
        "session": {"id": "s-1", "locked": locked},
    }
    if method is not None:
        doc["method"] = method
    doc |= {
        "tool": {"server": server, "name": tool, "annotations": annotations or {},
                 "definition_digest": "sha256:" + "ab" * 32 if tool_call else None},
        "args": args if args is not None else ({"repo_path": "/srv/repo"} if tool_call else {}),
        "plan": plan,
        "now": iso(NOW),
    }
    return doc


def plan_context(*, state: str = "executing", planner: str = "plan-bot", step_matches: bool = True,
                 expires_in: timedelta = timedelta(hours=1)) -> dict[str, Any]:
    return {"id": "sha256:" + "cd" * 32, "state": state, "planner": planner,
            "expires_at": iso(NOW + expires_in), "step_matches": step_matches, "step_index": 0}
