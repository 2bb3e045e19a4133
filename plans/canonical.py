"""Canonical JSON (RFC 8785) and a strict parser for signed JSON: the one place that makes signed bytes.

    data = canonical_bytes({"b": 1, "a": [True, None]})   # b'{"a":[true,null],"b":1}'
    digest({"b": 1})                                       # 'sha256:...' of those bytes
    obj = parse_strict(data)                               # InputError on anything ambiguous

The parser refuses what two JSON parsers could read differently, so the bytes a
signer saw and the object a verifier acts on cannot disagree: duplicate object
keys, invalid UTF-8, lone surrogates (``"\\ud800"``), ``NaN``/``Infinity``,
numbers that overflow to infinity, and integers beyond +/-(2**53 - 1) unless
written exactly as RFC 8785 writes a double (``100000000000000000000`` is the
canonical form of ``1e20`` and parses as that ``float``).

Speed: for a *plain* value (no floats, integers within +/-(2**53 - 1), object keys without
characters beyond U+FFFF, only ``dict``/``list``/``tuple``/``str``/``int``/``bool``/``None``)
RFC 8785 and ``json.dumps(sort_keys=True)`` write the same bytes, and the C encoder is about
ten times faster than the pure-Python ``rfc8785``; every other value takes ``rfc8785``.
``is_plain`` is that test, and ``unchecked_canonical_bytes`` the fast encoder for a caller
that established it for the parts of a value that can vary (``writ.plans.models.Plan``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

from writ.engine.core import reasons
from writ.engine.core.errors import InputError

SAFE_INT = 2**53 - 1
DEFAULT_MAX_DEPTH = 64


def canonical_bytes(obj: Any) -> bytes:
    """RFC 8785 bytes of a JSON-compatible object. ``InputError(not_canonicalizable)`` if it has none."""
    if is_plain(obj):
        fast = unchecked_canonical_bytes(obj)
        if fast is not None:
            return fast
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, TypeError, RecursionError) as e:
        raise InputError(f"value has no canonical JSON form: {e}", code=reasons.NOT_CANONICALIZABLE) from None


def plain_key(key: object) -> bool:
    """A string key whose code-point order is its UTF-16 order (no character beyond U+FFFF)."""
    if type(key) is not str:
        return False
    return key.isascii() or len(key.encode("utf-16-le", "surrogatepass")) == 2 * len(key)


def is_plain(obj: Any) -> bool:
    """Whether ``json.dumps(obj, sort_keys=True)`` writes exactly RFC 8785's bytes for ``obj`` (see above)."""
    stack = [obj]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is str or kind is bool or node is None:
            continue
        if kind is int:
            if -SAFE_INT <= node <= SAFE_INT:
                continue
            return False
        if kind is dict:
            if not all(plain_key(k) for k in node):
                return False
            stack.extend(node.values())
        elif kind is list or kind is tuple:
            stack.extend(node)
        else:
            return False
    return True


def unchecked_canonical_bytes(obj: Any) -> bytes | None:
    """RFC 8785 bytes of a value the caller knows ``is_plain``; None if it has none (let ``rfc8785`` say why).

    Unsafe on a value that is not plain: a float would be written in Python's form, not RFC 8785's.
    """
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
        return text.encode("utf-8")
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError (a lone surrogate) is a ValueError
        return None


def sha256_digest(data: bytes) -> str:
    """``sha256:<64 hex>`` of raw bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest(obj: Any) -> str:
    """``sha256:<64 hex>`` of the canonical bytes of ``obj``."""
    return sha256_digest(canonical_bytes(obj))


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InputError(f"duplicate JSON object key {key!r}", code=reasons.JSON_DUPLICATE_KEY)
        out[key] = value
    return out


def _parse_int(text: str) -> int | float:
    """Integers within +/-(2**53 - 1) as ``int``.

    Beyond, JSON numbers are doubles: accept the literal only if it
    is exactly how RFC 8785 writes its double (``1e20`` is written ``100000000000000000000``), else refuse.
    """
    n = int(text)
    if abs(n) <= SAFE_INT:
        return n
    f = float(text)
    if math.isfinite(f) and rfc8785.dumps(f) == text.encode("ascii"):
        return f
    raise InputError(
        f"integer {text[:40]} is beyond +/-(2**53 - 1) and is not the canonical form of a double; "
        "JSON parsers would read different numbers",
        code=reasons.JSON_INVALID_NUMBER,
    )


def _refuse_constant(name: str) -> Any:
    raise InputError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)", code=reasons.JSON_INVALID_NUMBER)


def _check_string(s: str, where: str) -> None:
    if s.isascii():  # constant time in CPython: an ASCII string holds no surrogate
        return
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            f"{where} holds a lone surrogate (invalid Unicode, e.g. \\ud800)",
            code=reasons.JSON_INVALID_UNICODE,
        ) from None


def _check_tree(obj: Any, max_depth: int) -> None:
    """Iteratively check strings, numbers and depth of a parsed document."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_string(node, "a string")
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int):
            if abs(node) > SAFE_INT:
                raise InputError(
                    f"integer {node} is outside +/-(2**53 - 1), which JSON cannot carry exactly",
                    code=reasons.JSON_INVALID_NUMBER,
                )
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise InputError("a number overflows to infinity", code=reasons.JSON_INVALID_NUMBER)
        elif isinstance(node, Mapping) or (isinstance(node, Sequence) and not isinstance(node, str)):
            if depth + 1 > max_depth:
                raise InputError(
                    f"JSON nests deeper than {max_depth} levels of arrays and objects",
                    code=reasons.INPUT_TOO_DEEP,
                )
            if isinstance(node, Mapping):
                for key, value in node.items():
                    _check_string(key, "an object key")
                    stack.append((value, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in node)


def parse_strict(data: bytes, *, max_bytes: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse signed JSON bytes, refusing anything ambiguous. Any failure is an ``InputError``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"signed JSON must be bytes, got {type(data).__name__}", code=reasons.JSON_INVALID)
    if max_bytes is not None and len(data) > max_bytes:
        raise InputError(f"JSON is {len(data)} bytes, the limit is {max_bytes}", code=reasons.INPUT_TOO_LARGE)
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"JSON is not valid UTF-8 (byte {e.start}: {e.reason})", code=reasons.JSON_INVALID_UNICODE) from None
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
        )
    except InputError:
        raise
    except RecursionError:
        raise InputError("JSON nests too deeply to parse", code=reasons.INPUT_TOO_DEEP) from None
    except ValueError as e:  # JSONDecodeError, and int() beyond sys.get_int_max_str_digits()
        raise InputError(f"not valid JSON: {e}", code=reasons.JSON_INVALID) from None
    _check_tree(obj, max_depth)
    return obj
