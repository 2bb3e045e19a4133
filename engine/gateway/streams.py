"""A read stream that says when it ended: how the gateway learns that an upstream's connection is gone.

    closed = anyio.Event()
    session = ClientSession(WatchedStream(read, closed), write)   # closed is set at the upstream's EOF

The SDK's client session reads its transport's stream until it ends; wrapped, the end of that
stream also sets an event the upstream's supervisor waits on, without a task in between that
would pass every message on (one more hop per message, as a relay task costs).
"""

from __future__ import annotations

from types import TracebackType
from typing import Generic, TypeVar

import anyio
from mcp.shared._stream_protocols import ReadStream

T = TypeVar("T")

__all__ = ["WatchedStream"]


class WatchedStream(Generic[T]):
    """``inner``, item for item; ``closed`` is set once it ends, breaks or is closed under its reader."""

    def __init__(self, inner: ReadStream[T], closed: anyio.Event) -> None:
        self._inner = inner
        self._closed = closed

    async def receive(self) -> T:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._closed.set()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> WatchedStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> WatchedStream[T]:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
