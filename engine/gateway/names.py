"""How the gateway names what upstreams offer, so that every exposed name reads one way only.

    split_name("git__git_commit")              # ('git', 'git_commit'): tools and prompts, <server>__<name>
    expose_uri("fs", "file:///srv/a.txt")      # 'writ://fs/file:///srv/a.txt'
    split_uri("writ://fs/file:///srv/a.txt")   # ('fs', 'file:///srv/a.txt')
    server_name_problem("evil_", ["evil"])     # ('server_name_ambiguous', "upstream name 'evil_' ... ends with '_' ...")

An exposed name is ``<server>__<name>`` and is split at its first ``__``. That split is the
routing: it must give back the server that offered the name, and no other. So a server name
is ASCII letters, digits, ``-`` and ``_``, starts with a letter or digit, neither ends with
``_`` nor holds ``__``; no two server names (and no server name and ``writ``, Writ's own
governance server) are the same after NFKC normalization and case folding (``fold``). An
upstream's tool is not exposed when its name is empty or starts with ``_`` (``a___x`` would
read as server ``a_``), or when another of its tools has the same folded name (which of the
two an agent meant cannot be told). ``writ.engine.gateway.config`` refuses such server names
when ``writ.toml`` loads (``server_name_ambiguous``); ``writ.engine.gateway.listing`` withholds
such tools when an upstream lists them, and audits it (``tool_refused``, ``tool_name_ambiguous``).

Resource URIs (and templates) are exposed as ``writ://<server>/<uri as the upstream wrote it>``:
two servers may both offer ``file:///etc/config``, and the server must be known before anything
is read.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from writ.engine.core import reasons

URI_PREFIX = "writ://"
SEPARATOR = "__"
"""Between the server and the name in every exposed tool and prompt name."""
# "writ" is the server of Writ's governance tools: policy gives its tools classes (plan,
# execute) that an upstream must never be able to claim by choosing that name, or one like it.
GOVERNANCE_SERVER = "writ"
RESERVED_SERVERS = frozenset({GOVERNANCE_SERVER})
MAX_SERVER_NAME = 64
_SERVER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def fold(name: str) -> str:
    """The form two names are compared in: NFKC, then case folded (``'Ｗrit'`` and ``'WRIT'`` fold to ``'writ'``)."""
    return unicodedata.normalize("NFKC", name).casefold()


def server_name_problem(name: str, others: Iterable[str] = ()) -> tuple[str, str] | None:
    """``(code, why)`` ``name`` cannot be an upstream's name beside ``others``; None when it can.

    The code is ``server_name_ambiguous`` when the name could be read as another (Writ's own
    ``writ`` included), ``config_invalid`` when it is not a name at all or is ``writ`` itself.
    """
    invalid = (f"upstream name {name!r}: use ASCII letters, digits, '-' and '_' (not '__'), starting with a letter "
               f"or digit, {MAX_SERVER_NAME} at most")
    if name in RESERVED_SERVERS:
        return reasons.CONFIG_INVALID, f"upstream name {name!r} is reserved for Writ's own governance tools"
    if SEPARATOR in name:
        return reasons.CONFIG_INVALID, invalid
    folded = fold(name)
    for reserved in sorted(RESERVED_SERVERS):
        if folded == fold(reserved):
            return reasons.SERVER_NAME_AMBIGUOUS, (
                f"upstream name {name!r} looks like {reserved!r}, which is reserved for Writ's own governance tools")
    for other in sorted(others):
        if other != name and fold(other) == folded:
            return reasons.SERVER_NAME_AMBIGUOUS, (
                f"upstream names {other!r} and {name!r} differ only in case or look-alike characters: an agent or "
                "an approver could take one for the other; rename one")
    if name.startswith("_") or name.endswith("_"):
        return reasons.SERVER_NAME_AMBIGUOUS, (
            f"upstream name {name!r} starts or ends with '_': beside the {SEPARATOR!r} of an exposed name it "
            "reads as part of another server or tool name; rename it")
    if not _SERVER.fullmatch(name):
        return reasons.CONFIG_INVALID, invalid
    return None


def tool_name_problem(name: str) -> str | None:
    """Why an upstream's tool called ``name`` cannot be exposed as ``<server>__<name>``; None when it can."""
    if not name:
        return "an empty tool name"
    if name.startswith("_"):
        return f"tool name {name!r} starts with '_': <server>{SEPARATOR}{name} would not read as one server and tool"
    return None


def colliding(names: Iterable[str]) -> dict[str, list[str]]:
    """The names (each listed once per occurrence) that share a folded form with another, by folded form."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(fold(name), []).append(name)
    return {key: group for key, group in groups.items() if len(group) > 1}


def expose_uri(server: str, uri: str) -> str:
    """The URI (or URI template) an agent sees for ``uri`` of upstream ``server``."""
    return f"{URI_PREFIX}{server}/{uri}"


def split_uri(exposed: str) -> tuple[str, str] | None:
    """``(server, upstream uri)`` of an exposed URI; None when it is not one of Writ's."""
    if not exposed.startswith(URI_PREFIX):
        return None
    server, sep, uri = exposed[len(URI_PREFIX):].partition("/")
    if not sep or not uri or not _SERVER.fullmatch(server) or SEPARATOR in server:
        return None
    return server, uri


def split_name(exposed: str) -> tuple[str, str] | None:
    """``(server, name)`` of an exposed name ``<server>__<name>``; None when it has no server part."""
    server, sep, name = exposed.partition(SEPARATOR)
    return (server, name) if sep and server and name else None
