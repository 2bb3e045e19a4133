"""What an upstream lists: the tools the gateway exposes, their definition digests, every page of a list.

    tools = await all_pages(lambda p: session.list_tools(params=p), lambda page: page.tools)
    listed = exposable("git", tools, trust_annotations=False, audit=audit_log.append)
    listed["git_commit"].exposed_name                    # 'git__git_commit'
    listed.refused                                       # names listed but not exposed

A plan step pins a tool's ``definition_digest``: a tool whose name, description, input schema
or annotations change after approval no longer matches the step (a rug pull shows up as
another digest). A tool whose exposed name could be misread (``writ.engine.gateway.names``),
or whose definition has no canonical form, is not exposed at all; each such refusal is logged
and audited once (``tool_refused``) until the upstream lists that tool again after fixing it.
Whether policy may trust a tool's annotations is the operator's word on this upstream's entry
in ``writ.toml`` (``trust_annotations``), carried by every ``UpstreamTool`` (ADR 0013).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import mcp_types as types

from writ.engine.core import reasons
from writ.engine.core.errors import InputError
from writ.engine.gateway.names import SEPARATOR, colliding, tool_name_problem
from writ.plans.canonical import digest

log = logging.getLogger(__name__)
T = TypeVar("T")
Audit = Callable[[str, dict[str, Any]], None]
MAX_PAGES = 1000  # a server that pages forever is cut off, not followed


def definition_digest(tool: types.Tool) -> str:
    """``sha256:`` of the RFC 8785 form of a tool's definition, as the upstream declared it.

    The definition is ``{name, description, inputSchema, annotations}`` (absent description or annotations are ``null``; annotations in wire form, unset hints left out).
    A plan step pins this digest: a tool whose definition changes after approval no longer matches.
    ``InputError`` if the definition has no canonical form (e.g. an integer beyond 2**53 in its schema).
    """
    annotations = tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True) if tool.annotations else None
    return digest({
        "name": tool.name,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "annotations": annotations,
    })


@dataclass(frozen=True)
class UpstreamTool:
    """A tool as one upstream lists it, and the name the gateway exposes it under.

        entry = manager.tool("git__git_commit")    # UpstreamTool(server="git", tool=..., digest="sha256:...")
        entry.exposed_name, entry.tool.name        # ('git__git_commit', 'git_commit')
    """

    server: str
    tool: types.Tool
    digest: str
    annotations_trusted: bool = False
    """The operator set ``trust_annotations`` on this upstream's entry in ``writ.toml``."""

    @property
    def exposed_name(self) -> str:
        """``<server>__<tool>``: the name agents see in tools/list and call."""
        return f"{self.server}{SEPARATOR}{self.tool.name}"


async def all_pages(fetch: Callable[[types.PaginatedRequestParams | None], Awaitable[Any]],
                    items: Callable[[Any], list[T]]) -> list[T]:
    """Every item of a paginated MCP list (``fetch`` one page, ``items`` of a page), following ``next_cursor``."""
    out: list[T] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        out.extend(items(page))
        cursor = page.next_cursor
        if not cursor:
            break
    return out


class ToolListing(dict[str, UpstreamTool]):
    """An upstream's exposed tools by tool name, and the names it listed that are not exposed (``refused``).

        listed = exposable("evil", tools)
        sorted(listed), sorted(listed.refused)       # (['read'], ['_shadow', 'Write', 'write'])
    """

    refused: frozenset[str] = frozenset()


def exposable(server: str, tools: list[types.Tool], *, trust_annotations: bool = False,
              audit: Audit | None = None, previous: Mapping[str, UpstreamTool] | None = None) -> ToolListing:
    """The tools of ``server`` the gateway exposes; the others are logged and audited (``tool_refused``).

    Refused: a name ``names.tool_name_problem`` refuses, every tool of a group whose names fold
    to the same form (the same name listed twice included: neither is exposed), and a definition
    with no canonical form. ``previous`` is the last listing: a refusal it already holds is not
    audited again (the gateway lists before every plan step).
    """
    refusals: dict[str, tuple[str, str]] = {}
    for name in tools_named(tools):
        problem = tool_name_problem(name)
        if problem is not None:
            refusals[name] = (reasons.TOOL_NAME_AMBIGUOUS, problem)
    for group in colliding(t.name for t in tools).values():
        for name in group:
            refusals[name] = (reasons.TOOL_NAME_AMBIGUOUS, f"tool names {sorted(set(group))} of upstream {server!r} "
                              "are the same after case folding and NFKC normalization (or listed twice): none of "
                              "them is exposed, since which one an agent meant cannot be told")
    listed = ToolListing()
    for tool in tools:
        if tool.name in refusals:
            continue
        try:
            listed[tool.name] = UpstreamTool(server, tool, definition_digest(tool), trust_annotations)
        except InputError as e:  # a tool no plan could pin is not exposed at all
            refusals[tool.name] = (e.code, e.message)
    listed.refused = frozenset(refusals)
    already: frozenset[str] = getattr(previous, "refused", frozenset())
    for name, (code, why) in sorted(refusals.items()):
        if name in already:
            continue
        log.warning("upstream %s: not exposing tool %r: %s", server, name, why)
        if audit is not None:
            audit("tool_refused", {"server": server, "tool": name, "code": code, "message": why})
    return listed


def tools_named(tools: list[types.Tool]) -> list[str]:
    """The distinct names of ``tools``, in listing order."""
    return list(dict.fromkeys(t.name for t in tools))
