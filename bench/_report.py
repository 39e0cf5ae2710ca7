"""What a bench run produces: rows of figures, target verdicts, and their table and JSON forms.

Every figure is a median over repetitions measured in the same process and the same run, so
ratios compare like with like. A row whose peer is not installed (or whose database is not
available) keeps its place in the table with ``value=None`` and a note saying why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Report", "Row", "Target", "format_value"]


@dataclass(frozen=True, slots=True)
class Row:
    """One measured figure.

    Attributes:
        case: the issue's case it belongs to, e.g. ``"1 append SQLite"``.
        name: what was measured, e.g. ``"executus SqlStore.append"``.
        value: the median figure, or None when it could not be measured.
        unit: the figure's unit, e.g. ``"events/s"`` or ``"ms/step"``.
        ratio: the figure divided by the reference figure, when the row has one.
        reference: the name of the reference row the ratio is taken against.
        note: why the value is missing, or a short remark (spread, sizes).
        samples: every repetition's figure, for the JSON only.
    """

    case: str
    name: str
    value: float | None
    unit: str
    ratio: float | None = None
    reference: str = ""
    note: str = ""
    samples: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue and whether this run met it.

    Attributes:
        case: the case it belongs to.
        text: the target in words, e.g. ``"append >= 0.6 of raw sqlite3"``.
        measured: what was measured, in words, e.g. ``"0.48"``.
        met: True or False, or None when the figures it needs are missing.
    """

    case: str
    text: str
    measured: str
    met: bool | None


@dataclass
class Report:
    """Everything one bench run found, in the order it was measured."""

    machine: dict[str, Any]
    command: str
    mode: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, row: Row) -> Row:
        """Keep a row and return it (so a case can compute ratios from it)."""
        self.rows.append(row)
        return row

    def target(
        self, case: str, text: str, measured: float | None, met: bool | None, fmt: str = ".2f"
    ) -> None:
        """Record a target verdict; ``measured`` None means the inputs were missing."""
        shown = "n/a" if measured is None else format(measured, fmt)
        self.targets.append(Target(case, text, shown, None if measured is None else met))

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        return {
            "machine": self.machine,
            "command": self.command,
            "mode": self.mode,
            "seconds": round(self.seconds, 1),
            "rows": [asdict(row) for row in self.rows],
            "targets": [asdict(target) for target in self.targets],
            "notes": self.notes,
        }

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def render(self) -> str:
        """The report as one plain-text table, then the targets and notes (Markdown-friendly)."""
        header = ("case", "measurement", "value", "unit", "ratio", "note")
        lines = [
            (
                row.case,
                row.name,
                format_value(row.value),
                row.unit,
                "" if row.ratio is None else f"{row.ratio:.2f} of {row.reference}",
                row.note,
            )
            for row in self.rows
        ]
        out = _table(header, lines, right_aligned={2})
        verdicts = [
            (t.case, t.text, t.measured, {True: "met", False: "MISSED", None: "not measured"}[t.met])
            for t in self.targets
        ]
        if verdicts:
            out += "\n\n" + _table(("case", "target", "measured", "verdict"), verdicts, right_aligned={2})
        if self.notes:
            out += "\n\n" + "\n".join(f"- {note}" for note in self.notes)
        return out


def format_value(value: float | None) -> str:
    """A figure with as many digits as it deserves: 64,012 / 3.41 / 0.0123; '-' when missing."""
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def _table(header: tuple[str, ...], lines: Sequence[tuple[str, ...]], right_aligned: set[int]) -> str:
    """A Markdown pipe table, padded so it also reads well as plain text."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]

    def render_line(cells: tuple[str, ...]) -> str:
        padded = (
            cell.rjust(width) if index in right_aligned else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (width + 1) + ":" if index in right_aligned else "-" * (width + 2)
            for index, width in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([render_line(header), rule, *(render_line(line) for line in lines)])
