"""``writ principals``: the people and agents Writ knows, each with exactly one role.

    $ writ principals add plan-bot --role planner
    added principal plan-bot (planner); groups: none (add one with `writ groups add GROUP plan-bot`)
    $ writ principals list --json | jq '.[].name'
    $ writ principals unlock exec-bot --reason "reviewed: the issue text told it to delete files"
    $ writ principals disable exec-bot --reason "credentials leaked"
    $ writ principals contact alice --email alice@example.com     # where approval notices are emailed

A principal is locked when one of its sessions violates policy (``lock_session``): every session
of it, in every gateway process, is refused (``principal_locked``) until an operator unlocks it.
A disabled principal's tokens, keys and gateways stop working for good.
"""

from __future__ import annotations

from typing import get_args

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import JSON_OPTION, echo_json, services, shown_time, table
from writ.engine.core.timeutil import utc_now
from writ.plans.trust import Role

ROLES: tuple[str, ...] = get_args(Role)


@click.group("principals")
def principals() -> None:
    """Add and list principals (people and agents, each with exactly one role); unlock or disable one.

    \b
    Example:
      writ principals add alice --role approver
      writ principals list
      writ principals unlock exec-bot --reason "reviewed the session"
    """


@principals.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="The principal's one role.")
@writ_command
def principals_add(name: str, role: str) -> None:
    """Register principal NAME with one role. Someone who approves and audits gets two principals.

    \b
    Example:
      writ principals add plan-bot --role planner
      writ principals add alice --role approver
    """
    with services() as w:
        p = w.trust.add_principal(name, role)
    groups = ", ".join(p.groups) or f"none (add one with `writ groups add GROUP {p.name}`)"
    click.echo(f"added principal {p.name} ({p.role}); groups: {groups}")


@principals.command("list")
@JSON_OPTION
@writ_command
def principals_list(as_json: bool) -> None:
    """List principals with their role, their groups, how many of their keys are valid now, and their email.

    With --json: a list of {name, role, groups, keys: {valid, total}, email}.

    \b
    Example:
      writ principals list
      writ principals list --json
    """
    from writ.attestations.audit import AuditLog
    from writ.plans.contacts import ContactStore

    with services() as w:
        people = w.trust.principals()
        keys = w.trust.keys()
        emails = ContactStore(w.store, audit=AuditLog(w.store)).emails(p.name for p in people)
    now = utc_now()
    counts = {p.name: (sum(1 for k in keys if k.principal == p.name and k.status(now) == "valid"),
                       sum(1 for k in keys if k.principal == p.name)) for p in people}
    if as_json:
        echo_json([{"name": p.name, "role": p.role, "groups": list(p.groups),
                    "keys": {"valid": counts[p.name][0], "total": counts[p.name][1]},
                    "email": emails.get(p.name)} for p in people])
        return
    if not people:
        click.echo("no principals; add one with `writ principals add NAME --role ROLE`")
        return
    rows = [("PRINCIPAL", "ROLE", "GROUPS", "KEYS", "EMAIL")]
    rows += [(p.name, p.role, ",".join(p.groups) or "-", f"{counts[p.name][0]} valid / {counts[p.name][1]}",
              emails.get(p.name, "-")) for p in people]
    table(rows)


@principals.command("contact")
@click.argument("name")
@click.option("--email", metavar="ADDR", help="The address approval notices for NAME are emailed to.")
@click.option("--clear", is_flag=True, help="Remove NAME's email: no more notices by email.")
@writ_command
def principals_contact(name: str, email: str | None, clear: bool) -> None:
    """Set or clear the email of principal NAME: where the approval workflow emails its notices (audited).

    Email is sent only when an SMTP server is configured (WRIT_NOTIFY__SMTP_HOST); an approver
    without an email is told by the webhook alone. An email is never trusted: it proves nothing.

    \b
    Example:
      writ principals contact alice --email alice@example.com
      writ principals contact alice --clear
    """
    from writ.attestations.audit import AuditLog
    from writ.plans.contacts import ContactStore, check_email

    if (email is None) == (not clear):
        raise click.UsageError("give exactly one of --email ADDR and --clear")
    new = check_email(email) if email is not None else None
    with services() as w:
        before = ContactStore(w.store, audit=AuditLog(w.store)).set_email(name, new)
    if new is None:
        click.echo(f"cleared the email of {name} (was {before})" if before else f"{name} had no email; nothing changed")
    elif before == new:
        click.echo(f"email of {name}: {new} (unchanged)")
    else:
        click.echo(f"email of {name}: {new}" + (f" (was {before})" if before else ""))


REASON_OPTION = click.option("--reason", required=True, metavar="TEXT", help="Why: it goes to the audit log.")


@principals.command("unlock")
@click.argument("name")
@REASON_OPTION
@writ_command
def principals_unlock(name: str, reason: str) -> None:
    """Lift the lock on principal NAME after reviewing what its session did (audited, with --reason).

    A principal is locked when one of its sessions violates policy; every session of it is refused
    until it is unlocked. A session that was locked itself stays locked: the agent starts a new one.

    \b
    Example:
      writ sessions list
      writ principals unlock exec-bot --reason "reviewed: the issue text told it to delete files"
    """
    with services() as w:
        lifted = w.trust.unlock_principal(name, reason=reason)
    why = ", ".join(lifted.lock_reasons) or "a policy violation"
    click.echo(f"unlocked {lifted.principal} (locked since {shown_time(lifted.locked_at)} after {why} "
               f"in session {lifted.lock_session or '?'})")


@principals.command("disable")
@click.argument("name")
@REASON_OPTION
@writ_command
def principals_disable(name: str, reason: str) -> None:
    """Disable principal NAME for good: its tokens stop at once, its keys are revoked, its gateway refuses to start.

    Keys are revoked from the disable time on: what they signed before still verifies, nothing
    after. There is no enable: add a new principal (and new keys) instead. Audited, with --reason.

    \b
    Example:
      writ principals disable exec-bot --reason "its host was compromised"
    """
    with services() as w:
        state, revoked = w.trust.disable_principal(name, reason=reason)
    click.echo(f"disabled {state.principal} since {shown_time(state.disabled_at)}; "
               f"{len(revoked)} key(s) revoked from then on")
