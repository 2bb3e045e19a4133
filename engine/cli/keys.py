"""``writ keys`` and ``writ trust``: the Ed25519 keys of principals, and the trust root auditors verify against.

    $ writ keys new --principal plan-bot            # private key to .writ/keys/plan-bot-<id>.pem (0600)
    $ writ keys new --principal alice               # an approver's: ~/.config/writ/keys/alice-<id>.pem
    $ writ keys list --json | jq '.[] | select(.status == "valid") | .key_id'
    $ writ keys revoke 3f2a9c0d41be --at 2026-11-20T00:00:00Z
    $ writ trust export -o trust-root.json          # for `writ plan verify FILE --trust trust-root.json`
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import JSON_OPTION, echo_json, services, shown_time, table, write_new
from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError
from writ.engine.core.settings import Settings
from writ.engine.core.timeutil import parse_iso, utc_now
from writ.plans.keys import PrivateKey, short_key_id


@click.group("keys")
def keys() -> None:
    """Create, list and revoke the Ed25519 keys of principals.

    \b
    Example:
      writ keys new --principal alice
      writ keys list --principal alice
    """


@keys.command("new")
@click.option("--principal", required=True, help="Whose key; it takes the principal's role.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the private key. Default for an approver: its own key directory, "
              "$XDG_CONFIG_HOME/writ/keys/ (else ~/.config/writ/keys/), never the data directory; for any other "
              "role: <data dir>/keys/, where the gateway finds it. The file is <principal>-<key id>.pem.")
@writ_command
def keys_new(principal: str, out: Path | None) -> None:
    """Generate an Ed25519 key for a principal: trust its public key, write the private key (mode 0600).

    The private key is never printed and never overwrites a file. Keep it where agents
    cannot read it. An approver's key stays with the approver: by default in its own key
    directory (mode 0700), and never inside the data directory, which the gateway serves
    from (refused: key_file_insecure). Planners' and executors' keys go to <data dir>/keys/,
    where `writ mcp` finds them.

    \b
    Example:
      writ keys new --principal alice               # ~/.config/writ/keys/alice-<id>.pem
      writ keys new --principal plan-bot            # <data dir>/keys/plan-bot-<id>.pem
      writ keys new --principal plan-bot --out plan-bot.pem
    """
    from writ.engine.wiring.services import key_file_name

    with services() as w:
        who = w.trust.principal(principal)
        key = PrivateKey.generate()
        path = out if out is not None else key_dir_for(who.role, w.settings) / key_file_name(who.name, key.key_id)
        if who.role == "approver":
            refuse_in_data_dir(path, w.settings)
        key.save(path)
        try:
            w.trust.add_key(who.name, key.public_key)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    click.echo(f"key {key.key_id} for {who.name} ({who.role})")
    click.echo(f"private key written to {path} (mode 0600)")
    if who.role == "approver":
        click.echo(f"an approver's key stays with the approver, outside the data directory: sign with "
                   f"`writ approve PLAN --key {path}`")


def key_dir_for(role: str, settings: Settings) -> Path:
    """Where ``writ keys new`` puts a key of ``role`` by default (created, mode 0700)."""
    from writ.engine.gateway.exposure import approver_keys_dir, private_dir
    from writ.engine.wiring.services import keys_dir

    return private_dir(approver_keys_dir()) if role == "approver" else keys_dir(settings)


def refuse_in_data_dir(path: Path, settings: Settings) -> None:
    """``ConfigError`` ``key_file_insecure`` when an approver's key file would lie in the data directory."""
    from writ.engine.gateway.exposure import inside

    if inside(path.expanduser().absolute(), settings.home):
        raise ConfigError(f"{path} is inside the data directory {settings.home}: an approver's key does not belong "
                          "where the gateway and its upstreams run; leave out --out (your own key directory) or "
                          "write it elsewhere", code=reasons.KEY_FILE_INSECURE)


@keys.command("list")
@click.option("--principal", default=None, help="Only this principal's keys.")
@JSON_OPTION
@writ_command
def keys_list(principal: str | None, as_json: bool) -> None:
    """List trusted keys: id, principal, role, and whether each may sign now.

    With --json: a list of {key_id (in full), principal, role, public_key, created_at,
    not_before, not_after, revoked_at, status}.

    \b
    Example:
      writ keys list --principal alice
      writ keys list --json
    """
    with services() as w:
        found = w.trust.keys(principal)
    now = utc_now()
    if as_json:
        echo_json([{"key_id": k.key_id, "principal": k.principal, "role": k.role, "public_key": k.public_key,
                    "created_at": k.created_at, "not_before": k.not_before, "not_after": k.not_after,
                    "revoked_at": k.revoked_at, "status": k.status(now)} for k in found])
        return
    if not found:
        click.echo("no keys; create one with `writ keys new --principal NAME`")
        return
    rows = [("KEY ID", "PRINCIPAL", "ROLE", "CREATED", "STATUS")]
    rows += [(short_key_id(k.key_id), k.principal, k.role, shown_time(k.created_at), k.status(now)) for k in found]
    table(rows)


@keys.command("revoke")
@click.argument("key_id")
@click.option("--at", "at", default=None, metavar="TIME",
              help="Revoked from this time on (ISO 8601, e.g. 2026-11-22T10:00:00Z; default now).")
@writ_command
def keys_revoke(key_id: str, at: str | None) -> None:
    """Revoke key KEY_ID (a full id or a unique prefix, as `writ keys list` shows): nothing it signs counts from TIME on.

    Approvals signed with it stop counting too, even for plans already approved.

    \b
    Example:
      writ keys list --principal alice          # the KEY ID column
      writ keys revoke 3f2a9c0d41be
      writ keys revoke 3f2a9c0d41be --at 2026-11-20T00:00:00Z
    """
    when = parse_iso(at, "--at") if at else None
    with services() as w:
        k = w.trust.revoke_key(key_id, at=when)
    click.echo(f"revoked key {short_key_id(k.key_id)} of {k.principal} ({k.role}) from {shown_time(k.revoked_at)}")


@click.group("trust")
def trust() -> None:
    """Export the trust root: the public keys and groups an auditor verifies against offline.

    \b
    Example:
      writ trust export -o trust-root.json
    """


@trust.command("export")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="JSON file to write (never overwritten).")
@writ_command
def trust_export(output: Path) -> None:
    """Write every trusted key and the approver groups, with the time and a sha256 digest.

    Use it offline with `writ plan verify FILE --trust trust-root.json`. It also holds the instance
    public key (instance_key: public key, checkpoint origin, note key id) that signs the audit
    log's checkpoints.

    \b
    Example:
      writ trust export -o trust-root.json
    """
    from writ.attestations.checkpoints import instance_key_export

    with services() as w:
        root = w.trust.export_trust_root()
        instance = instance_key_export(w.settings)  # outside the digest: it checks checkpoints, not plans
    if instance is not None:
        root["instance_key"] = instance
    data = (json.dumps(root, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    write_new(output, data, "trust root")
    t = root["trust"]
    click.echo(f"wrote {output}: {len(t['keys'])} keys, {len(t['groups'])} groups, digest {root['digest']}")
