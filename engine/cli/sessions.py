"""``writ sessions list``: the agent sessions of every gateway, and the principals locked or disabled.

    $ writ sessions list
    locked or disabled principals:
    PRINCIPAL  STATE   SINCE                 SESSION     REASONS
    exec-bot   locked  2026-12-08T10:00:00Z  s-1f0c...   step_not_in_plan
    open sessions:
    SESSION     PRINCIPAL  TRANSPORT  PROCESS       STARTED               LOCKED
    s-1f0c...   exec-bot   stdio      host:4242     2026-12-08T09:58:00Z  2026-12-08T10:00:00Z
    $ writ principals unlock exec-bot --reason "reviewed"

A lock belongs to the principal: every session of it is refused until an operator unlocks it
(``writ principals unlock``). A session whose process died without ending shows as open;
its ``PROCESS`` (host:pid) tells which.
"""

from __future__ import annotations

from typing import Any

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import JSON_OPTION, echo_json, services, shown_time, table


@click.group("sessions")
def sessions() -> None:
    """The gateways' agent sessions, and which principals are locked or disabled.

    \b
    Example:
      writ sessions list
      writ sessions list --all --json
    """


@sessions.command("list")
@click.option("--all", "include_ended", is_flag=True, help="Also the sessions that ended.")
@JSON_OPTION
@writ_command
def sessions_list(include_ended: bool, as_json: bool) -> None:
    """List open sessions (--all: every session) and the principals locked or disabled now.

    With --json: {"principals": [{principal, locked_at, lock_session, lock_decision, lock_reasons,
    disabled_at, disable_reason}], "sessions": [{id, principal, transport, process, started_at,
    ended_at, locked_at}]}.

    \b
    Example:
      writ sessions list
      writ principals unlock exec-bot --reason "reviewed the session"
    """
    from writ.engine.gateway.sessions import SessionRegistry

    with services() as w:
        states = w.trust.status.states()
        records = SessionRegistry(w.store).list(include_ended=include_ended)
    if as_json:
        echo_json({"principals": [_state_json(s) for s in states], "sessions": [vars(r) for r in records]})
        return
    if states:
        click.echo("locked or disabled principals:")
        table([("PRINCIPAL", "STATE", "SINCE", "SESSION", "REASONS"), *(
            (s.principal, "disabled" if s.disabled else "locked", shown_time(s.disabled_at or s.locked_at),
             s.lock_session or "-", (s.disable_reason or "")[:60] if s.disabled else ",".join(s.lock_reasons) or "-")
            for s in states)])
    else:
        click.echo("no principal is locked or disabled")
    if not records:
        click.echo("no sessions" if include_ended else "no open sessions")
        return
    click.echo("sessions:" if include_ended else "open sessions:")
    table([("SESSION", "PRINCIPAL", "TRANSPORT", "PROCESS", "STARTED", "ENDED", "LOCKED"), *(
        (r.id, r.principal, r.transport, r.process, _short(r.started_at), _short(r.ended_at), _short(r.locked_at))
        for r in records)])


def _short(text: str | None) -> str:
    """An RFC 3339 time to the second, ``-`` for none."""
    return text.split(".")[0].removesuffix("Z") + "Z" if text else "-"


def _state_json(state: Any) -> dict[str, Any]:
    return {"principal": state.principal, "locked_at": state.locked_at, "lock_session": state.lock_session,
            "lock_decision": state.lock_decision, "lock_reasons": list(state.lock_reasons),
            "disabled_at": state.disabled_at, "disable_reason": state.disable_reason}
