"""Options several commands share, validated so that any bad value is one line and exit 2."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import click

from executus._store import RunQuery, RunSummary
from executus.cli._common import CliError
from executus.cli._store import BrowsableStore

__all__ = [
    "MAX_LIMIT",
    "STATUSES",
    "FiniteFloat",
    "limit_option",
    "parse_when",
    "select_runs",
    "status_option",
    "time_options",
]

STATUSES: Final = ("ok", "error", "timeout", "cancelled", "killed", "running", "pending")
"""``pending``: queued for workers and not started (``executus submit``); no log yet."""
MAX_LIMIT: Final = 1_000_000
"""The most runs one command lists or replays."""

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_EARLIEST: Final = datetime(1, 1, 2, tzinfo=UTC)


def parse_when(option: str, value: str, now: datetime) -> datetime:
    """``--since``/``--until``: an ISO date or time (UTC unless it says otherwise), or an age (``2h``).

    Raises:
        CliError: neither form, or an age reaching back before the year 1.
    """
    text = value.strip()
    age = _AGE.match(text)
    if age:
        seconds = float(age.group(1)) * _UNIT_SECONDS[age.group(2)]
        if not math.isfinite(seconds) or seconds > (now - _EARLIEST).total_seconds():
            raise CliError(f"{option}: {value!r} reaches back before the year 1")
        return now - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"{option}: {value!r} is neither an ISO date or time (2026-05-01, 2026-05-01T09:30) "
            "nor an age (90s, 15m, 2h, 3d, 1w)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class FiniteFloat(click.FloatRange):
    """A float in a range that is a real number: ``nan`` and ``inf`` are refused."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _statuses(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> tuple[str, ...]:
    chosen: list[str] = []
    for value in values:
        for status in filter(None, (part.strip() for part in value.split(","))):
            if status not in STATUSES:
                raise click.BadParameter(f"{status!r} is not one of {', '.join(STATUSES)}", ctx, param)
            if status not in chosen:
                chosen.append(status)
    return tuple(chosen)


def status_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--status S`` (repeatable, or comma-separated): runs with any of these statuses."""
    return click.option(
        "--status",
        "statuses",
        multiple=True,
        metavar="|".join(STATUSES),
        callback=_statuses,
        help=help_text + " Repeat it, or separate statuses with commas.",
    )


def limit_option(default: int | None, help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--limit N``: 1 to :data:`MAX_LIMIT`."""
    return click.option(
        "--limit",
        type=click.IntRange(min=1, max=MAX_LIMIT),
        default=default,
        show_default=default is not None,
        help=help_text,
    )


def time_options(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--since WHEN`` and ``--until WHEN``."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        function = click.option(
            "--until", metavar="WHEN", help=f"{what} started before WHEN (same forms as --since)."
        )(function)
        return click.option(
            "--since",
            metavar="WHEN",
            help=f"{what} started since WHEN: 2026-05-01, 2026-05-01T09:30, 2h, 3d.",
        )(function)

    return decorate


def select_runs(
    event_store: BrowsableStore, query: RunQuery, statuses: Sequence[str]
) -> tuple[list[RunSummary], bool]:
    """The runs ``query`` selects with any of ``statuses`` (all if empty), newest first.

    Returns:
        At most ``query.limit`` runs, and whether more matched than that.
    """
    limit = query.limit
    probe = None if limit is None else limit + 1  # one more than shown tells whether there are more
    found: list[RunSummary] = []
    for status in statuses or (None,):
        found += event_store.list_runs(
            RunQuery(
                status=status,  # type: ignore[arg-type]
                agent=query.agent,
                caller_id=query.caller_id,
                since=query.since,
                until=query.until,
                limit=probe,
            )
        )
    found.sort(key=lambda summary: (summary.started_at, summary.run_id), reverse=True)
    if limit is None or len(found) <= limit:
        return found, False
    return found[:limit], True
