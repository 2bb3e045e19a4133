"""``writ audit``: check and read the hash-chained audit log, and sign checkpoints of its Merkle tree.

    $ writ audit verify
    audit log OK: 1200 entries, head sha256:9a1f...; its tree matches 2 signed checkpoints (the largest of 1200 entries)
    $ writ audit verify --checkpoint auditor-copy.log
    audit log bad at entry 1199 (truncated): the log ends at entry 1198 but a signed checkpoint ...
    $ writ audit checkpoint            # sign the tree now: the C2SP signed note, also in <data dir>/checkpoints.log
    $ writ audit consistency --old 1200 --new 1500 -o proof.json   # for `writ attest verify --proof`
    $ writ audit list -n 5

Exit status: 0 when the log verifies, 1 when an entry is bad, 2 when the log or a checkpoint
cannot be read or does not verify (``error[code]: message`` on stderr).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import JSON_OPTION, echo_json
from writ.engine.core import reasons
from writ.engine.core.errors import InputError

if TYPE_CHECKING:
    from writ.attestations.checkpoints import HeldCheckpoint
    from writ.engine.core.settings import Settings

ENTRY_HASH = re.compile(r"sha256:[0-9a-f]{64}")


@click.group("audit")
def audit() -> None:
    """Check and read the hash-chained audit log; sign checkpoints of its Merkle tree.

    \b
    Example:
      writ audit verify
      writ audit checkpoint
      writ audit list -n 20
    """


@audit.command("verify")
@click.option(
    "--expected-head",
    metavar="HASH",
    help="An entry hash recorded earlier (sha256: and 64 hex digits); the log must still contain it.",
)
@click.option(
    "--checkpoint", "checkpoint_files", multiple=True, metavar="FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A file of signed checkpoints kept elsewhere (a copy of checkpoints.log, or notes from the webhook); "
    "the log must reproduce each one's tree. Repeatable.",
)
@JSON_OPTION
@writ_command(error_exit=2)
def verify(expected_head: str | None, checkpoint_files: tuple[Path, ...], as_json: bool) -> None:
    """Walk the whole chain and the Merkle tree; name the first bad entry: edited, deleted, truncated, reordered.

    The entries must reproduce the root of every signed checkpoint in the data directory's
    checkpoint file and in each --checkpoint FILE (signatures checked with the instance key):
    a cut tail, a deleted entry and an edited entry are found even with every hash recomputed.
    With --json: {ok, entries, head, first_bad_seq, first_bad_seq_max, problem, message,
    checkpoints, checkpoint_size}.

    \b
    Example:
      writ audit verify
      cp .writ/checkpoints.log /safe/place/ && writ audit verify --checkpoint /safe/place/checkpoints.log
    """
    if expected_head is not None and not ENTRY_HASH.fullmatch(expected_head):
        raise InputError(f"--expected-head {expected_head[:80]!r} is not an entry hash: sha256: and 64 lowercase "
                         "hex digits, as `writ audit verify` prints after 'head'", code=reasons.INPUT_INVALID)
    from writ.attestations.audit import AuditLog  # the database layer: only once the input is good
    from writ.engine.core.db import open_database

    settings: Settings = click.get_current_context().obj
    held, sources = _held_checkpoints(settings, checkpoint_files)
    with open_database(settings, create=False) as store:
        report = AuditLog(store).verify(expected_head, checkpoints=held)
    if as_json:
        echo_json({"ok": report.ok, "entries": report.entries, "head": report.head,
                   "first_bad_seq": report.first_bad_seq, "first_bad_seq_max": report.first_bad_seq_max,
                   "problem": report.problem.value if report.problem else None, "message": report.message,
                   "checkpoints": report.checkpoints, "checkpoint_size": report.checkpoint_size})
        sys.exit(0 if report.ok else 1)
    click.echo(report.message)
    if not report.ok:
        click.echo(f"{report.entries} entries before it verified; last good head {report.head}")
        sys.exit(1)
    if sources:
        click.echo(sources)


def _held_checkpoints(settings: Settings, files: tuple[Path, ...]) -> tuple[list[HeldCheckpoint], str]:
    """The signed checkpoints to check the log against, each verified; and a line saying where they came from.

    No instance key (no `writ init`) and no --checkpoint: none, and nothing to say.
    """
    from writ.attestations.checkpoints import checkpoint_file, read_checkpoint_file
    from writ.attestations.instance_key import instance_key_path, load_instance_key

    own = checkpoint_file(settings)
    if not instance_key_path(settings.home).exists() and not files:
        return [], ""
    public_key = load_instance_key(settings.home).public_key
    held = read_checkpoint_file(own, public_key)
    for path in files:
        if not path.is_file():
            raise InputError(f"--checkpoint {path}: no such file", code=reasons.INPUT_INVALID)
        held += read_checkpoint_file(path, public_key)
    named = [str(own), *map(str, files)]
    if not held:
        return held, f"no signed checkpoint in {', '.join(named)}: a cut tail goes unnoticed until one is made"
    return held, f"checked against {len(held)} signed checkpoints from {', '.join(named)}"


@audit.command("checkpoint")
@JSON_OPTION
@writ_command(error_exit=2)
def checkpoint(as_json: bool) -> None:
    """Sign a checkpoint of the audit log's Merkle tree now, with the instance key; print it.

    The checkpoint is a C2SP signed note (origin, tree size, base64 root). It is stored in the
    database, appended to the checkpoint file (WRIT_CHECKPOINT__FILE, default
    <data dir>/checkpoints.log) and POSTed to WRIT_CHECKPOINT__WEBHOOK_URL when set. If the log
    did not grow since the last checkpoint, that one is printed. Writ also makes them on its own,
    every WRIT_CHECKPOINT__EVERY_ENTRIES entries or WRIT_CHECKPOINT__EVERY_SECONDS seconds.
    With --json: {size, root, origin, note, created_at, new, file}.

    \b
    Example:
      writ audit checkpoint > latest-checkpoint.txt
      writ audit checkpoint --json | jq -r .root
    """
    from writ.attestations.checkpoints import Checkpointer
    from writ.engine.core.db import open_database

    settings: Settings = click.get_current_context().obj
    with open_database(settings, create=False) as store:
        checkpoints = Checkpointer.from_settings(settings, store)
        made = checkpoints.checkpoint()
    c = made.checkpoint
    if as_json:
        echo_json({"size": c.size, "root": c.root_b64, "origin": c.origin, "note": made.note,
                   "created_at": made.created_at, "new": made.new,
                   "file": str(checkpoints.file) if checkpoints.file else None})
        return
    click.echo(made.note, nl=False)


@audit.command("consistency")
@click.option("--old", "old_size", required=True, type=click.IntRange(min=1), metavar="N",
              help="The size of the older tree (e.g. the bundle's checkpoint).")
@click.option("--new", "new_size", type=click.IntRange(min=1), metavar="M",
              help="The size of the later tree the auditor holds a checkpoint of (default: the latest stored one).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="File to write the proof to (never overwritten); default: print it.")
@writ_command(error_exit=2)
def consistency(old_size: int, new_size: int | None, output: Path | None) -> None:
    """Prove the audit log's tree of N entries is a prefix of the tree of M entries (RFC 6962), as JSON.

    For an auditor holding a bundle (its checkpoint of N entries) and a later signed checkpoint
    of M entries: `writ attest verify BUNDLE --trust ROOT --checkpoint LATER.note --proof FILE`
    then checks offline that the log was only appended to in between. The proof needs no
    trust: both checkpoints' signatures carry it.

    \b
    Example:
      writ audit consistency --old 1200 --new 1500 -o proof.json
    """
    from writ.attestations.checkpoints import Checkpointer
    from writ.attestations.held import consistency_document
    from writ.attestations.tree import AuditTree
    from writ.engine.cli.support import write_new
    from writ.engine.core.db import open_database

    settings: Settings = click.get_current_context().obj
    with open_database(settings, create=False) as store:
        if new_size is None:
            latest = Checkpointer.from_settings(settings, store).latest()
            if latest is None:
                raise InputError("there is no stored checkpoint: give --new, or sign one with `writ audit checkpoint`")
            new_size = latest.checkpoint.size
        tree = AuditTree(store)
        if not old_size <= new_size <= tree.size():
            raise InputError(f"no consistency proof from {old_size} to {new_size} entries: the log holds "
                             f"{tree.size()} (need N <= M <= that)")
        doc = consistency_document(tree.root(old_size), tree.root(new_size), tree.consistency_proof(old_size, new_size))
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    write_new(output, text.encode(), "consistency proof")
    click.echo(f"wrote {output}: consistency of the tree of {old_size} entries with the tree of {new_size}")


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

