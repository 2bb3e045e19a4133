"""A plain MCP pass-through proxy on the same ``mcp`` SDK as Writ: no policy, no audit, no token.

    python benchmarks/plain_proxy.py stdio -- node server.js DIR          # stdio in front of a stdio server
    python benchmarks/plain_proxy.py http --port 8123 --upstream URL      # streamable HTTP in front of a URL

The baseline column of ``gateway_overhead.py`` (issue 13): what any proxy built on this SDK
costs, so Writ's own share can be told from the SDK's. It holds one client session to the
upstream (``ClientSession`` over ``stdio_client`` or ``streamable_http_client``, as Writ's
``Upstream`` does) and serves the SDK's low-level ``Server`` with two handlers, ``tools/list``
and ``tools/call``, each forwarded unchanged. Over HTTP it serves the SDK's own
``streamable_http_app`` with uvicorn, as ``writ serve`` does.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server


def build(upstream: ClientSession) -> Server[Any]:
    """The proxy's server: tools/list and tools/call go to ``upstream`` as they are."""

    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        return await upstream.list_tools(params=params)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        return await upstream.call_tool(params.name, params.arguments or {})

    return Server("plain-proxy", on_list_tools=list_tools, on_call_tool=call_tool)


@asynccontextmanager
async def upstream_session(transport: AbstractAsyncContextManager[Any]) -> AsyncIterator[ClientSession]:
    async with transport as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        yield session


async def serve_stdio(command: list[str]) -> None:
    params = StdioServerParameters(command=command[0], args=command[1:])
    async with upstream_session(stdio_client(params)) as upstream, stdio_server() as (read, write):
        server = build(upstream)
        await server.run(read, write, server.create_initialization_options())


async def serve_http(port: int, url: str) -> None:
    import uvicorn

    async with upstream_session(streamable_http_client(url)) as upstream:
        app = build(upstream).streamable_http_app(host="127.0.0.1")
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        await server.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="transport", required=True)
    stdio = sub.add_parser("stdio", help="serve stdio; the upstream is the command after --")
    stdio.add_argument("command", nargs=argparse.REMAINDER)
    http = sub.add_parser("http", help="serve streamable HTTP at /mcp; the upstream is a URL")
    http.add_argument("--port", type=int, required=True)
    http.add_argument("--upstream", required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        if args.transport == "stdio":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not command:
                parser.error("give the upstream command after --")
            anyio.run(serve_stdio, command)
        else:
            anyio.run(serve_http, args.port, args.upstream)


if __name__ == "__main__":
    main()
