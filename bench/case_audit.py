"""Case 7, audit: ``verify --all`` beside read + fold, and what redaction adds to an append.

Verify: ``rebuild_runs`` runs of ``rebuild_runs_steps`` steps in one SQLite database, checked
by ``store.verify_all`` (every row re-decoded strictly, every hash recomputed, every runs row
compared with the fold, every seal checked), against reading the same runs with ``read_run``
and folding them with ``rebuild``, in events/s.

Redaction: the bench agent's batches appended through ``SqlStore.append`` and through a
``RedactingStore`` around it (the built-in detectors, no user rules; the agent's events hold
no secrets, which is the common case), each into a fresh database, in events/s; the target is
within 10% of the plain append. Beside it, the redactor alone per event, on those events and
on an event carrying a planted secret (which is walked, rewritten and validated again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from bench._config import Config
from bench._pg import Postgres
from bench._report import Report, Row
from bench._stores import fresh_sqlite
from bench._timing import Measured, interleave
from bench._workload import capture_run, renamed, run_id_for
from bench.case_rebuild import load_runs
from executus.events import Event, RunStarted, rebuild
from executus.redaction import RedactingStore, Redactor
from executus.storage import EventSink
from store import SqlStore, verify_all

__all__ = ["run"]

CASE = "7 audit"
_KEY = b"bench-redaction-key-0123456789"


def _verify_rates(config: Config) -> dict[str, Measured]:
    short = capture_run(config.rebuild_runs_steps).batches
    runs = [renamed(short, run_id_for("audit", index)) for index in range(config.rebuild_runs)]
    _, url = fresh_sqlite(config.workdir, "audit")
    store = SqlStore(url)
    try:
        load_runs(store, runs, 10)
        count = sum(len(batch) for batches in runs for batch in batches)
        run_ids = [batches[0][0].run_id for batches in runs]

        def verify() -> float:
            started = time.perf_counter()
            report = verify_all(store)
            if not report.ok or report.events != count:
                raise RuntimeError(
                    f"verify_all found {report.findings[:3]} in {report.events} of {count} events"
                )
            return count / (time.perf_counter() - started)

        def read_and_fold() -> float:
            started = time.perf_counter()
            for run_id in run_ids:
                rebuild(store.read_run(run_id))
            return count / (time.perf_counter() - started)

        return interleave(
            {"executus read_run + rebuild": read_and_fold, "executus verify_all": verify}, config.repetitions
        )
    finally:
        store.close()


def _append_rate(
    config: Config, batches: Sequence[Sequence[Event]], wrap: Callable[[SqlStore], EventSink]
) -> float:
    _, url = fresh_sqlite(config.workdir, "audit-append")
    store = SqlStore(url)
    try:
        store.list_runs()
        sink = wrap(store)
        count = sum(len(batch) for batch in batches)
        expected = 0
        started = time.perf_counter()
        for batch in batches:
            sink.append(batch[0].run_id, batch, expected)
            expected += len(batch)
        return count / (time.perf_counter() - started)
    finally:
        store.close()


def _redaction_rates(config: Config) -> tuple[dict[str, Measured], dict[str, Measured]]:
    batches = renamed(capture_run(max(config.append_events // 4, 10)).batches, run_id_for("audit-append"))
    appends = interleave(
        {
            "executus SqlStore.append": lambda: _append_rate(config, batches, lambda store: store),
            "executus RedactingStore(SqlStore).append": lambda: _append_rate(
                config, batches, lambda store: RedactingStore(store, Redactor(_KEY))
            ),
        },
        config.repetitions,
    )
    events = [event for batch in batches for event in batch]
    started_event = next(event for event in events if isinstance(event, RunStarted))
    secret = started_event.model_copy(update={"input": "key sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6 please"})
    redactor = Redactor(_KEY)

    def per_event(sample: Sequence[Event]) -> Callable[[], float]:
        def measured() -> float:
            started = time.perf_counter()
            for event in sample:
                redactor.redact(event)
            return (time.perf_counter() - started) / len(sample) * 1e6

        return measured

    costs = interleave(
        {
            "Redactor.redact, the agent's events (no secret)": per_event(events),
            "Redactor.redact, an event with a planted secret": per_event([secret] * 200),
        },
        config.repetitions,
    )
    return appends, costs


def _add(report: Report, prefix: str, results: dict[str, Measured], reference: str) -> None:
    base = results[f"executus {reference}"].median
    for name, measured in results.items():
        report.add(
            Row(
                CASE,
                f"{prefix}{name}",
                measured.median,
                "events/s",
                ratio=measured.median / base,
                reference=reference,
                note=measured.spread(),
                samples=measured.samples,
            )
        )


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 7 on SQLite and judge the redaction target."""
    _add(report, "verify: ", _verify_rates(config), "read_run + rebuild")
    appends, costs = _redaction_rates(config)
    _add(report, "append: ", appends, "SqlStore.append")
    for name, measured in costs.items():
        report.add(
            Row(CASE, name, measured.median, "µs/event", note=measured.spread(), samples=measured.samples)
        )
    ratio = (
        appends["executus RedactingStore(SqlStore).append"].median
        / appends["executus SqlStore.append"].median
    )
    report.target(CASE, "append with redaction >= 0.9 of append without", ratio, ratio >= 0.9)
