"""Lexical path checks and a small, readable glob language for ``path_glob`` plan constraints.

    under_root("/repo/src/a.py", "/repo")    # 'src/a.py'
    under_root("src/a.py", "/repo")          # 'src/a.py' (relative paths are taken relative to the root)
    under_root("/etc/passwd", "/repo")       # PathRefused: outside the root
    glob_matches("src/**/*.py", "src/x/a.py")  # True

Everything is lexical: no file system access, no symlink resolution. A path
with a ``..`` segment is refused outright (``src/../x`` is not collapsed,
because with symlinks ``src/..`` need not be the root). Whoever opens the file
must resolve symlinks and check that the real path is still under the root
(e.g. ``os.path.realpath`` and ``O_NOFOLLOW``): that is the caller's job.

Globs are POSIX, relative to the root, case-sensitive. ``*`` matches within
one path segment, ``?`` one character, ``**`` (a whole segment) any number of
segments (one or more at the end of a glob). Wildcards never match a segment
that starts with a dot (``src/**`` does not reach ``src/.git/hooks``) unless
the glob spells the dot. Brackets, braces and backslashes are refused rather
than half-supported.
"""

from __future__ import annotations

import re
from functools import lru_cache

from writ.engine.core import reasons
from writ.engine.core.errors import InputError

__all__ = ["PathRefused", "check_glob", "check_root", "glob_matches", "under_root"]

_FORBIDDEN_GLOB_CHARS = set("[]{}\\\0")


class PathRefused(InputError):
    """A path or glob that a constraint cannot accept; the message says why.

        try:
            under_root("/etc/passwd", "/repo")
        except PathRefused as e:
            print(e.code, e)      # path_refused  path '/etc/passwd' is not under the root '/repo'
    """

    code = reasons.PATH_REFUSED


def check_root(root: str) -> str:
    """``root`` itself if it is an absolute, normalized POSIX path; ``PathRefused`` otherwise."""
    if not root.startswith("/"):
        raise PathRefused(f"root {root!r} is not an absolute path")
    if "\0" in root or "\\" in root:
        raise PathRefused(f"root {root!r} holds a NUL byte or a backslash")
    segments = root.split("/")[1:]
    if root != "/" and any(seg in ("", ".", "..") for seg in segments):
        raise PathRefused(f"root {root!r} is not normalized (no '.', '..', '//' or trailing '/')")
    return root


def check_glob(glob: str) -> str:
    """``glob`` itself if it is a relative glob of the supported language; ``PathRefused`` otherwise."""
    if not glob:
        raise PathRefused("glob is empty")
    if glob.startswith("/"):
        raise PathRefused(f"glob {glob!r} is absolute; globs are relative to the root")
    bad = sorted(_FORBIDDEN_GLOB_CHARS & set(glob))
    if bad:
        raise PathRefused(f"glob {glob!r} uses unsupported characters {''.join(bad)!r}")
    for seg in glob.split("/"):
        if seg in ("", ".", ".."):
            raise PathRefused(f"glob {glob!r} has an empty, '.' or '..' segment")
        if "**" in seg and seg != "**":
            raise PathRefused(f"glob {glob!r}: '**' must be a whole path segment")
    return glob


def _segment_regex(seg: str) -> str:
    body = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in seg)
    return r"(?!\.)" + body if seg[0] in "*?" else body


@lru_cache(maxsize=1024)
def _compile(glob: str) -> re.Pattern[str]:
    parts = check_glob(glob).split("/")
    out = []
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if seg == "**":
            out.append(r"(?!\.)[^/]+(?:/(?!\.)[^/]+)*" if last else r"(?:(?!\.)[^/]+/)*")
        else:
            out.append(_segment_regex(seg) + ("" if last else "/"))
    return re.compile("".join(out))


def glob_matches(glob: str, relative_path: str) -> bool:
    """Whether a root-relative path matches ``glob`` (``PathRefused`` for a glob outside the language)."""
    return _compile(glob).fullmatch(relative_path) is not None


def under_root(path: str, root: str) -> str:
    """The path relative to ``root``, after lexical normalization; ``PathRefused`` if it escapes."""
    check_root(root)
    if not path:
        raise PathRefused("path is empty")
    if "\0" in path or "\\" in path:
        raise PathRefused(f"path {path!r} holds a NUL byte or a backslash")
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise PathRefused(f"path {path!r} has a '..' segment")
    if path.startswith("/"):
        root_segments = [s for s in root.split("/") if s]
        if segments[: len(root_segments)] != root_segments or len(segments) == len(root_segments):
            raise PathRefused(f"path {path!r} is not under the root {root!r}")
        segments = segments[len(root_segments) :]
    if not segments:
        raise PathRefused(f"path {path!r} names the root itself")
    return "/".join(segments)
