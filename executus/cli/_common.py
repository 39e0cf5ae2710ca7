"""What every ``executus`` command shares: settings, ``--db``, error handling, the open store."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Final

import click

from executus._clock import SystemClock
from executus._errors import ExecutusError
from executus.cli._store import BrowsableStore, StoreOpener, open_sql_store

__all__ = ["EXIT_BAD_INPUT", "CliError", "ExecutusGroup", "Settings", "db_option", "opened", "parse_since"]

EXIT_BAD_INPUT: Final = 2
"""Bad input or an unusable database (1 is kept for "a check failed")."""

_RELATIVE_TIME = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _system_now() -> datetime:
    return SystemClock().now()


@dataclass
class Settings:
    """What every command shares; tests may replace the store opener, the clock and sleep.

    Attributes:
        db_url: the ``--db`` or ``EXECUTUS_DB`` URL, None for the default database.
        db_from_option: whether ``--db`` was given on the command line (so hints repeat it).
        open_store: opens the store at a URL.
        now: the real current time.
        sleep: waits between polls of ``show --follow``.
    """

    db_url: str | None = None
    db_from_option: bool = False
    open_store: StoreOpener = open_sql_store
    now: Callable[[], datetime] = _system_now
    sleep: Callable[[float], None] = field(default=time.sleep)


class CliError(click.ClickException):
    """A problem the user can fix: printed as one line on stderr, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def one_line(error: BaseException) -> str:
    """An error's message on one line (driver errors can span several)."""
    return " ".join(str(error).split()) or type(error).__name__


class ExecutusGroup(click.Group):
    """A command group that turns the errors a user can act on into one line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ExecutusError as error:
            raise CliError(one_line(error)) from None


def _set_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # Both the group and each command accept --db; one given on the command line (in either
    # place) beats EXECUTUS_DB, which beats the default.
    settings = ctx.ensure_object(Settings)
    if value is None:
        return
    if ctx.get_parameter_source(param.name or "db") is click.core.ParameterSource.COMMANDLINE:
        settings.db_url, settings.db_from_option = value, True
    elif not settings.db_from_option:
        settings.db_url = value


def db_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--db URL`` (or ``EXECUTUS_DB``), accepted before or after the command name."""
    return click.option(
        "--db",
        metavar="URL",
        envvar="EXECUTUS_DB",
        expose_value=False,
        is_eager=True,
        callback=_set_db,
        help="Database URL, e.g. sqlite:///runs.db or postgresql+psycopg://user@host/db "
        "(default: $EXECUTUS_DB, else a SQLite file in your user data directory).",
    )(function)


@contextlib.contextmanager
def opened(settings: Settings) -> Iterator[BrowsableStore]:
    """The configured store, closed on exit.

    Raises:
        DatabaseUnavailableError: the database cannot be reached or opened.
        SchemaOutdatedError: the database needs ``executus db upgrade``.
    """
    event_store = settings.open_store(settings.db_url)
    try:
        yield event_store
    finally:
        event_store.close()


def parse_since(value: str, now: datetime) -> datetime:
    """``--since``: an ISO date or time (UTC unless it says otherwise), or an age like ``2h``.

    Raises:
        click.BadParameter: neither form.
    """
    relative = _RELATIVE_TIME.match(value.strip())
    if relative:
        return now - timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO date or time (2026-05-01, 2026-05-01T09:30) "
            "nor an age (90s, 15m, 2h, 3d, 1w)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
