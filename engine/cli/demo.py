"""``writ demo``: Writ end to end on a fresh data directory (``writ.engine.demo.story``).

    $ writ demo                            # a new temporary data directory, printed first
    $ writ demo --data-dir /tmp/writ-demo  # a new or empty directory
"""

from __future__ import annotations

from pathlib import Path

import click

from writ.engine.cli.common import data_dir_option, fail
from writ.engine.core import reasons
from writ.engine.core.errors import WritError


@click.command("demo")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A new or empty directory for the demo's data (default: a new temporary directory).")
def demo(data_dir: Path | None) -> None:
    """Run Writ end to end: two agents behind two gateways, signed plans, approvals, refusals, the audit log.

    Creates a git repository and a workspace, a writ.toml fronting mcp-server-git and the
    filesystem MCP server, principals with keys (plan-bot, exec-bot, alice, bob), and starts
    `writ mcp` for the planner and the executor. Narrates each call with its decision and
    ends with `writ audit verify`. Exit 0 when everything happened as it should.

    Needs Node.js and the filesystem server (`make test` installs both into the checkout).

    \b
    Example:
      writ demo
      writ demo --data-dir /tmp/writ-demo
    """
    from writ.engine.demo.story import run_demo

    try:
        run_demo(data_dir_option(data_dir), echo=click.echo)
    except WritError as e:
        fail(e)
    except KeyboardInterrupt:
        fail(WritError("interrupted", code=reasons.INTERRUPTED), 130)


if __name__ == "__main__":
    demo()
