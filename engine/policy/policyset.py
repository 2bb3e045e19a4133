"""A policy set: the Rego modules and data files of one directory, checked and digested.

    ps = load_policy_set(Path("policies"))        # PolicyLoadError naming file and line
    ps.revision                                    # "sha256:..." over modules and data
    ps.modules["writ/authz.rego"], ps.data["writ"]["tools"]

Directory convention (the OPA bundle convention, plus one shorthand):

- every ``*.rego`` file is a module; ``*_test.rego`` files are tests, loaded only by
  ``writ policy test`` (``include_tests=True``), never for decisions or bundles;
- ``DIR/data.json`` is placed at ``data.DIR`` (as in OPA bundles), and ``DIR/NAME.json``
  at ``data.DIR.NAME``;
- hidden files and directories, ``__pycache__`` and ``*.py`` files are ignored.

Loading *checks* the set: each module must parse, and every builtin it calls must be
one the embedded engine implements (a call to a missing builtin would otherwise only
fail, or silently evaluate to undefined, when a request reaches it). A set that fails
the check is refused whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import rfc8785

from writ.engine.core.errors import PolicyLoadError

os.environ.setdefault("RUST_LIB_BACKTRACE", "0")  # keep Rust backtraces out of user-facing errors
import regorus

# Builtins regorus accepts but that cannot work here: they evaluate to undefined instead of
# failing, so a policy using them would silently never match.
SILENTLY_UNDEFINED_BUILTINS = frozenset({"http.send"})

_LOCATION = re.compile(r"-->\s*(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+)")
_ERROR_LINE = re.compile(r"^error:\s*(?P<msg>.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Problem:
    """One finding of ``check``: where, and what is wrong."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


@dataclass(frozen=True)
class PolicySet:
    """The modules and data of one policy directory, checked, with the revision that names them.

        ps = load_policy_set(Path("policies"))
        ps.revision, ps.packages          # 'sha256:9c1e...' ['writ.approval', 'writ.authz']
    """

    root: Path
    modules: dict[str, str]
    data: dict[str, Any]
    revision: str
    data_files: tuple[str, ...] = field(default=())

    @property
    def packages(self) -> list[str]:
        return sorted({package_of(src) for src in self.modules.values()})


def package_of(source: str) -> str:
    m = re.search(r"^\s*package\s+([\w.]+)", source, re.MULTILINE)
    return m.group(1) if m else ""


def _iter_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def policy_files(root: Path, *, include_tests: bool = False) -> tuple[list[Path], list[Path]]:
    """(rego files, data files) under ``root``, sorted, relative to ``root``."""
    rego: list[Path] = []
    data: list[Path] = []
    for path in _iter_files(root):
        rel = path.relative_to(root)
        if path.suffix == ".rego":
            if include_tests or not path.name.endswith("_test.rego"):
                rego.append(rel)
        elif path.suffix == ".json":
            data.append(rel)
    return rego, data


def fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector: (path, mtime_ns, size) of every policy file."""
    out = []
    for path in _iter_files(root):
        if path.suffix in (".rego", ".json"):
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _data_path(rel: Path) -> list[str]:
    parts = list(rel.parent.parts)
    if rel.name != "data.json":
        parts.append(rel.stem)
    return parts


def _merge(into: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    node = into
    for i, key in enumerate(path):
        if i == len(path) - 1:
            break
        nxt = node.setdefault(key, {})
        if not isinstance(nxt, dict):
            raise PolicyLoadError(f"{source}: data.{'.'.join(path[: i + 1])} is already a non-object value")
        node = nxt
    if not path:
        if not isinstance(value, dict):
            raise PolicyLoadError(f"{source}: a root data.json must hold a JSON object")
        for k, v in value.items():
            _merge(into, [k], v, source)
        return
    key = path[-1]
    if key in node:
        if isinstance(node[key], dict) and isinstance(value, dict):
            for k, v in value.items():
                _merge(node[key], [k], v, source)
            return
        raise PolicyLoadError(f"{source}: data.{'.'.join(path)} is defined by two data files")
    node[key] = value


def _read_text(path: Path, rel: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PolicyLoadError(f"{rel}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise PolicyLoadError(f"{rel}: cannot read: {e.strerror}") from None


def load_policy_set(root: Path, *, include_tests: bool = False, check: bool = True) -> PolicySet:
    """Read, check and digest the policy set under ``root``; raise ``PolicyLoadError`` on any problem."""
    root = Path(root)
    if not root.is_dir():
        raise PolicyLoadError(f"policy directory {root} does not exist or is not a directory")
    rego_files, data_files = policy_files(root, include_tests=include_tests)
    if not rego_files:
        raise PolicyLoadError(f"policy directory {root} has no .rego files")
    modules = {str(rel): _read_text(root / rel, rel) for rel in rego_files}
    data: dict[str, Any] = {}
    for rel in data_files:
        text = _read_text(root / rel, rel)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise PolicyLoadError(f"{rel}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
        _merge(data, _data_path(rel), value, str(rel))
    if check:
        problems = check_modules(modules, data)
        if problems:
            shown = "\n".join(f"  {p}" for p in problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise PolicyLoadError(f"policy set {root} has {len(problems)} problem(s):\n{shown}{more}")
    revision = set_revision(modules, data)
    return PolicySet(root=root, modules=modules, data=data, revision=revision,
                     data_files=tuple(str(p) for p in data_files))


def set_revision(modules: dict[str, str], data: dict[str, Any]) -> str:
    """The revision of a policy set: ``sha256:`` over its modules' digests and its data (RFC 8785)."""
    return "sha256:" + hashlib.sha256(
        rfc8785.dumps({"modules": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in modules.items()},
                       "data": data})
    ).hexdigest()


# --- checking -----------------------------------------------------------------


def regorus_error_text(exc: BaseException) -> str:
    """A one-line ``file:line:col: message`` from a regorus error (its text spans many lines)."""
    return str(_parse_error(None, exc))


def _parse_error(file: str | None, exc: BaseException) -> Problem:
    text = str(exc)
    loc = _LOCATION.search(text)
    msg = _ERROR_LINE.search(text)
    message = msg.group("msg").strip() if msg else text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if loc:
        return Problem(file or loc.group("file"), int(loc.group("line")), int(loc.group("col")), message)
    return Problem(file or "<policy>", 0, 0, message)


def _ref_name(node: Any) -> str | None:
    """Dotted name of a Var/RefDot chain (``crypto.sha256``), or None for anything else."""
    parts: list[str] = []
    while isinstance(node, dict):
        if "Var" in node:
            parts.append(node["Var"]["value"])
            return ".".join(reversed(parts))
        if "RefDot" in node:
            parts.append(node["RefDot"]["field"][1])
            node = node["RefDot"]["refr"]
            continue
        return None
    return None


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            yield n
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)


@lru_cache(maxsize=1024)
def builtin_supported(name: str, arity: int) -> bool:
    """Whether the embedded engine implements builtin ``name`` (probed once per name)."""
    if name in SILENTLY_UNDEFINED_BUILTINS:
        return False
    args = ", ".join(["null"] * arity)
    probe = regorus.Engine()
    try:
        probe.add_policy("probe.rego", f"package writ_builtin_probe\nr := {name}({args})\n")
        probe.eval_query_as_json("data.writ_builtin_probe.r")
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return "could not find function" not in str(e)
    return True


def check_modules(modules: dict[str, str], data: dict[str, Any] | None = None) -> list[Problem]:
    """Parse errors and unsupported builtins, with file, line and column."""
    problems: list[Problem] = []
    asts: dict[str, Any] = {}
    for file, source in modules.items():
        engine = regorus.Engine()
        try:
            engine.add_policy(file, source)
            asts[file] = json.loads(engine.get_ast_as_json())[0]["ast"]
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            problems.append(_parse_error(file, e))
    # Names of functions the policy set defines itself (bare, and as data.<pkg>.<name>).
    user_functions: set[str] = set()
    for ast in asts.values():
        pkg = _ref_name(ast["package"]["refr"]) or ""
        for rule in ast.get("rules", []):
            head = rule.get("Spec", {}).get("head", {})
            if "Func" in head:
                name = _ref_name(head["Func"]["refr"]) or ""
                user_functions.update({name, f"data.{pkg}.{name}"})
    user_leaves = {f.split(".")[-1] for f in user_functions}
    for file, ast in asts.items():
        for node in _walk(ast.get("rules", [])):
            call = node.get("Call")
            if not isinstance(call, dict):
                continue
            called = _ref_name(call.get("fcn"))
            if called is None or called in user_functions or called.startswith("data."):
                continue
            if "." in called and called.split(".")[-1] in user_leaves:
                continue  # a call through an import alias (``z.f``) to one of our own functions
            arity = len(call.get("params", []))
            if not builtin_supported(called, arity):
                span = call.get("span") or {}
                why = (
                    "always evaluates to undefined in the embedded engine"
                    if called in SILENTLY_UNDEFINED_BUILTINS
                    else "is not implemented by the embedded engine (regorus)"
                )
                problems.append(Problem(file, int(span.get("line", 0)), int(span.get("col", 0)),
                                        f"builtin {called} {why}; the policy would never match"))
    return sorted(problems, key=lambda p: (p.file, p.line, p.col))
