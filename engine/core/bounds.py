"""Bounds on untrusted JSON, checked before anything parses or evaluates it.

    doc = parse_json_bounded(raw_bytes, limits)     # InputError with code input_too_large / input_too_deep
    check_depth(obj, limits.max_json_depth)          # for documents built in Python

The depth scan is iterative: a 10,000-deep document is refused without recursion.
"""

from __future__ import annotations

import json
from typing import Any

from writ.engine.core import reasons
from writ.engine.core.errors import InputError
from writ.engine.core.settings import Limits


def json_depth(raw: bytes | str) -> int:
    """Deepest nesting of ``[``/``{`` in a JSON text, ignoring brackets inside strings."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def check_depth(obj: Any, max_depth: int) -> None:
    """Raise ``InputError(input_too_deep)`` if a Python document nests deeper than ``max_depth``."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth + 1 > max_depth:
            raise InputError(
                f"input nests deeper than {max_depth} levels of arrays and objects", code=reasons.INPUT_TOO_DEEP
            )
        stack.extend((child, depth + 1) for child in children)


def check_size(size: int, limits: Limits) -> None:
    if size > limits.max_input_bytes:
        raise InputError(
            f"input is {size} bytes, the limit is {limits.max_input_bytes} (limits.max_input_bytes)",
            code=reasons.INPUT_TOO_LARGE,
        )


def parse_json_bounded(raw: bytes | str, limits: Limits) -> Any:
    """Parse JSON from outside: size first, then depth, then ``json.loads``; any failure is an ``InputError``."""
    size = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
    check_size(size, limits)
    if json_depth(raw) > limits.max_json_depth:
        raise InputError(
            f"input nests deeper than {limits.max_json_depth} levels of arrays and objects", code=reasons.INPUT_TOO_DEEP
        )
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise InputError(f"input is not valid JSON: {e}", code=reasons.INPUT_NOT_JSON) from None
