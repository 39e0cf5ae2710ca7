"""Repetitions, interleaving and medians: how every figure in the bench is taken.

Variants of one case run in the same process, interleaved (forward order on even repetitions,
reversed on odd ones) so that drift in the machine (page cache, CPU frequency, other tenants)
spreads over all of them instead of favouring whichever ran first. Each figure is the median
over the repetitions; the JSON keeps every sample.
"""

from __future__ import annotations

import gc
import itertools
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Measured", "RunFigures", "interleave"]


@dataclass(frozen=True, slots=True)
class Measured:
    """The samples of one variant: a rate or a duration per repetition."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median sample."""
        return statistics.median(self.samples)

    def spread(self) -> str:
        """``min..max`` of the samples, for the table's note column (empty for one sample)."""
        if len(self.samples) < 2:
            return ""
        low, high = min(self.samples), max(self.samples)
        return f"{low:,.0f}..{high:,.0f}" if high >= 100 else f"{low:.3g}..{high:.3g}"


def interleave(variants: Mapping[str, Callable[[], float]], repetitions: int) -> dict[str, Measured]:
    """Run each variant ``repetitions`` times, interleaved, and collect the figures they return.

    Args:
        variants: name -> a function that does one measured repetition and returns its figure
            (it times itself, so set-up can stay outside the timing).
        repetitions: how many times each variant runs.

    Returns:
        name -> its samples, in the order of ``variants``.
    """
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for repetition in range(repetitions):
        for name in order if repetition % 2 == 0 else reversed(order):
            gc.collect()
            samples[name].append(variants[name]())
    return {name: Measured(tuple(values)) for name, values in samples.items()}


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One recorded run of a per-step case: wall time, disk growth, and when each step began."""

    steps: int
    seconds: float
    disk_bytes: int
    step_marks: tuple[float, ...]
    """``perf_counter`` at each step: the gaps are whole steps, robust to a burst of noise."""

    @property
    def step_seconds(self) -> list[float]:
        """The duration of every step but the last, from one mark to the next."""
        return [later - earlier for earlier, later in itertools.pairwise(self.step_marks)]
