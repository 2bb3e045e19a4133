"""Export the bundle of every plan that ended in a period, one file per plan (``writ attest export --since``).

    since, until = period("2026-11-01", "2026-12-01", now=utc_now())   # a date is midnight UTC
    for done in export_period(w, since, until, Path("evidence/")):     # one ``Exported`` per plan, as it goes
        print(progress_line(done))             # [3/17] sha256:ab12cd34ef56.. 1.2 MB written

A plan ended when it was completed, failed or aborted (``PlanStore.ended_between``); rejected
and expired plans never ran and are not exported (``writ attest export PLAN`` still can). Each
bundle is ``DIR/<plan hex>.bundle.json``, written under a temporary name and linked into place,
so a reader never sees half of one. An existing file is never overwritten: a bundle embeds the
time it was made and a fresh checkpoint, so a second export of the same plan is other bytes, and
the one already there is kept (``kept``) when its manifest names that plan; any other file there
fails that plan's export (``file_exists``). Running the same period again therefore exports only
what is missing. A plan whose bundle cannot be made (``failed``, with its error) does not stop the
others.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from writ.attestations.bundle_format import split_bundle
from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, InputError, WritError
from writ.engine.core.timeutil import iso, parse_iso
from writ.engine.wiring.bundles import export_bundle
from writ.engine.wiring.services import Services
from writ.plans.canonical import parse_strict, sha256_digest
from writ.plans.models import short_plan_id

__all__ = ["Exported", "bundle_file", "export_period", "parse_bound", "period", "progress_line", "summary_line"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_KEPT_BYTES = 256 * 1024 * 1024  # as `writ attest verify` reads one

Status = Literal["written", "kept", "failed"]


def parse_bound(text: str, option: str) -> datetime:
    """``--since``/``--until``: ISO 8601 with ``Z`` or an offset, or a date (``YYYY-MM-DD``: midnight UTC)."""
    text = text.strip()
    if _DATE.fullmatch(text):
        try:
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise InputError(f"{option} {text!r} is not a calendar date (YYYY-MM-DD)") from None
    try:
        return parse_iso(text, option)
    except InputError as e:
        raise InputError(f"{e.message}; or give a date, e.g. 2026-11-22 (midnight UTC)") from None


def period(since: str, until: str | None, *, now: datetime) -> tuple[datetime, datetime]:
    """[since, until) from the options; ``until`` defaults to ``now``; ``InputError`` if it is empty."""
    start = parse_bound(since, "--since")
    end = parse_bound(until, "--until") if until is not None else now
    if start >= end:
        raise InputError(f"--since {iso(start)} is not before --until {iso(end)}: the period [since, until) "
                         "is empty; swap them or widen it")
    return start, end


@dataclass(frozen=True)
class Exported:
    """One plan's outcome in a period export, e.g. ``Exported(3, 17, "sha256:ab..", path, "written", ...)``."""

    index: int
    total: int
    plan_id: str
    path: Path
    status: Status
    sha256: str | None = None
    size: int | None = None
    error: WritError | None = None

    def as_json(self) -> dict[str, Any]:
        """What ``--json`` prints for it: plan_id, path, sha256, bytes, status (and error when it failed)."""
        out: dict[str, Any] = {"plan_id": self.plan_id, "path": str(self.path), "sha256": self.sha256,
                               "bytes": self.size, "status": self.status}
        if self.error is not None:
            out["error"] = {"code": self.error.code, "message": self.error.message}
        return out


def bundle_file(out_dir: Path, plan_id: str) -> Path:
    """``DIR/<plan hex>.bundle.json``."""
    return out_dir / f"{plan_id.removeprefix('sha256:')}.bundle.json"


def export_period(w: Services, since: datetime, until: datetime, out_dir: Path) -> Iterator[Exported]:
    """Export every plan that ended in [since, until) to ``out_dir`` (made if missing), one at a time."""
    ended = w.plans.ended_between(since, until)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"-o {out_dir} is a file: with --since, -o names a directory for the bundles",
                          code=reasons.FILE_EXISTS)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the directory {out_dir}: {e.strerror}") from None
    for index, (plan_id, _) in enumerate(ended, 1):
        yield _export_one(w, plan_id, bundle_file(out_dir, plan_id), index, len(ended))


def _export_one(w: Services, plan_id: str, path: Path, index: int, total: int) -> Exported:
    status: Status
    try:
        if path.exists():
            raw, status = _kept(path, plan_id), "kept"
        else:
            raw, status = export_bundle(w, plan_id), "written"
            if not _link_new(path, raw):  # another export put it there meanwhile
                raw, status = _kept(path, plan_id), "kept"
    except WritError as e:
        return Exported(index, total, plan_id, path, "failed", error=e)
    return Exported(index, total, plan_id, path, status, sha256_digest(raw), len(raw))


def _kept(path: Path, plan_id: str) -> bytes:
    """The bundle already at ``path``, if its manifest names ``plan_id``; ``ConfigError`` otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_KEPT_BYTES + 1)
        named = parse_strict(split_bundle(raw)[1].payload).get("plan_id")
    except (OSError, WritError, AttributeError):
        named = None
    if named != plan_id:
        raise ConfigError(f"{path} exists and is not a bundle of plan {short_plan_id(plan_id)}; it is never "
                          "overwritten: move it away, or export to another directory", code=reasons.FILE_EXISTS)
    return raw


def _link_new(path: Path, raw: bytes) -> bool:
    """Write ``raw`` to ``path`` whole or not at all, never over a file; False if one appeared there first."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(raw)
        os.link(partial, path)
    except FileExistsError:
        return False
    except OSError as e:
        raise ConfigError(f"cannot write the bundle {path}: {e.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    return True


def human_size(size: int) -> str:
    """``1.2 MB``, ``34.5 kB``, ``812 B`` (powers of ten)."""
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    return f"{size / 1000:.1f} kB" if size >= 1000 else f"{size} B"


def progress_line(done: Exported) -> str:
    """``[3/17] sha256:ab12cd34ef56.. 1.2 MB written``, or the error of a failed one."""
    head = f"[{done.index}/{done.total}] {short_plan_id(done.plan_id)}"
    if done.error is not None:
        return f"{head} FAILED error[{done.error.code}]: {done.error.message}"
    return f"{head} {human_size(done.size or 0)} {done.status}"


def summary_line(results: list[Exported], since: datetime, until: datetime, out_dir: Path) -> str:
    """One line: how many plans ended in the period, and how many bundles were written, kept, failed."""
    count = {s: sum(1 for r in results if r.status == s) for s in ("written", "kept", "failed")}
    size = human_size(sum(r.size or 0 for r in results))
    where = f"[{iso(since)}, {iso(until)})"
    if not results:
        return f"no plan ended in {where}: nothing exported to {out_dir}"
    return (f"{len(results)} plan(s) ended in {where}: {count['written']} bundle(s) written, {count['kept']} kept "
            f"(already in {out_dir}), {count['failed']} failed; {size}")
