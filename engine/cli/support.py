"""What the principal, key, plan and tool commands share.

The data directory's stores, bounded file reads, never-overwriting writes, and output fit
for a terminal or for a program.

    with services() as w:                                  # the stores of the command's --data-dir
        people = w.trust.principals()
    table([("PRINCIPAL", "ROLE"), *((p.name, p.role) for p in people)])
    echo_json([{"name": p.name, "role": p.role} for p in people])     # the --json form
    raw = read_bounded(Path("plan.json"), "plan file", 1_000_000)     # InputError, never OSError

Text that came from a signed document (titles, arguments, comments) goes through ``safe``:
control and bidirectional characters are escaped, so a plan cannot dress itself up on an
approver's terminal. JSON output escapes every non-ASCII character for the same reason.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, InputError
from writ.engine.core.timeutil import iso

if TYPE_CHECKING:
    from writ.engine.core.settings import Settings
    from writ.engine.wiring.services import Services

__all__ = ["JSON_OPTION", "echo_json", "read_bounded", "safe", "services", "settings", "shown_time", "table",
           "write_new"]

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text (for programs).")


def settings() -> Settings:
    """The running command's settings (set by ``writ_command``)."""
    found: Settings = click.get_current_context().obj
    return found


@contextmanager
def services(*, create: bool = False) -> Iterator[Services]:
    """The trust store and the plan store of the command's data directory; closed on exit."""
    from writ.engine.wiring.services import open_services  # the database layer: only for commands that use it

    with open_services(settings(), create=create) as w:
        yield w


# --- files -------------------------------------------------------------------------------------


def read_bounded(path: Path, what: str, limit: int) -> bytes:
    """The bytes of ``path``; ``InputError`` if it cannot be read or holds more than ``limit`` bytes."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > limit:
        raise InputError(f"{what} {path} is larger than {limit} bytes", code=reasons.INPUT_TOO_LARGE)
    return data


def write_new(path: Path, data: bytes, what: str) -> None:
    """Write a file that must not exist yet; ``ConfigError`` (``file_exists``) rather than overwrite one."""
    try:
        with open(path, "xb") as f:
            f.write(data)
    except FileExistsError:
        raise ConfigError(f"refusing to overwrite {path}; choose another -o", code=reasons.FILE_EXISTS) from None
    except OSError as e:
        raise ConfigError(f"cannot write {what} {path}: {e.strerror}") from None


# --- output ------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def safe(text: str, *, newlines: bool = False) -> str:
    """Text from a signed document, fit for a terminal: control and bidi characters escaped."""

    def esc(m: re.Match[str]) -> str:
        return f"\\u{ord(m.group()):04x}"

    out = _UNSAFE.sub(esc, text)
    out = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cf", "Cs", "Co") else c for c in out)
    return out if newlines else out.replace("\n", "\\n").replace("\t", "\\t")


def shown_time(t: datetime | None) -> str:
    """A time for a table: UTC to the second (``2026-11-22T10:00:00Z``), ``-`` for none."""
    return iso(t.replace(microsecond=0)) if t else "-"


def table(rows: Sequence[tuple[str, ...]]) -> None:
    """Print rows as left-aligned columns; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON, ASCII only (nothing in it can drive a terminal)."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
