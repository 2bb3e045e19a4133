"""``writ demo``: Writ end to end on a fresh data directory (``writ.engine.demo.story``).

    $ writ demo                            # a new temporary data directory, printed first
    $ writ demo --data-dir /tmp/writ-demo  # a new or empty directory
    $ writ demo --browser                  # alice and bob approve in Chromium, through the web form
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
@click.option("--browser", is_flag=True,
              help="Approvers approve in Chromium through the web form, with keys their browser makes (needs "
                   "Debian's chromium and playwright).")
def demo(data_dir: Path | None, browser: bool) -> None:
    """Run Writ end to end: two agents behind two gateways, signed plans, approvals, refusals, the audit log.

    Creates a git repository and a workspace, a writ.toml fronting mcp-server-git and the
    filesystem MCP server, principals with keys (plan-bot, exec-bot, alice, bob), and starts
    `writ mcp` for the planner and the executor. Narrates each call with its decision and
    ends with `writ audit verify`. Exit 0 when everything happened as it should.

    Needs Node.js and the filesystem server (`make test` installs both into the checkout).

    With --browser, alice and bob approve in headless Chromium instead: each opens an invite
    link, their browser makes their key, they log in and approve on each plan's page.

    \b
    Example:
      writ demo
      writ demo --data-dir /tmp/writ-demo
      writ demo --browser
    """
    from writ.engine.demo.story import run_demo

    try:
        hook = None
        if browser:
            from writ.engine.cli.demo_browser import browser_approvals, chromium_path

            chromium_path()  # fail before the demo starts when it cannot run
            hook = browser_approvals
        run_demo(data_dir_option(data_dir), echo=click.echo, browser=hook)
    except WritError as e:
        fail(e)
    except KeyboardInterrupt:
        fail(WritError("interrupted", code=reasons.INTERRUPTED), 130)


if __name__ == "__main__":
    demo()
