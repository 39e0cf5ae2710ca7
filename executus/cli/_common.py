"""What every ``executus`` command shares: settings, ``--db``, error handling, the open store."""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import click

from executus._clock import SystemClock
from executus._errors import ExecutusError
from executus.cli._store import BrowsableStore, StoreOpener, open_sql_store
from executus.cli._terminal import echo

__all__ = ["EXIT_BAD_INPUT", "CliError", "ExecutusGroup", "Settings", "db_option", "load_object", "opened"]

EXIT_BAD_INPUT: Final = 2
"""Bad input or an unusable database (1 is kept for "a check failed")."""
EXIT_INTERRUPTED: Final = 130
"""Ctrl-C (128 + SIGINT, as a shell reports it)."""
EXIT_CLOSED_PIPE: Final = 141
"""The reader of stdout went away (128 + SIGPIPE, as a shell reports it)."""


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
        print_error(self.format_message())


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it: a full disk or a dead
    process never leaves a half-written file, and the file gets the mode a plain write would.

    Raises:
        CliError: the file cannot be written.
    """
    temporary: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", newline="\n", dir=path.parent, prefix=f".{path.name}.", delete=False
        ) as file:
            temporary = Path(file.name)
            file.write(text)
        umask = os.umask(0)
        os.umask(umask)
        temporary.chmod(0o666 & ~umask)
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {error.strerror or type(error).__name__}") from None


T = TypeVar("T")


def load_object(spec: str, expected: type[T] | tuple[type, ...], what: str) -> T:
    """Import ``module:attr`` (the current directory is importable); call it if it is a factory.

    Raises:
        CliError: it cannot be imported, or is not what the option needs.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CliError(f"{what} must be given as module:attribute, not {spec!r}")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except Exception as error:
        raise CliError(f"cannot load {what} {spec}: {one_line(error)}") from None
    if not isinstance(value, expected) and callable(value):
        try:
            value = value()
        except Exception as error:
            raise CliError(f"cannot make {what} from {spec}: {one_line(error)}") from None
    if not isinstance(value, expected):
        kind = type(value).__name__
        raise CliError(f"{spec} is {'an' if kind[0].lower() in 'aeiou' else 'a'} {kind}, not {what}")
    return value  # type: ignore[return-value]


def print_error(message: str) -> None:
    """Print ``error: message`` as one line on stderr: inert, and without database passwords."""
    from store import hide_passwords  # only when there is an error: the store is slow to import

    echo(f"error: {hide_passwords(' '.join(message.split()))}", err=True)


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
        except BrokenPipeError:  # the reader has all it wanted (| head): say nothing
            _silence_stdout()
            ctx.exit(EXIT_CLOSED_PIPE)

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        """Run the command line: every failure a user can cause ends in one line on stderr.

        Bad options (click's usage errors included) exit 2; Ctrl-C exits 130; a reader that
        closed the pipe (``| head``) ends the command quietly; output that cannot be written
        (``> /dev/full``) is one line and exit 2.
        """
        if extra.pop("standalone_mode", True) is False:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
            sys.stdout.flush()  # a full disk shows here, not in a traceback at exit
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()
            code = error.exit_code
        except click.ClickException as error:
            hint = (
                f" (see '{error.ctx.command_path} --help')"
                if isinstance(error, click.UsageError) and error.ctx
                else ""
            )
            print_error(error.format_message() + hint)
            code = EXIT_BAD_INPUT
        except click.Abort:
            echo("interrupted", err=True)
            code = EXIT_INTERRUPTED
        except OSError as error:
            if error.errno not in (errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):
                raise
            _silence_stdout()
            if error.errno == errno.EPIPE:
                code = EXIT_CLOSED_PIPE  # the reader has all it wanted: say nothing
            else:
                print_error(f"cannot write the output: {error.strerror or error}")
                code = EXIT_BAD_INPUT
        sys.exit(code if isinstance(code, int) else 0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what could not be written
    does not print a traceback of its own."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream (tests): nothing to do
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


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
def opened(settings: Settings, *, read_only: bool = False) -> Iterator[BrowsableStore]:
    """The configured store, closed on exit.

    Args:
        settings: the command line's settings.
        read_only: the command only reads: a SQLite file it may not write is opened read-only
            (an auditor's copy), and nothing is created or migrated.

    Raises:
        DatabaseUnavailableError: the database cannot be reached or opened.
        SchemaOutdatedError: the database needs ``executus db upgrade``.
    """
    event_store = settings.open_store(settings.db_url, read_only=read_only)
    try:
        yield event_store
    finally:
        event_store.close()
