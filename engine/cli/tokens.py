"""``writ tokens new|list|revoke``: the bearer tokens agents use for the gateway at ``/mcp`` of ``writ serve``.

    $ writ tokens new --principal plan-bot > plan-bot.token
    token tok-3f2a9c0d41be for plan-bot; it is shown only now
    $ writ tokens list --json
    $ writ tokens revoke tok-3f2a9c0d41be

Only a token's sha256 is stored; the token itself is printed once, alone on stdout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import echo_json

if TYPE_CHECKING:
    from writ.engine.gateway.tokens import TokenStore


@contextmanager
def _tokens() -> Iterator[TokenStore]:
    from writ.engine.core.db import open_database
    from writ.engine.gateway.tokens import TokenStore

    with open_database(click.get_current_context().obj, create=False) as store:
        yield TokenStore(store)


@click.group("tokens")
def tokens() -> None:
    """Issue, list and revoke the bearer tokens agents use for the gateway at /mcp of `writ serve`.

    \b
    Example:
      writ tokens new --principal plan-bot
      writ tokens revoke tok-3f2a9c0d41be
    """


@tokens.command("new")
@click.option("--principal", required=True, metavar="NAME", help="Who the token acts for (a principal of the trust store).")
@writ_command
def tokens_new(principal: str) -> None:
    """Issue a token for PRINCIPAL and print it once (stdout, alone): only its sha256 is kept.

    \b
    Example:
      writ tokens new --principal plan-bot > plan-bot.token
    """
    with _tokens() as store:
        record, secret = store.issue(principal)
    click.echo(f"token {record.id} for {record.principal}; it is shown only now", err=True)
    click.echo(secret)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {id, principal, created_at, revoked_at}.")
@writ_command
def tokens_list(as_json: bool) -> None:
    """List tokens: id, principal, created, revoked (never the token itself).

    \b
    Example:
      writ tokens list
      writ tokens list --json
    """
    with _tokens() as store:
        records = store.list()
    if as_json:
        echo_json([{"id": r.id, "principal": r.principal, "created_at": r.created_at, "revoked_at": r.revoked_at}
                   for r in records])
        return
    if not records:
        click.echo("no tokens (writ tokens new --principal NAME)")
    for r in records:
        state = f"revoked {r.revoked_at}" if r.revoked_at else "active"
        click.echo(f"{r.id}  {r.principal}  created {r.created_at}  {state}")


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@writ_command
def tokens_revoke(token_id: str) -> None:
    """Revoke token ID: from now on it is refused (401).

    \b
    Example:
      writ tokens revoke tok-3f2a9c0d41be
    """
    with _tokens() as store:
        record = store.revoke(token_id)
    click.echo(f"revoked {record.id} ({record.principal})")
