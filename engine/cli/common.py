"""What every ``writ`` command shares: ``--data-dir``, settings, and one-line errors.

    @main.command()
    @writ_command
    def serve() -> None:
        settings: Settings = click.get_current_context().obj
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar, overload

import click

from writ.engine.core import reasons
from writ.engine.core.errors import WritError
from writ.engine.core.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def fail(err: WritError, exit_code: int = 1) -> NoReturn:
    click.echo(click.style(f"error[{err.code}]: ", fg="red", bold=True) + err.message, err=True)
    sys.exit(exit_code)


def settings_from(data_dir: Path | None = None) -> Settings:
    """Settings from the ``WRIT_*`` environment, with ``--data-dir`` over ``WRIT_HOME``."""
    try:
        settings = Settings()
    except Exception as e:  # noqa: BLE001 - pydantic errors from WRIT_* variables
        raise WritError(f"bad WRIT_* environment setting: {e}", code=reasons.CONFIG_INVALID) from None
    if data_dir is not None:
        settings = settings.model_copy(update={"home": data_dir.expanduser().absolute()})
    return settings


@overload
def writ_command(func: F) -> F: ...
@overload
def writ_command(*, error_exit: int = 1) -> Callable[[F], F]: ...


def writ_command(func: F | None = None, *, error_exit: int = 1) -> F | Callable[[F], F]:
    """Give a command ``--data-dir``, its Settings in ``ctx.obj``, and ``error[code]: message`` on failure."""

    def decorate(f: F) -> F:
        @click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                      help="Writ's data directory (default: $WRIT_HOME, else .writ/ here).")
        @functools.wraps(f)
        def wrapper(*args: Any, data_dir: Path | None = None, **kwargs: Any) -> Any:
            try:
                click.get_current_context().obj = settings_from(data_dir)
                return f(*args, **kwargs)
            except WritError as e:
                fail(e, error_exit)

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
