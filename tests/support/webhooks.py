"""A real webhook receiver on loopback, as a team would run one: it checks each notice's signature.

    with webhook_receiver() as hook:                       # http://127.0.0.1:<port>/hooks/writ
        settings = Settings(notify=NotifySettings(webhook_url=hook.url), ...)
        ...
        hook.trust(load_instance_key(settings.home).public_key)
        [(n["event"], n["recipients"]) for n in hook.notices()]   # verified, in arrival order

``closed_url()`` is a URL on a port nobody listens on: a receiver that is down.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support.gateway import free_port
from writ.plans.keys import PublicKey
from writ.workflows.approval.notify import verify_notice


@dataclass
class Receiver:
    """What the receiver was sent: each POST's body and headers, in arrival order."""

    url: str = ""
    posts: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    key: PublicKey | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def trust(self, key: PublicKey) -> None:
        """The Writ instance's public key, which every notice must be signed with."""
        self.key = key

    def notices(self) -> list[dict[str, Any]]:
        """Every notice received so far, each verified with the trusted key (``SignatureError`` if one is not)."""
        assert self.key is not None, "call trust(instance public key) first"
        with self.lock:
            posts = list(self.posts)
        return [verify_notice(body, headers, self.key) for body, headers in posts]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """An HTTP server in a thread that answers every POST with 204 and keeps it."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.posts.append((body, dict(self.headers.items())))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/writ"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_url() -> str:
    """A webhook URL on a loopback port with nothing listening: every POST is refused at once."""
    return f"http://127.0.0.1:{free_port()}/hooks/writ"
