"""The ``writ`` command: a registry of subcommands, each loaded only when it is used.

    writ init                           # a data directory: database, recorded settings (.writ/ here)
    writ serve                          # the decision API on 127.0.0.1:8420, embedded engine
    writ policy test policies/          # run the Rego unit tests
    writ --data-dir /srv/writ plan list # --data-dir before or after the subcommand

``COMMANDS`` maps each subcommand to ``"module:attr"``; a subcommand's module is imported
only when that subcommand runs (or ``--help`` lists them), as in click's "lazily loading
subcommands" pattern, so ``writ --version`` imports no database, web or MCP code.
Any ``WritError`` is printed as ``error[code]: message`` and exits 1; never a traceback.
"""

from __future__ import annotations

import atexit
import gc
import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path

import click

from writ.engine.cli.common import DATA_DIR_HELP, DATA_DIR_META

# A Temporal client left for interpreter shutdown can abort (134) or crash (139) the process after the
# command succeeded (temporalio/sdk-python#300): collect it while the interpreter still runs.
atexit.register(gc.collect)

# One line per command: "name": "module:attr".
COMMANDS: dict[str, str] = {
    "init": "writ.engine.cli.init:init",
    "serve": "writ.engine.cli.serve:serve",
    "worker": "writ.engine.cli.worker:worker",
    "policy": "writ.engine.cli.policy:policy",
    "groups": "writ.engine.cli.groups:groups",
    "tokens": "writ.engine.cli.tokens:tokens",
    "mcp": "writ.engine.cli.gateway:mcp",
    "audit": "writ.engine.cli.audit:audit",
    "attest": "writ.engine.cli.attest:attest",
    "demo": "writ.engine.cli.demo:demo",
    "principals": "writ.engine.cli.principals:principals",
    "approvers": "writ.engine.cli.approvers:approvers",
    "sessions": "writ.engine.cli.sessions:sessions",
    "keys": "writ.engine.cli.keys:keys",
    "trust": "writ.engine.cli.keys:trust",
    "plan": "writ.engine.cli.plan:plan",
    "approve": "writ.engine.cli.plan:approve",
    "reject": "writ.engine.cli.plan:reject",
    "tools": "writ.engine.cli.tools:tools",
}


def load_command(target: str) -> click.Command:
    """The click command named by ``"module:attr"``."""
    module, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module), attr)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's ``commands`` that imports each command's module on first access.

    Listing the names (``writ --help`` sorting, completion) imports nothing; looking one up
    imports its module only. ``main.commands`` still holds every command for code that walks it.
    """

    def __init__(self, registry: Mapping[str, str]) -> None:
        self._registry = dict(registry)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            if name not in self._registry:
                raise KeyError(name)
            self._loaded[name] = load_command(self._registry[name])
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._registry and name not in self._loaded:
            raise KeyError(name)
        self._registry.pop(name, None)
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._registry or name in self._loaded

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._registry.keys() | self._loaded.keys()))

    def __len__(self) -> int:
        return len(self._registry.keys() | self._loaded.keys())


@click.group(commands=LazyCommands(COMMANDS),
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="writ")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None, help=DATA_DIR_HELP)
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """Writ: policy-as-code governance for AI agents' MCP tool calls.

    \b
    Example:
      writ init                 # create .writ/: the database and the settings every command shares
      writ policy test          # run the shipped policies' unit tests
      writ serve                # start the decision API on 127.0.0.1:8420
    """
    if data_dir is not None:
        ctx.meta[DATA_DIR_META] = data_dir
