"""``writ groups add|remove|list``: approver groups in the trust store, beside the policy data's.

    $ writ groups add code-owners dave
    dave is now in code-owners (members: alice, bob, dave)
    $ writ groups list
    code-owners  alice (policy data), bob (policy data), dave
    $ writ groups remove code-owners dave

A group's members are the union of ``data.writ.groups`` (``policies/writ/groups.json``) and
what these commands store; both the gateway and ``writ approve`` read that union from the
trust store, and ``writ trust export`` exports it. Every change is audited (``trust_event``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import echo_json

if TYPE_CHECKING:
    from writ.plans.trust_store import TrustStore


@contextmanager
def _trust() -> Iterator[TrustStore]:
    from writ.engine.wiring.services import open_services

    with open_services(click.get_current_context().obj, create=False) as w:
        yield w.trust


@click.group("groups")
def groups() -> None:
    """Add principals to groups, remove them, list the groups in force.

    \b
    Example:
      writ groups add code-owners alice
      writ groups list --json
    """


@groups.command("add")
@click.argument("group")
@click.argument("principal")
@writ_command
def groups_add(group: str, principal: str) -> None:
    """Add PRINCIPAL (a principal of the trust store) to GROUP.

    \b
    Example:
      writ principals add alice --role approver && writ groups add code-owners alice
    """
    with _trust() as trust:
        trust.add_group_member(group, principal)
        members = trust.groups()[group]
    click.echo(f"{principal} is now in {group} (members: {', '.join(members)})")


@groups.command("remove")
@click.argument("group")
@click.argument("principal")
@writ_command
def groups_remove(group: str, principal: str) -> None:
    """Remove PRINCIPAL from GROUP (only what `writ groups add` stored; the policy data's are in its file).

    \b
    Example:
      writ groups remove code-owners alice
    """
    with _trust() as trust:
        trust.remove_group_member(group, principal)
        left = trust.groups().get(group, ())
    click.echo(f"{principal} is no longer in {group} (members: {', '.join(left) or 'none'})")


@groups.command("list")
@click.option("--json", "as_json", is_flag=True,
              help="Print {group: [{principal, sources}]}; sources: policy_data, trust_store.")
@writ_command
def groups_list(as_json: bool) -> None:
    """List every group in force and its members; members from the policy data are marked.

    \b
    Example:
      writ groups list
      writ groups list --json
    """
    with _trust() as trust:
        found = trust.memberships()
    if as_json:
        doc: dict[str, list[dict[str, object]]] = {}
        for m in found:
            doc.setdefault(m.group, []).append({"principal": m.principal, "sources": list(m.sources)})
        echo_json(doc)
        return
    if not found:
        click.echo("no groups (writ groups add GROUP PRINCIPAL)")
        return
    from writ.plans.trust_groups import TRUST_STORE

    by_group: dict[str, list[str]] = {}
    for m in found:
        mark = "" if TRUST_STORE in m.sources else " (policy data)"
        by_group.setdefault(m.group, []).append(m.principal + mark)
    width = max(len(g) for g in by_group)
    for group, members in by_group.items():
        click.echo(f"{group.ljust(width)}  {', '.join(members)}")
