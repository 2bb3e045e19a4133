"""The stdio transport of ``writ mcp``: the SDK's, plus an answer to every line it cannot read.

    async with stdio_transport(audit_log.append, session_id="s-1f0c...", principal="exec-bot") as (read, write):
        await server.run(read, write, server.create_initialization_options())

The SDK's stdio server hands a line that is not JSON it can read (nested deeper than its
parser goes, a lone surrogate such as ``\\ud800``, cut off) or not a JSON-RPC message to the
server as an exception, and the server drops it: the client would wait for an answer forever
and nothing would record it. Here each such line gets a JSON-RPC error at once, as the HTTP
transport answers a body it cannot parse: -32700 (parse error, id null) with the code
``message_not_json``, or -32600 (invalid request, with the message's id when it has one) with
``message_invalid``. Each is audited as ``message_refused``, and the next line is read as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from writ.engine.core import reasons

__all__ = ["Refusal", "refusal", "stdio_transport"]


@dataclass(frozen=True)
class Refusal:
    """A line the gateway could not take as a JSON-RPC message, and the error it answered.

        Refusal(code="message_not_json", jsonrpc_code=-32700, message="Parse error: Invalid JSON: ...",
                request_id=None, line_sha256="sha256:...")
    """

    code: str  # reasons.MESSAGE_NOT_JSON or reasons.MESSAGE_INVALID
    jsonrpc_code: int  # -32700 or -32600
    message: str
    request_id: str | int | None = None  # the message's id, when it was JSON with one
    line_sha256: str | None = None  # of the line as read (without its newline), when the parser kept it

    def reply(self) -> SessionMessage:
        """The JSON-RPC error the client gets."""
        error = types.ErrorData(code=self.jsonrpc_code, message=self.message, data={"code": self.code})
        return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=self.request_id, error=error))

    def payload(self, session_id: str, principal: str) -> dict[str, Any]:
        """The ``message_refused`` audit entry's payload."""
        return {"session_id": session_id, "principal": principal, "transport": "stdio", "code": self.code,
                "jsonrpc_code": self.jsonrpc_code, "message": self.message[:300], "request_id": self.request_id,
                "message_sha256": self.line_sha256}


def refusal(error: Exception) -> Refusal:
    """What to answer for a line the SDK's reader failed on (``error``: what it raised)."""
    details = error.errors(include_url=False) if isinstance(error, ValidationError) else []
    if not details or any(d["type"] == "json_invalid" for d in details):
        raw = next((d.get("input") for d in details if isinstance(d.get("input"), str)), None)
        digest = None if raw is None else "sha256:" + hashlib.sha256(
            raw.removesuffix("\n").encode("utf-8", "surrogatepass")).hexdigest()
        why = details[0]["msg"] if details else f"{type(error).__name__}"
        return Refusal(reasons.MESSAGE_NOT_JSON, types.PARSE_ERROR, f"Parse error: {why}"[:500], None, digest)
    return Refusal(reasons.MESSAGE_INVALID, types.INVALID_REQUEST,
                   "Invalid request: the line is JSON but not a JSON-RPC request, notification or response",
                   _request_id(details))


def _request_id(details: list[Any]) -> str | int | None:
    """The id of a JSON message that is no JSON-RPC message, when its top level has a usable one."""
    for d in details:
        top = d.get("input")
        if len(d.get("loc", ())) <= 2 and isinstance(top, dict) and "jsonrpc" in top:
            found = top.get("id")
            if isinstance(found, str) or (isinstance(found, int) and not isinstance(found, bool)):
                return found
    return None


@asynccontextmanager
async def stdio_transport(audit: Callable[[str, dict[str, Any]], None], *, session_id: str, principal: str
                          ) -> AsyncIterator[tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]]:
    """The SDK's ``stdio_server`` streams, with every unreadable line answered and audited (``audit``)."""
    async with stdio_server() as (read, write):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def pump() -> None:
            async with send:
                async for item in read:
                    try:
                        if isinstance(item, Exception):
                            refused = refusal(item)
                            await write.send(refused.reply())
                            audit("message_refused", refused.payload(session_id, principal))
                        else:
                            await send.send(item)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return  # the server stopped reading or writing: the session is over

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            yield receive, write
            tg.cancel_scope.cancel()
