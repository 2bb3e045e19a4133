"""``writ audit``: check and read the hash-chained audit log.

    $ writ audit verify
    audit log OK: 1200 entries, head sha256:9a1f...
    $ writ audit verify --expected-head sha256:77c0...
    audit log bad at entry 1199 (truncated): the log ends at entry 1198 ...
    $ writ audit list -n 5

Exit status: 0 when the chain verifies, 1 when an entry is bad, 2 when the log
cannot be read (``error[code]: message`` on stderr).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import JSON_OPTION, echo_json
from writ.engine.core import reasons
from writ.engine.core.errors import InputError

ENTRY_HASH = re.compile(r"sha256:[0-9a-f]{64}")


@click.group("audit")
def audit() -> None:
    """Check and read the hash-chained audit log.

    \b
    Example:
      writ audit verify
      writ audit list -n 20
    """


@audit.command("verify")
@click.option(
    "--expected-head",
    metavar="HASH",
    help="An entry hash recorded earlier (a checkpoint: sha256: and 64 hex digits); the log must still contain it.",
)
@JSON_OPTION
@writ_command(error_exit=2)
def verify(expected_head: str | None, as_json: bool) -> None:
    """Walk the whole chain and name the first bad entry: edited, deleted, reordered, chain broken.

    With --expected-head, also find a cut tail: entries removed from the end. With --json:
    {ok, entries, head, first_bad_seq, problem, message}.

    \b
    Example:
      writ audit verify --json > checkpoint.json
      writ audit verify --expected-head "$(jq -r .head checkpoint.json)"
    """
    if expected_head is not None and not ENTRY_HASH.fullmatch(expected_head):
        raise InputError(f"--expected-head {expected_head[:80]!r} is not an entry hash: sha256: and 64 lowercase "
                         "hex digits, as `writ audit verify` prints after 'head'", code=reasons.INPUT_INVALID)
    from writ.attestations.audit import AuditLog  # the database layer: only once the input is good
    from writ.engine.core.db import open_database

    with open_database(click.get_current_context().obj, create=False) as store:
        report = AuditLog(store).verify(expected_head)
    if as_json:
        echo_json({"ok": report.ok, "entries": report.entries, "head": report.head,
                   "first_bad_seq": report.first_bad_seq,
                   "problem": report.problem.value if report.problem else None, "message": report.message})
        sys.exit(0 if report.ok else 1)
    click.echo(report.message)
    if not report.ok:
        click.echo(f"{report.entries} entries before it verified; last good head {report.head}")
        sys.exit(1)


@audit.command("list")
@click.option(
    "-n",
    "--last",
    "count",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many entries, counting back from the newest.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry, per line.")
@writ_command(error_exit=2)
def list_entries(count: int, as_json: bool) -> None:
    """Show the newest entries, oldest first (unverified: run `writ audit verify` for that).

    \b
    Example:
      writ audit list -n 5
      writ audit list --json | jq .payload
    """
    from writ.attestations.audit import AuditLog
    from writ.engine.core.db import open_database

    with open_database(click.get_current_context().obj, create=False) as store:
        entries = AuditLog(store).tail(count)
    for entry in entries:
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(entry), sort_keys=True))
        else:
            payload = json.dumps(entry.payload, sort_keys=True, separators=(",", ":"))
            if len(payload) > 60:
                payload = payload[:59] + "…"
            click.echo(
                f"{entry.seq:>6}  {entry.created_at}  {entry.kind:<12}  {entry.entry_hash[:19]}  {payload}"
            )

