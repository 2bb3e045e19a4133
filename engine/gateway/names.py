"""How the gateway names what upstreams offer, so that two servers never clash and every name says its server.

    split_name("git__git_commit")              # ('git', 'git_commit'): tools and prompts, <server>__<name>
    expose_uri("fs", "file:///srv/a.txt")      # 'writ://fs/file:///srv/a.txt'
    split_uri("writ://fs/file:///srv/a.txt")   # ('fs', 'file:///srv/a.txt')

Resource URIs (and templates) are exposed as ``writ://<server>/<uri as the upstream wrote it>``:
two servers may both offer ``file:///etc/config``, and the server must be known before anything
is read.
"""

from __future__ import annotations

import re

from writ.engine.gateway.config import SEPARATOR

URI_PREFIX = "writ://"
_SERVER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def expose_uri(server: str, uri: str) -> str:
    """The URI (or URI template) an agent sees for ``uri`` of upstream ``server``."""
    return f"{URI_PREFIX}{server}/{uri}"


def split_uri(exposed: str) -> tuple[str, str] | None:
    """``(server, upstream uri)`` of an exposed URI; None when it is not one of Writ's."""
    if not exposed.startswith(URI_PREFIX):
        return None
    server, sep, uri = exposed[len(URI_PREFIX):].partition("/")
    if not sep or not uri or not _SERVER.match(server) or SEPARATOR in server:
        return None
    return server, uri


def split_name(exposed: str) -> tuple[str, str] | None:
    """``(server, name)`` of an exposed name ``<server>__<name>``; None when it has no server part."""
    server, sep, name = exposed.partition(SEPARATOR)
    return (server, name) if sep and server and name else None
