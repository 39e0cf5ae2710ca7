"""Databases and cassettes recorded by executus 0.1.0 keep working, byte for byte.

``tests/golden/v0_1_0/`` was recorded by the code on main before the executor became a state
machine (commit f6ea0b0), and must never be regenerated:

* ``demo.db``: ``executus demo`` (seven runs, one per way a run ends), schema revision 0002;
* ``crash.db``: two runs whose process was SIGKILLed while a tool ran (``tests/store_children.py
  victim``); ``resumed-run`` was then resumed to ``ok`` by :meth:`Executor.resume`,
  ``interrupted-run`` was left as it died;
* ``demo-*.jsonl`` and ``crash-*.jsonl``: those runs exported with ``executus export``;
* ``scenario-*.jsonl``: copies of ``tests/golden/*.jsonl`` as 0.1.0 wrote them.

Every run must still read, fold, export to the same bytes, and replay identically.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from executus.events import rebuild
from replay import Replayer, load_cassette
from replay.cassette import write_cassette
from store import SqlStore

GOLDEN = Path(__file__).parent / "golden" / "v0_1_0"
DATABASES = ["demo.db", "crash.db"]
CASSETTES = sorted(path.name for path in GOLDEN.glob("*.jsonl"))


@pytest.fixture(params=DATABASES)
def golden_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    copy = tmp_path / request.param
    shutil.copyfile(GOLDEN / request.param, copy)
    with SqlStore(f"sqlite:///{copy}") as store:
        yield store


def test_every_stored_run_folds_to_its_summary_row(golden_store: SqlStore) -> None:
    runs = golden_store.list_runs()
    assert runs
    for summary in runs:
        state = rebuild(golden_store.read_run(summary.run_id))
        assert state.last_seq == summary.last_seq
        assert state.steps == summary.steps
        assert (state.status if state.finished else "running") == summary.status


def test_every_stored_run_replays_identically(golden_store: SqlStore) -> None:
    replayer = Replayer(blobs=golden_store)
    for summary in golden_store.list_runs():
        result = replayer.replay_run(golden_store.read_run(summary.run_id))
        assert result.identical, result.report()


def test_every_stored_run_exports_to_the_cassette_0_1_0_wrote(golden_store: SqlStore, tmp_path: Path) -> None:
    for summary in golden_store.list_runs():
        name = f"crash-{summary.run_id}" if summary.agent == "reporter" else f"demo-{summary.agent}"
        exported = tmp_path / f"{name}.jsonl"
        with exported.open("w", encoding="utf-8", newline="") as stream:
            write_cassette(golden_store, summary.run_id, stream)
        assert exported.read_bytes() == (GOLDEN / f"{name}.jsonl").read_bytes(), name


@pytest.mark.parametrize("name", CASSETTES)
def test_every_cassette_replays_identically(name: str) -> None:
    result = Replayer().replay_run(load_cassette(GOLDEN / name))
    assert result.identical, result.report()
