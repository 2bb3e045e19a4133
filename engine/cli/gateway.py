"""``writ mcp``: the gateway as a stdio MCP server, acting for one principal of the trust store.

    $ writ principals add plan-bot --role planner && writ keys new --principal plan-bot
    $ writ mcp --principal plan-bot --config writ.toml --data-dir ~/.writ

stdout is the MCP wire: nothing else is printed there. Startup errors are one line on
stderr (``error[code]: message``, exit 1); logs go to stderr.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from writ.engine.cli.common import writ_command
from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, InputError
from writ.engine.core.settings import Settings


@click.command("mcp")
@click.option("--principal", required=True, metavar="NAME",
              help="Who the gateway acts for: a principal of the trust store (writ principals add).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), default=Path("writ.toml"),
              show_default=True, help="The gateway config: upstream servers and timeouts.")
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A planner's private key for signing plans (default: its newest trusted key in <data dir>/keys).")
@click.option("-v", "--verbose", is_flag=True, help="Log upstream starts and restarts (to stderr).")
@writ_command
def mcp(principal: str, config_path: Path, key_file: Path | None, verbose: bool) -> None:
    """Serve MCP on stdin/stdout: every upstream tool, each call decided by policy and audited.

    Tools are exposed as <server>__<tool>, beside Writ's own plan tools (writ__writ_plan_propose,
    _status, _begin, _finish). The principal, its role and its groups come from the trust store
    (`writ groups add`, merged with the policy's data.writ.groups). Point an MCP client (Claude
    Desktop, Claude Code) at this command; it runs until the client closes stdin.

    \b
    Example:
      writ mcp --principal plan-bot --config examples/writ.toml
      writ keys new --principal plan-bot --out plan-bot.pem
      writ mcp --principal plan-bot --config examples/writ.toml --key plan-bot.pem
      claude mcp add writ -- writ mcp --principal exec-bot --config "$PWD/examples/writ.toml"
    """
    import anyio

    from writ.attestations.audit import audit_log_for
    from writ.attestations.checkpoints import periodic_checkpoints
    from writ.engine.core.db import open_database
    from writ.engine.gateway.exposure import load_safe_config
    from writ.engine.gateway.governance import resolve_principal
    from writ.engine.gateway.results import audit_or_log
    from writ.engine.gateway.server import Gateway
    from writ.engine.policy.pdp import DecisionPoint, make_engine
    from writ.engine.wiring.services import find_signing_key, wire_services

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="writ mcp: %(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("writ").setLevel(logging.INFO)
    settings: Settings = click.get_current_context().obj
    config = load_safe_config(config_path, settings, key_files=[key_file] if key_file is not None else [])
    with open_database(settings) as store, periodic_checkpoints(settings, store):
        audit = audit_log_for(settings, store)  # with its periodic signed checkpoints
        pdp = DecisionPoint(make_engine(settings), audit)
        try:
            stores = wire_services(settings, store, engine=pdp.engine, audit=audit)
            who = resolve_principal(stores.trust, principal)
            state = stores.trust.principal_state(who.name)  # locked: it starts, and refuses every call
            if state.disabled:
                audit_or_log(audit, "start_refused", {"principal": who.name, "code": reasons.PRINCIPAL_DISABLED})
                raise ConfigError(f"principal {who.name!r} is disabled: its gateway does not start",
                                  code=reasons.PRINCIPAL_DISABLED)
            if key_file is not None:  # refused now, not at the first proposal: one line, nothing started
                if who.role != "planner":
                    raise InputError(f"--key is the key a planner signs plans with; {who.name!r} has role {who.role}, "
                                     "not planner", code=reasons.INPUT_INVALID)
                find_signing_key(settings, stores.trust, who.name, key_file=key_file)
            anyio.run(Gateway(pdp, config, who, stores, key_file=key_file).serve_stdio)
        except KeyboardInterrupt:
            pass  # the upstreams were stopped on the way out
        finally:
            pdp.close()


if __name__ == "__main__":
    mcp()
