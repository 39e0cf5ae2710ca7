"""Sizes of every case, for the full bench and for the quick one CI runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Config"]


@dataclass(frozen=True, slots=True)
class Config:
    """How much each case measures.

    Attributes:
        quick: the CI mode (under a minute on two cores; peers may be missing).
        workdir: where databases are created (deleted afterwards).
        repetitions: repetitions per figure (each figure is the median).
        append_events: events appended per repetition on SQLite.
        append_events_postgres: events appended per repetition on PostgreSQL.
        run_lengths: executor run lengths, in steps, for the per-step cost case.
        langgraph_lengths: LangGraph run lengths (its cost grows with length, so fewer).
        rebuild_steps: steps of the one long run read back and folded (4 events a step).
        rebuild_runs: how many shorter runs are read back and folded together.
        rebuild_runs_steps: steps of each of those runs.
        replay_lengths: run lengths replayed strictly.
        concurrent_runs: runs recorded at once on one event loop.
        concurrent_steps: steps of each concurrent run on SQLite.
        concurrent_steps_postgres: steps of each concurrent run on PostgreSQL.
        model_latency: seconds the fake model takes per reply in the concurrency case.
        memory_steps: steps of the run whose peak memory is measured.
        lag_runs: runs recording at once through the writer in the loop-lag case.
        lag_steps: steps of each of those runs.
        lag_fault: seconds the database is locked or stalled in the loop-lag case.
        model_calls: calls to each loopback model server a figure of the adapters' case takes.
    """

    quick: bool
    workdir: Path
    repetitions: int
    append_events: int
    append_events_postgres: int
    run_lengths: tuple[int, ...]
    langgraph_lengths: tuple[int, ...]
    rebuild_steps: int
    rebuild_runs: int
    rebuild_runs_steps: int
    replay_lengths: tuple[int, ...]
    concurrent_runs: int
    concurrent_steps: int
    concurrent_steps_postgres: int
    model_latency: float
    memory_steps: int
    lag_runs: int
    lag_steps: int
    lag_fault: float
    model_calls: int

    @classmethod
    def full(cls, workdir: Path) -> Config:
        """The sizes of the issue: what RESULTS.md reports."""
        return cls(
            quick=False,
            workdir=workdir,
            repetitions=9,
            append_events=4_000,
            append_events_postgres=1_500,
            run_lengths=(10, 100, 1_000, 10_000),
            langgraph_lengths=(10, 100, 1_000, 2_000),
            rebuild_steps=1_250,
            rebuild_runs=100,
            rebuild_runs_steps=100,
            replay_lengths=(1_000, 10_000),
            concurrent_runs=100,
            concurrent_steps=50,
            concurrent_steps_postgres=20,
            model_latency=0.01,
            memory_steps=10_000,
            lag_runs=100,
            lag_steps=100,
            lag_fault=2.0,
            model_calls=300,
        )

    @classmethod
    def quick_mode(cls, workdir: Path) -> Config:
        """Every case at a small size, so CI sees every figure produced in under a minute."""
        return cls(
            quick=True,
            workdir=workdir,
            repetitions=3,
            append_events=300,
            append_events_postgres=200,
            run_lengths=(10, 100),
            langgraph_lengths=(10, 100),
            rebuild_steps=125,
            rebuild_runs=100,
            rebuild_runs_steps=3,
            replay_lengths=(100, 1_000),
            concurrent_runs=100,
            concurrent_steps=3,
            concurrent_steps_postgres=2,
            model_latency=0.01,
            memory_steps=100,
            lag_runs=100,
            lag_steps=5,
            lag_fault=0.5,
            model_calls=50,
        )

    def repetitions_for(self, steps: int) -> int:
        """More repetitions for short runs, so each figure covers ~1,000 steps (100 when quick)."""
        long_run = 1 if self.quick else 3
        base = self.repetitions if steps <= 1_000 else long_run
        return max(base, min(20, (100 if self.quick else 1_000) // steps))
