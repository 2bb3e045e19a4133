"""What an upstream lists: its tools with their definition digests, and every page of a paginated list.

    entry = UpstreamTool("git", tool, definition_digest(tool))
    entry.exposed_name                                   # 'git__git_commit'
    tools = await all_pages(lambda p: session.list_tools(params=p), lambda page: page.tools)

A plan step pins a tool's ``definition_digest``: a tool whose name, description, input schema
or annotations change after approval no longer matches the step (a rug pull shows up as
another digest).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import mcp_types as types

from writ.engine.gateway.config import SEPARATOR
from writ.plans.canonical import digest

T = TypeVar("T")
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
