"""``writ approvers``: invite an approver to approve in the browser, with a key that never leaves it.

    $ writ approvers invite alice --hours 8
    invite inv-3f2a9c1b0d4e for alice (approver), valid until 2026-12-12T18:00:00Z, once:
    http://127.0.0.1:8420/enrol/Yk1c...

The link (``WRIT_PUBLIC_URL/enrol/<token>``) works once and expires after ``--hours``. Give it to
the approver over a channel you trust: whoever opens it first enrols a key for them. Only its
SHA-256 is stored; the invite is audited (``approver_invite``), never the token.
"""

from __future__ import annotations

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import JSON_OPTION, echo_json, services, settings, shown_time


@click.group("approvers")
def approvers() -> None:
    """Invite approvers to the web approval form (their browser makes and keeps their key).

    \b
    Example:
      writ principals add alice --role approver
      writ approvers invite alice --hours 8
    """


@approvers.command("invite")
@click.argument("name")
@click.option("--hours", default=24.0, show_default=True, type=float,
              help="How long the link stays valid (at most 168); it works once.")
@JSON_OPTION
@writ_command
def approvers_invite(name: str, hours: float, as_json: bool) -> None:
    """Print a one-time link that lets NAME (an approver) enrol a browser key and approve in the browser.

    NAME must exist with role approver and be neither disabled nor locked. The link is
    WRIT_PUBLIC_URL/enrol/<token>; serve Writ there (`writ serve`) over TLS or on loopback,
    where browsers allow WebCrypto.

    \b
    Example:
      writ approvers invite alice
      writ approvers invite bob --hours 2 --json
    """
    from writ.engine.web.invites import InviteStore, invite_link

    with services() as w:
        invite, token = InviteStore(w.store, w.trust, audit=w.audit).issue(name, hours=hours)
    link = invite_link(settings().public_url, token)
    if as_json:
        echo_json({"invite_id": invite.id, "principal": invite.principal, "expires_at": invite.expires_at,
                   "link": link})
        return
    click.echo(f"invite {invite.id} for {invite.principal} (approver), valid until {shown_time(invite.expires_at)}, "
               "once:")
    click.echo(link)
