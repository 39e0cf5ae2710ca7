"""Terminal output: rich colours and tables on a terminal, plain aligned text everywhere else.

Every view is built once as plain cells with a *tone*; :class:`Output` either styles them with
rich (a TTY, or ``FORCE_COLOR``) or prints them as plain columns that pipe cleanly into
``grep``, ``cut`` and files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from executus._forensics import SECTION_TITLES, Explanation, format_clock, format_duration
from executus._store import RunSummary
from executus._text import terminal_text
from executus.cli._terminal import echo, json_text
from executus.cli._timeline import IdleGap, TimelineEntry, relative_time

__all__ = ["Cell", "Output", "format_timestamp", "run_table_rows", "short_id"]

SHORT_ID_LENGTH: Final = 8
_TONE_STYLES: Final[dict[str, str]] = {
    "plain": "",
    "quiet": "dim",
    "good": "green",
    "bad": "red",
    "warn": "yellow",
    "accent": "bold cyan",
}
_STATUS_TONES: Final[dict[str, str]] = {
    "ok": "good",
    "error": "bad",
    "killed": "bad",
    "timeout": "warn",
    "cancelled": "warn",
    "running": "accent",
}
KIND_WIDTH: Final = 17
"""The width of a timeline's kind column: every kind's but the longest few, which widen it."""
RUN_COLUMNS: Final = ("RUN", "AGENT", "STATUS", "TOKENS", "STARTED UTC", "TOOK", "END CAUSE")
"""Steps and the rest are in ``runs --json`` and ``show``: the table fits 80 columns."""
PLAIN_WIDTH: Final = 80
"""The width plain (piped) output fits in."""
_AGENT_WIDTH: Final = 14
_MIN_CAUSE_WIDTH: Final = 12
RIGHT_ALIGNED: Final = frozenset({"STEPS", "TOKENS", "TOOK", "DURATION"})


@dataclass(frozen=True, slots=True)
class Cell:
    """Text and the tone to show it in."""

    text: str
    tone: str = "plain"


def short_id(run_id: str) -> str:
    """The first characters of a run id: enough to name it (commands accept a unique prefix)."""
    return run_id[:SHORT_ID_LENGTH]


def format_timestamp(at: datetime) -> str:
    """A UTC timestamp to the nearest second (as ``why`` shows times)."""
    return format_clock(at, date=True)


def status_cell(status: str) -> Cell:
    """A run status, coloured by how it ended."""
    return Cell(status, _STATUS_TONES.get(status, "plain"))


def _tokens(count: int) -> str:
    """A token count in at most six characters: 9500, 12.3k, 4.5M."""
    if count < 10_000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1_000:.1f}k"
    return f"{count / 1_000_000:.1f}M"


def run_table_rows(
    summaries: Sequence[RunSummary],
    now: datetime,
    width: int = PLAIN_WIDTH,
    warnings: Mapping[str, str] | None = None,
) -> list[list[Cell]]:
    """The rows of ``executus runs`` (see :data:`RUN_COLUMNS`), fitted into ``width`` columns.

    Agent names are cut to a fixed width and end causes to what is left, with an ellipsis. A run
    with a warning (by run id: an unfinished run whose owner is gone) shows it as its end cause.
    """
    warnings = warnings or {}
    rows = []
    for summary in summaries:
        if summary.finished_at is not None:
            duration = format_duration((summary.finished_at - summary.started_at).total_seconds())
        else:
            duration = format_duration(max(0.0, (now - summary.started_at).total_seconds())) + "…"
        rows.append(
            [
                Cell(short_id(summary.run_id), "accent"),
                Cell(terminal_text(summary.agent, _AGENT_WIDTH)),
                status_cell(summary.status),
                Cell(_tokens(summary.input_tokens + summary.output_tokens)),
                Cell(summary.started_at.astimezone(UTC).strftime("%m-%d %H:%M"), "quiet"),
                Cell(duration),
                Cell(warnings[summary.run_id], "warn")
                if summary.run_id in warnings
                else Cell(summary.end_cause or "", "quiet"),
            ]
        )
    if not rows:
        return rows
    used = sum(
        max(len(column), *(len(row[index].text) for row in rows)) + 2
        for index, column in enumerate(RUN_COLUMNS[:-1])
    )
    cause_width = max(_MIN_CAUSE_WIDTH, width - used)
    for row in rows:
        row[-1] = Cell(terminal_text(row[-1].text, cause_width), "quiet")
    return rows


class Output:
    """Where a command prints: styled on a terminal, plain otherwise.

    Args:
        styled: force styling on or off; by default style only when stdout is a terminal.
    """

    def __init__(self, styled: bool | None = None) -> None:
        self.console = Console(highlight=False, soft_wrap=False)
        self.styled = self.console.is_terminal if styled is None else styled

    @property
    def width(self) -> int:
        """How many columns a line may take: the terminal's, or 80 when piped."""
        return self.console.width if self.styled else PLAIN_WIDTH

    def line(self, text: str = "", tone: str = "plain") -> None:
        """Print one line."""
        if self.styled:
            self.console.print(Text(terminal_text(text, newlines=True), style=_TONE_STYLES[tone]))
        else:
            echo(text)

    def cells(self, cells: Sequence[Cell], separator: str = "  ") -> None:
        """Print one line made of differently toned pieces."""
        if self.styled:
            text = Text()
            for index, cell in enumerate(cells):
                if index:
                    text.append(separator)
                text.append(terminal_text(cell.text), style=_TONE_STYLES[cell.tone])
            self.console.print(text)
        else:
            echo(separator.join(terminal_text(cell.text) for cell in cells))

    def json(self, value: object, *, indent: int | None = 2) -> None:
        """Print a JSON document (never styled)."""
        click.echo(json_text(value, indent=indent))

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
        """Print rows under headed columns, aligned."""
        rows = [[Cell(terminal_text(cell.text), cell.tone) for cell in row] for row in rows]
        if self.styled:
            table = Table(box=None, header_style="bold", pad_edge=False)
            for column in columns:
                table.add_column(column, justify="right" if column in RIGHT_ALIGNED else "left", no_wrap=True)
            for row in rows:
                table.add_row(*(Text(cell.text, style=_TONE_STYLES[cell.tone]) for cell in row))
            self.console.print(table)
            return
        widths = [
            max(len(column), *(len(row[index].text) for row in rows)) for index, column in enumerate(columns)
        ]
        for texts in [list(columns), *([cell.text for cell in row] for row in rows)]:
            padded = [
                text.rjust(width) if column in RIGHT_ALIGNED else text.ljust(width)
                for text, width, column in zip(texts, widths, columns, strict=True)
            ]
            echo("  ".join(padded).rstrip())

    def timeline_item(self, item: TimelineEntry | IdleGap, kind_width: int = KIND_WIDTH) -> None:
        """Print one timeline line: an event, or a highlighted idle gap; the event's kind is
        padded to ``kind_width`` (the longest kind shown so far), so the summaries line up."""
        if isinstance(item, IdleGap):
            self.line(f"{'':>4}  {'':>8}  ⋯ idle {format_duration(item.seconds)} ⋯", "warn")
            return
        event = item.event
        kind_tone = "bad" if item.tone == "bad" else "accent" if event.kind == "run_finished" else "plain"
        cells = [
            Cell(f"{event.seq:>4}", "quiet"),
            Cell(f"{relative_time(item.offset):>8}", "quiet"),
            Cell(event.kind.ljust(kind_width), kind_tone),
            Cell(terminal_text(item.summary), item.tone),
        ]
        if self.styled:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(no_wrap=True)
            grid.add_column(no_wrap=True)
            grid.add_column(no_wrap=True)
            grid.add_column(overflow="fold")
            grid.add_row(*(Text(cell.text, style=_TONE_STYLES[cell.tone]) for cell in cells))
            self.console.print(grid)
        else:
            echo("  ".join(cell.text for cell in cells).rstrip())

    def explanation(self, explanation: Explanation) -> None:
        """Print a ``why`` explanation: the headline, then each section's cited statements."""
        self.line(explanation.headline, _STATUS_TONES.get(explanation.status, "plain"))
        for section, title in SECTION_TITLES.items():
            statements = explanation.section(section)
            if not statements:
                continue
            self.line()
            self.line(title, "accent")
            for statement in statements:
                citation = "seq " + ", ".join(str(seq) for seq in statement.seqs)
                if self.styled:
                    grid = Table.grid(padding=(0, 1))
                    grid.add_column(no_wrap=True)
                    grid.add_column(overflow="fold")
                    body = Text(terminal_text(statement.text))
                    body.append(f"  [{citation}]", style="dim")
                    grid.add_row(Text("  •"), body)
                    self.console.print(grid)
                else:
                    echo(f"  - {terminal_text(statement.text)}  [{citation}]")
