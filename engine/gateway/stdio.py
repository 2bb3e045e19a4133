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

import asyncio
import codecs
import contextlib
import hashlib
import os
import re
import stat
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from writ.engine.core import reasons

__all__ = ["PipeStdio", "Refusal", "refusal", "stdio_transport"]

Refuse = Callable[[Exception], tuple[SessionMessage, Callable[[], None]]]
_LINE_END = re.compile(r"[\r\n]")
_CHUNK = 65536


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
    """Streams of MCP messages on stdin/stdout, with every unreadable line answered and audited (``audit``).

    When stdin and stdout are pipes or sockets (how MCP clients start ``writ mcp``), they are read
    and written on the event loop (``PipeStdio``); otherwise (a terminal, a file) through the SDK's
    ``stdio_server``, which reads and writes in worker threads.
    """
    def refuse(error: Exception) -> tuple[SessionMessage, Callable[[], None]]:
        refused = refusal(error)
        return refused.reply(), lambda: audit("message_refused", refused.payload(session_id, principal))

    if _pollable(0) and _pollable(1):
        async with PipeStdio.open(refuse) as (read, write):
            yield read, write
        return
    async with stdio_server() as (sdk_read, sdk_write):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def pump() -> None:
            async with send:
                async for item in sdk_read:
                    try:
                        if isinstance(item, Exception):
                            reply, record = refuse(item)
                            await sdk_write.send(reply)
                            record()
                        else:
                            await send.send(item)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return  # the server stopped reading or writing: the session is over

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            yield receive, sdk_write
            tg.cancel_scope.cancel()


def _pollable(fd: int) -> bool:
    """Whether ``fd`` is a pipe or a socket, which the event loop can watch (a terminal or a file is not)."""
    if sys.platform == "win32":  # pragma: no cover - the loop's pipes are POSIX
        return False
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _divert(fd: int, replacement: int) -> int:
    """A private duplicate of ``fd`` (the wire), with ``fd`` itself pointed at ``replacement``.

    As the SDK's ``stdio_server`` does: while serving, a stray read of stdin gets EOF and a stray
    print lands on stderr, never on the wire.
    """
    import fcntl

    private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.dup2(replacement, fd)
    return private


def _restore(fd: int, private: int) -> None:
    with contextlib.suppress(OSError):
        os.set_blocking(private, True)  # the loop made it non-blocking; the descriptor is shared
        os.dup2(private, fd)
    with contextlib.suppress(OSError):
        os.close(private)


class _WriteProtocol(asyncio.Protocol):
    """Flow control of the stdout pipe: ``drain`` waits until the kernel took every byte written."""

    def __init__(self) -> None:
        self._resumed: asyncio.Event = asyncio.Event()
        self._resumed.set()
        self.lost: BaseException | None = None
        self.gone = asyncio.get_running_loop().create_future()

    def pause_writing(self) -> None:
        self._resumed.clear()

    def resume_writing(self) -> None:
        self._resumed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or BrokenPipeError("stdout was closed")
        self._resumed.set()
        if not self.gone.done():
            self.gone.set_result(None)

    async def drain(self) -> None:
        await self._resumed.wait()
        if self.lost is not None:
            raise anyio.BrokenResourceError from self.lost


class _LineWriter:
    """The write side: one JSON-RPC message per line, as the SDK writes them, flushed before ``send`` returns."""

    def __init__(self, transport: asyncio.WriteTransport, protocol: _WriteProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False

    async def send(self, item: SessionMessage, /) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._protocol.lost is not None:
            raise anyio.BrokenResourceError from self._protocol.lost
        text = item.message.model_dump_json(by_alias=True, exclude_unset=True)
        self._transport.write(text.encode("utf-8") + b"\n")
        await self._protocol.drain()

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> _LineWriter:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class _LineReader:
    """The read side: each line a JSON-RPC message; a line that is none is answered (``refuse``) and skipped.

    Lines are decoded as the SDK's text reader decodes them: UTF-8 with replacement characters,
    universal newlines (``\\n``, ``\\r\\n`` or ``\\r`` ends a line).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: _LineWriter, refuse: Refuse) -> None:
        self._reader = reader
        self._writer = writer
        self._refuse = refuse
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._scanned = 0  # no line end before this index of the buffer
        self._eof = False
        self._closed = False

    async def receive(self) -> SessionMessage:
        if self._closed:
            raise anyio.ClosedResourceError
        while True:
            line = await self._line()
            try:
                message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            except Exception as e:  # noqa: BLE001 - whatever the parser says, the line is answered
                reply, record = self._refuse(e)
                try:
                    await self._writer.send(reply)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    raise anyio.EndOfStream from None  # nobody to answer: the session is over
                record()
                continue
            return SessionMessage(message)

    async def _line(self) -> str:
        """The next line, ending in ``\\n`` (the last one may have none); ``EndOfStream`` after the last."""
        while True:
            found = _LINE_END.search(self._buffer, self._scanned)
            if found is not None:
                i = found.start()
                if self._buffer[i] == "\r" and i + 1 == len(self._buffer) and not self._eof:
                    self._scanned = i  # a \r\n may be cut between two reads
                else:
                    end = i + 2 if self._buffer.startswith("\r\n", i) else i + 1
                    line, self._buffer, self._scanned = self._buffer[:i] + "\n", self._buffer[end:], 0
                    return line
            else:
                self._scanned = len(self._buffer)
            if self._eof:
                if not self._buffer:
                    raise anyio.EndOfStream
                line, self._buffer, self._scanned = self._buffer, "", 0
                return line
            chunk = await self._reader.read(_CHUNK)
            self._eof = not chunk
            self._buffer += self._decoder.decode(chunk, final=self._eof)

    async def aclose(self) -> None:
        self._closed = True

    def __aiter__(self) -> _LineReader:
        return self

    async def __anext__(self) -> SessionMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _LineReader:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class PipeStdio:
    """stdin and stdout as MCP message streams on the event loop, when both are pipes or sockets.

        async with PipeStdio.open(refuse) as (read, write):
            await server.run(read, write, server.create_initialization_options())

    The SDK's ``stdio_server`` reads and writes through worker threads (three thread hops per
    message); this reads and writes the same bytes with the loop's pipe transports, and answers a
    line that is no JSON-RPC message inline (``refuse``: the reply, and what to record once it
    was sent), without a task between the pipe and the server.
    """

    @staticmethod
    @asynccontextmanager
    async def open(refuse: Refuse) -> AsyncIterator[tuple[_LineReader, _LineWriter]]:
        loop = asyncio.get_running_loop()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            wire_in = _divert(0, null)
        finally:
            os.close(null)
        wire_out = _divert(1, 2)
        read_transport: asyncio.BaseTransport | None = None
        write_transport: asyncio.WriteTransport | None = None
        try:
            reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
            read_transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(wire_in, "rb", 0, closefd=False))
            write_transport, protocol = await loop.connect_write_pipe(
                _WriteProtocol, os.fdopen(wire_out, "wb", 0, closefd=False))
            write_transport.set_write_buffer_limits(high=0)
            writer = _LineWriter(write_transport, protocol)
            yield _LineReader(reader, writer, refuse), writer
            if not protocol.lost:
                write_transport.close()  # what is still buffered is written first
                with anyio.move_on_after(5):
                    await protocol.gone
        finally:
            if read_transport is not None:
                read_transport.close()
            if write_transport is not None and not write_transport.is_closing():
                write_transport.abort()  # an error or a cancellation on the way: nothing more to flush
            _restore(0, wire_in)
            _restore(1, wire_out)
