"""``writ principals``: the people and agents Writ knows, each with exactly one role.

    $ writ principals add plan-bot --role planner
    added principal plan-bot (planner); groups: none (add one with `writ groups add GROUP plan-bot`)
    $ writ principals list --json | jq '.[].name'
"""

from __future__ import annotations

from typing import get_args

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import JSON_OPTION, echo_json, services, table
from writ.engine.core.timeutil import utc_now
from writ.plans.trust import Role

ROLES: tuple[str, ...] = get_args(Role)


@click.group("principals")
def principals() -> None:
    """Add and list principals: people and agents, each with exactly one role.

    \b
    Example:
      writ principals add alice --role approver
      writ principals list
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
    """List principals with their role, their groups and how many of their keys are valid now.

    With --json: a list of {name, role, groups, keys: {valid, total}}.

    \b
    Example:
      writ principals list
      writ principals list --json
    """
    with services() as w:
        people = w.trust.principals()
        keys = w.trust.keys()
    now = utc_now()
    counts = {p.name: (sum(1 for k in keys if k.principal == p.name and k.status(now) == "valid"),
                       sum(1 for k in keys if k.principal == p.name)) for p in people}
    if as_json:
        echo_json([{"name": p.name, "role": p.role, "groups": list(p.groups),
                    "keys": {"valid": counts[p.name][0], "total": counts[p.name][1]}} for p in people])
        return
    if not people:
        click.echo("no principals; add one with `writ principals add NAME --role ROLE`")
        return
    rows = [("PRINCIPAL", "ROLE", "GROUPS", "KEYS")]
    rows += [(p.name, p.role, ",".join(p.groups) or "-", f"{counts[p.name][0]} valid / {counts[p.name][1]}")
             for p in people]
    table(rows)
