"""Smoke test of the bench: its smallest case runs in-process on SQLite and produces figures.

Timing belongs in ``bench/``, never in an assertion: this only checks that the figures exist
and are positive numbers (a peer that is not installed is reported, not measured).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from bench._config import Config
from bench._runner import run_bench
from bench.case_scaling import aggregate_rate
from executus.storage import RunQuery
from store import SqlStore


def test_quick_append_case_produces_positive_figures(tmp_path: Path) -> None:
    config = dataclasses.replace(Config.quick_mode(tmp_path), repetitions=1, append_events=40)

    report, failed = run_bench(config, ["append"], postgres=False)

    assert failed == []
    measured = [row for row in report.rows if row.value is not None]
    names = {row.name for row in measured}
    assert "raw sqlite3: events rows only (the limit)" in names
    assert "executus SqlStore.append (executor's batches)" in names
    for row in measured:
        assert row.value is not None
        assert math.isfinite(row.value), row
        assert row.value > 0, row
        assert row.ratio is None or row.ratio > 0, row
    skipped = [row for row in report.rows if row.value is None]
    assert all(row.note for row in skipped), "a row without a figure must say why"
    assert "events/s" in report.render()
    assert report.to_json()["rows"]


def test_quick_loop_lag_case_measures_sqlite_and_says_why_postgres_is_missing(tmp_path: Path) -> None:
    config = dataclasses.replace(Config.quick_mode(tmp_path), lag_runs=5, lag_steps=3, lag_fault=0.2)

    report, failed = run_bench(config, ["loop-lag"], postgres=False)

    assert failed == []
    sqlite = [row for row in report.rows if row.name.startswith("SQLite")]
    assert {row.unit for row in sqlite} == {"ms", "events/s"}
    assert all(row.value is not None and math.isfinite(row.value) for row in sqlite)
    cpu = [row.value for row in sqlite if ": CPU a step, " in row.name]
    assert len(cpu) == 2
    assert all(value is not None and value > 0 for value in cpu)
    assert any(row.name.endswith("longest garbage collection") for row in sqlite)
    assert [row.note for row in report.rows if row.name == "PostgreSQL"] == ["PostgreSQL off (--no-postgres)"]
    assert [target.met for target in report.targets][1:] == [None, None]
    assert any(row.name.startswith("idle loop") and row.value is not None for row in report.rows)


def test_quick_audit_case_reports_verify_and_redaction_figures(tmp_path: Path) -> None:
    config = dataclasses.replace(
        Config.quick_mode(tmp_path), repetitions=1, append_events=40, rebuild_runs=3, rebuild_runs_steps=2
    )

    report, failed = run_bench(config, ["audit"], postgres=False)

    assert failed == []
    names = {row.name for row in report.rows if row.value is not None and row.value > 0}
    assert "verify: executus verify_all" in names
    assert "append: executus RedactingStore(SqlStore).append" in names
    assert "Redactor.redact, an event with a planted secret" in names
    assert [target.text for target in report.targets] == ["append with redaction >= 0.9 of append without"]


def test_quick_models_case_measures_both_adapters(tmp_path: Path) -> None:
    # Five calls a figure: this checks that every figure is produced, not what it is.
    config = dataclasses.replace(Config.quick_mode(tmp_path), repetitions=1, model_calls=5)

    report, failed = run_bench(config, ["models"], postgres=False)

    assert failed == []
    names = {row.name for row in report.rows if row.value is not None}
    for provider in ("OpenAI", "Anthropic"):
        assert f"{provider} SDK called directly" in names
        assert f"{provider} adapter's own work, alone (no HTTP)" in names
    assert all(target.met is not None for target in report.targets)


def test_quick_scaling_case_says_why_without_postgres(tmp_path: Path) -> None:
    report, failed = run_bench(Config.quick_mode(tmp_path), ["scaling"], postgres=False)

    assert failed == []
    assert [(row.name, row.value, row.note) for row in report.rows] == [
        ("PostgreSQL", None, "PostgreSQL off (--no-postgres)")
    ]
    assert [target.met for target in report.targets] == [None]


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
def test_the_scaling_case_appenders_write_every_event_fenced(sql_url: str, tmp_path: Path) -> None:
    rate = aggregate_rate(sql_url, 2, runs=3, steps=2, workdir=tmp_path, label="smoke")

    assert math.isfinite(rate.events_per_second)
    assert rate.events_per_second > 0
    assert rate.cores is None  # the server's CPU is not counted unless the bench started it
    with SqlStore(sql_url) as store:
        finished = store.list_runs(RunQuery(status="ok", limit=None))
        assert len(finished) == 6
        for summary in finished:
            info = store.lease_of(summary.run_id)
            assert info is not None
            assert (info.epoch, info.live) == (1, False)  # fenced by its lease, then released
