"""``writ mcp``: the gateway as a stdio MCP server, acting for one principal.

    $ writ mcp --principal plan-bot --config writ.toml --data-dir ~/.writ

stdout is the MCP wire: nothing else is printed there. Startup errors are one line on
stderr (``error[code]: message``, exit 1); logs go to stderr.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio
import click

from writ.engine.cli_common import writ_command
from writ.engine.settings import Settings


@click.command("mcp")
@click.option("--principal", required=True, metavar="NAME", help="Who the gateway acts for ([principals] in the config).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), default=Path("writ.toml"),
              show_default=True, help="The gateway config: upstream servers, timeouts, principals.")
@click.option("-v", "--verbose", is_flag=True, help="Log upstream starts and restarts (to stderr).")
@writ_command
def mcp(principal: str, config_path: Path, verbose: bool) -> None:
    """Serve MCP on stdin/stdout: every upstream tool, each call decided by policy and audited.

    Tools are exposed as <server>__<tool>. Point an MCP client (Claude Desktop, Claude Code)
    at this command; it runs until the client closes stdin.

    \b
    Example:
      writ mcp --principal plan-bot --config examples/writ.toml
      claude mcp add writ -- writ mcp --principal exec-bot --config /srv/writ.toml
    """
    from writ.engine.gateway.config import load_config, resolve_principal
    from writ.engine.gateway.server import Gateway
    from writ.engine.pdp import DecisionPoint

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="writ mcp: %(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("writ").setLevel(logging.INFO)
    settings: Settings = click.get_current_context().obj
    config = load_config(config_path)
    who = resolve_principal(config, principal)
    pdp = DecisionPoint.from_settings(settings)
    try:
        anyio.run(Gateway(pdp, config, who).serve_stdio)
    except KeyboardInterrupt:
        pass  # the upstreams were stopped on the way out
    finally:
        pdp.close()


if __name__ == "__main__":
    mcp()
