"""The errors of the replay package, all under :class:`executus.ExecutusError`.

```
ExecutusError
├── CassetteError             a cassette file is malformed (names the line and why)
│   └── CassetteConflictError importing a run that already exists with other events
└── ReplayError               a recorded run cannot be replayed (e.g. no run_started)
    └── DivergenceError       raised on request when a replay diverged; its message is the report
```
"""

from __future__ import annotations

from executus import ExecutusError

__all__ = ["CassetteConflictError", "CassetteError", "DivergenceError", "ReplayError"]


class CassetteError(ExecutusError):
    """A cassette is malformed: its message names the line (1-based) and what is wrong.

    Attributes:
        line: the 1-based line number at fault, or None when the problem is the whole file.
        reason: what is wrong, without the line prefix.
    """

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"cassette line {line}: {reason}" if line is not None else f"cassette: {reason}")


class CassetteConflictError(CassetteError):
    """The cassette's run already exists in the store with different events."""


class ReplayError(ExecutusError):
    """A recorded run cannot be replayed at all (as opposed to replaying and diverging)."""


class DivergenceError(ReplayError):
    """A replay diverged from its recording; the message is the full first-divergence report."""
