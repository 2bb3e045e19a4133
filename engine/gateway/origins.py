"""Who may call Writ over HTTP at all: a local ``Origin`` when bound to loopback, and a bearer token.

    local_origin("http://localhost:3000")      # True
    local_origin("https://evil.example")       # False: a web page elsewhere is refused (origin_forbidden)
    bearer_token("Bearer writ_abc")            # 'writ_abc'; None without a Bearer token

The same rules guard ``/mcp`` (``writ.engine.gateway.http``) and ``POST /v1/decisions``
(``writ.engine.web``): a browser adds an ``Origin`` header to every cross-site POST, so a page
on another site that posts to a loopback port is refused before anything else is read.
"""

from __future__ import annotations

from urllib.parse import urlsplit

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def local_origin(origin: str) -> bool:
    """Whether ``origin`` is a page served from this machine (http or https, a loopback host, any port)."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.hostname in LOCAL_HOSTS


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
