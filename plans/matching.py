"""Does a tool call match a plan step? A yes, or a no with the reason a person can act on.

    result = matches(step, server="fs", tool="write_file", definition_digest=d, args={"path": "/repo/a.py"})
    if not result:
        deny(result.reason)      # e.g. "argument 'path': '/etc/passwd' is not under the root '/repo'"

Checks, in order: server, tool, tool definition digest (a tool whose definition
changed since approval never matches), the argument names (each pinned or
constrained, nothing extra, nothing missing), pinned values (equal as canonical
JSON, so ``true`` never equals ``1``), then every constraint. Path constraints
are lexical (``writ.plans.paths``): the caller resolves symlinks before it
opens a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from writ.engine.core.errors import InputError
from writ.plans.canonical import canonical_bytes
from writ.plans.models import Constraint, ContentSha256, OneOf, PathGlob, PlanLimits, PlanStep
from writ.plans.paths import PathRefused, glob_matches, under_root


@dataclass(frozen=True)
class MatchResult:
    """A yes, or a no with the reason; true exactly when the call matches.

        result = matches(step, server="fs", tool="write_file", definition_digest=d, args=args)
        if not result:
            print(result.reason)     # "argument 'path': '/etc/passwd' is not under the root '/repo'"
    """

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


MATCH = MatchResult(True)


def _no(reason: str) -> MatchResult:
    return MatchResult(False, reason)


def _canonical_or_none(value: Any) -> bytes | None:
    try:
        return canonical_bytes(value)
    except InputError:
        return None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_constraint(c: Constraint, value: Any) -> MatchResult:
    if isinstance(c, PathGlob):
        if not isinstance(value, str):
            return _no(f"argument {c.arg!r} must be a path string, got {type(value).__name__}")
        try:
            rel = under_root(value, c.root)
        except PathRefused as e:
            return _no(f"argument {c.arg!r}: {e}")
        if not glob_matches(c.glob, rel):
            return _no(f"argument {c.arg!r}: {rel!r} under {c.root!r} does not match the glob {c.glob!r}")
        return MATCH
    if isinstance(c, ContentSha256):
        if not isinstance(value, str):
            return _no(f"argument {c.arg!r} must be a string, got {type(value).__name__}")
        got = hashlib.sha256(value.encode("utf-8")).hexdigest()
        if got != c.sha256:
            return _no(f"argument {c.arg!r} has sha256 {got[:12]}.., the plan approved {c.sha256[:12]}..")
        return MATCH
    if isinstance(c, OneOf):
        got_bytes = _canonical_or_none(value)
        allowed = {canonical_bytes(v) for v in c.values}
        if got_bytes is None or got_bytes not in allowed:
            return _no(f"argument {c.arg!r} is {_short(value)}, the plan allows one of {list(c.values)!r}")
        return MATCH
    raise AssertionError(f"unknown constraint {c!r}")  # pragma: no cover - the union is closed


def matches(
    step: PlanStep,
    *,
    server: str,
    tool: str,
    definition_digest: str | None,
    args: Mapping[str, Any],
    limits: PlanLimits | None = None,
) -> MatchResult:
    """Whether this exact call is ``step``; if not, why."""
    limits = limits or PlanLimits()
    if server != step.server:
        return _no(f"server is {server!r}, the plan step is on {step.server!r}")
    if tool != step.tool:
        return _no(f"tool is {tool!r}, the plan step calls {step.tool!r}")
    if definition_digest != step.definition_digest:
        return _no(
            f"tool definition of {server}/{tool} is {definition_digest or 'unknown'}, "
            f"the plan approved {step.definition_digest} (the tool changed since approval)"
        )
    if not isinstance(args, Mapping):
        return _no(f"arguments must be an object, got {type(args).__name__}")
    call_bytes = _canonical_or_none(dict(args))
    if call_bytes is None:
        return _no("arguments are not valid JSON (no canonical form)")
    if len(call_bytes) > limits.max_args_bytes:
        return _no(f"arguments are {len(call_bytes)} bytes, the limit is {limits.max_args_bytes}")
    expected = set(step.args) | step.constrained_args()
    missing, extra = sorted(expected - set(args)), sorted(set(args) - expected)
    if missing:
        return _no(f"arguments {missing} are missing from the call")
    if extra:
        return _no(f"arguments {extra} are not in the plan step")
    for name, pinned in step.args.items():
        if canonical_bytes(args[name]) != canonical_bytes(pinned):
            return _no(f"argument {name!r} is {_short(args[name])}, the plan approved {_short(pinned)}")
    for c in step.constraints:
        result = check_constraint(c, args[c.arg])
        if not result:
            return result
    return MATCH
