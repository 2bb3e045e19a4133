"""What every ``writ`` command shares: ``--data-dir``, settings, and one-line errors.

    @click.command("list")
    @writ_command                       # needs an initialised data directory (else store_missing)
    def plan_list() -> None:
        settings: Settings = click.get_current_context().obj

    @writ_command(store="optional")    # runs without one (the policy commands)

The data directory is ``--data-dir`` (before or after the subcommand: ``writ --data-dir D plan
list`` or ``writ plan list --data-dir D``), else ``$WRIT_HOME``, else ``.writ/`` here. The policy
directory and database that ``writ init`` recorded there are used by every command
(``writ.engine.core.settings.shared_settings``).

With ``--json`` (an ``as_json`` parameter), an error is also printed on stdout as
``{"ok": false, "code": ..., "message": ...}`` for the script reading it.

This module is imported by every command module, including for ``writ --help``: it imports
nothing heavy (settings and the wiring are imported when a command runs).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, overload

import click

from writ.engine.core import reasons
from writ.engine.core.errors import InputError, WritError

if TYPE_CHECKING:
    from writ.engine.core.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
StoreNeed = Literal["required", "optional", "none"]
DATA_DIR_META = "writ.data_dir"
"""``ctx.meta`` key of a ``--data-dir`` given before the subcommand."""
DATA_DIR_HELP = "Writ's data directory (default: $WRIT_HOME, else .writ/ here)."


def fail(err: WritError, exit_code: int = 1) -> NoReturn:
    """Print ``error[code]: message`` on stderr and exit."""
    click.echo(click.style(f"error[{err.code}]: ", fg="red", bold=True) + err.message, err=True)
    sys.exit(exit_code)


def settings_from(data_dir: Path | None = None) -> Settings:
    """Settings from the ``WRIT_*`` environment, with ``--data-dir`` over ``WRIT_HOME``."""
    from writ.engine.core.settings import Settings

    try:
        settings = Settings()
    except Exception as e:  # noqa: BLE001 - pydantic errors from WRIT_* variables
        raise WritError(f"bad WRIT_* environment setting: {e}", code=reasons.CONFIG_INVALID) from None
    if data_dir is not None:
        settings = settings.model_copy(update={"home": data_dir.expanduser().absolute()})
    return settings


def command_settings(data_dir: Path | None, store: StoreNeed = "required") -> Settings:
    """The settings a command runs with.

    ``required``: the data directory must exist (``store_missing`` otherwise) and its recorded
    settings apply; ``optional``: they apply if it exists; ``none``: the environment only.
    """
    settings = settings_from(data_dir)
    if store == "none":
        return settings
    if store == "required":
        from writ.engine.wiring.datadir import require_data_dir

        return require_data_dir(settings)
    from writ.engine.core.settings import shared_settings

    return shared_settings(settings)


def data_dir_option(given: Path | None) -> Path | None:
    """``--data-dir`` after the subcommand, or before it; both only if they agree."""
    before: Path | None = click.get_current_context().meta.get(DATA_DIR_META)
    if given is None or before is None:
        return given or before
    if given.expanduser().absolute() != before.expanduser().absolute():
        raise InputError(f"--data-dir given twice, as {before} and {given}: give it once")
    return given


@overload
def writ_command(func: F) -> F: ...
@overload
def writ_command(*, error_exit: int = 1, store: StoreNeed = "required", offline: bool = False) -> Callable[[F], F]: ...


def writ_command(
    func: F | None = None, *, error_exit: int = 1, store: StoreNeed = "required", offline: bool = False
) -> F | Callable[[F], F]:
    """Give a command ``--data-dir``, its Settings in ``ctx.obj``, and ``error[code]: message`` on failure.

    ``store``: whether the command needs an initialised data directory (see ``command_settings``).
    ``offline``: the command reads no data directory at all, so its help does not offer ``--data-dir``.
    """

    def decorate(f: F) -> F:
        @click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                      help=DATA_DIR_HELP, hidden=offline)
        @functools.wraps(f)
        def wrapper(*args: Any, data_dir: Path | None = None, **kwargs: Any) -> Any:
            try:
                click.get_current_context().obj = command_settings(data_dir_option(data_dir), store)
                return f(*args, **kwargs)
            except WritError as e:
                if kwargs.get("as_json"):  # a script reading --json gets the error as JSON on stdout too
                    click.echo(json.dumps({"ok": False, **e.as_json()}, sort_keys=True))
                fail(e, error_exit)

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
