"""The SQL store's writer: commits off the event loop, many runs per transaction, bounded waits.

Every test runs on SQLite and PostgreSQL. "The loop kept running" is shown by a heartbeat task
that counts its ticks while an append waits, never by a timing threshold.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from store_events import expected_hashes, hashes_of, run_events, started

from executus import ConfigurationError, RunNotFoundError, StoreError, StoreUnavailableError
from executus.events import EventOrderError
from executus.storage import ConcurrencyError, EventWriter, InlineWriter
from store import SqlStore, WriterSettings

_T = TypeVar("_T")
QUICK = WriterSettings(lock_timeout=0.1, retry_window=60, first_backoff=0.01, max_backoff=0.1)
"""Short lock waits, so that a held lock means many retries, and a long window to retry in."""


def run(scenario: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    return asyncio.run(scenario())


class Heartbeat:
    """A task on the loop counting its ticks: if they advance, the loop was free to run them."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None
        self._waiting: tuple[int, asyncio.Event] | None = None

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(0.002)
            self.ticks += 1
            if self._waiting is not None and self.ticks >= self._waiting[0]:
                self._waiting[1].set()

    async def beats(self, count: int) -> None:
        """Return once the heartbeat has ticked ``count`` more times."""
        reached = asyncio.Event()
        self._waiting = (self.ticks + count, reached)
        await reached.wait()
        self._waiting = None


@contextmanager
def write_lock_held(url: str) -> Iterator[None]:
    """Another connection holds the lock appends need: SQLite's write lock, or on PostgreSQL a
    lock on the events table that keeps every insert waiting."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        blocker = sqlite3.connect(str(parsed.database), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        return
    with psycopg.connect(parsed.set(drivername="postgresql").render_as_string(hide_password=False)) as admin:
        admin.execute("LOCK TABLE events IN EXCLUSIVE MODE")  # until the block's end commits
        yield


async def submitted(*appends: Coroutine[Any, Any, None]) -> list[asyncio.Task[None]]:
    """Start the appends and let each get as far as handing its batch to the writer."""
    tasks = [asyncio.create_task(append) for append in appends]
    await asyncio.sleep(0)
    return tasks


def test_appends_and_blobs_through_the_writer_read_back(sql_url: str) -> None:
    events = run_events("run-1")

    async def scenario(store: SqlStore) -> str:
        writer = store.writer()
        assert isinstance(writer, EventWriter)
        assert store.writer() is writer  # one per store
        await writer.append("run-1", events[:1], 0)
        await writer.append("run-1", events[1:], 1)
        return await writer.put_blob(b"\x89PNG otter", "image/png")

    with SqlStore(sql_url) as store:
        digest = asyncio.run(scenario(store))
        assert store.read_run("run-1") == events
        assert hashes_of(store, "run-1") == expected_hashes(events)
        assert store.get_blob(digest).data == b"\x89PNG otter"


def test_an_in_memory_sqlite_store_writes_inline() -> None:
    with SqlStore("sqlite:///:memory:") as store:
        from store._migrate import ensure_schema

        ensure_schema(store.engine, "sqlite:///:memory:")
        writer = store.writer()
        assert isinstance(writer, InlineWriter)
        run(lambda: writer.append("run-1", run_events("run-1"), 0))
        assert store.read_run("run-1") == run_events("run-1")


def test_waiting_appends_of_many_runs_share_one_transaction(sql_url: str) -> None:
    runs = [f"run-{index}" for index in range(50)]

    async def scenario(store: SqlStore) -> None:
        writer = store.writer()
        with write_lock_held(sql_url):
            tasks = await submitted(*(writer.append(run_id, run_events(run_id), 0) for run_id in runs))
        await asyncio.gather(*tasks)

    with SqlStore(sql_url, settings=QUICK) as store:
        asyncio.run(scenario(store))
        # The first batch may have been taken alone before the lock blocked it; the other 49
        # waited meanwhile and went in together.
        assert store.write_transactions <= 2
        for run_id in runs:
            assert store.read_run(run_id) == run_events(run_id)


def test_one_runs_conflict_or_bad_batch_leaves_the_others_in_its_group_committed(sql_url: str) -> None:
    logs = {run_id: run_events(run_id) for run_id in ("run-a", "run-b", "run-c", "run-d", "run-e")}
    bad_text = logs["run-e"][4].model_copy(update={"result": "a file named b\udc80d"})  # not Unicode

    async def scenario(store: SqlStore) -> list[BaseException | None]:
        writer = store.writer()
        with write_lock_held(sql_url):
            tasks = await submitted(
                writer.append("run-a", logs["run-a"][2:], 0),  # stale: the log ends at 2
                writer.append("run-b", logs["run-b"][2:], 2),
                writer.append("run-c", logs["run-c"][3:], 2),  # seq 4 after 2: a caller's bug
                writer.append("run-d", logs["run-d"][2:], 2),
                writer.append("run-e", [*logs["run-e"][2:4], bad_text], 2),
            )
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    with SqlStore(sql_url, settings=QUICK) as store:
        for run_id, log in logs.items():
            store.append(run_id, log[:2], 0)
        before = store.write_transactions
        outcomes = asyncio.run(scenario(store))
        assert isinstance(outcomes[0], ConcurrencyError)
        assert (outcomes[0].expected_seq, outcomes[0].actual_seq) == (0, 2)
        assert outcomes[1] is None
        assert isinstance(outcomes[2], EventOrderError)
        assert outcomes[3] is None
        assert isinstance(outcomes[4], StoreError | UnicodeError)
        for run_id in ("run-b", "run-d"):
            assert store.read_run(run_id) == logs[run_id]
            assert hashes_of(store, run_id) == expected_hashes(logs[run_id])
        for run_id in ("run-a", "run-c", "run-e"):
            assert store.read_run(run_id) == logs[run_id][:2]  # nothing of the refused batch
        assert store.write_transactions - before <= 4  # not one per run (nor one more per retry)


def test_a_held_write_lock_delays_only_the_append_and_the_loop_keeps_running(sql_url: str) -> None:
    events = run_events("run-1")

    async def scenario(store: SqlStore) -> None:
        writer = store.writer()
        async with Heartbeat() as heartbeat:
            with write_lock_held(sql_url):
                (append,) = await submitted(writer.append("run-1", events, 0))
                await heartbeat.beats(100)  # the loop ran while the append waited for the lock
                assert not append.done()
            await append  # and once the lock is free, the append goes through

    with SqlStore(sql_url, settings=QUICK) as store:
        asyncio.run(scenario(store))
        assert store.read_run("run-1") == events


def test_a_lock_held_past_the_retry_window_is_store_unavailable_and_writes_nothing(sql_url: str) -> None:
    events = run_events("run-1")
    settings = WriterSettings(lock_timeout=0.05, retry_window=0.5, first_backoff=0.01)

    async def scenario(store: SqlStore) -> StoreUnavailableError:
        async with Heartbeat() as heartbeat:
            with write_lock_held(sql_url):
                ticks = heartbeat.ticks
                with pytest.raises(StoreUnavailableError) as raised:
                    await store.writer().append("run-1", events, 0)
                assert heartbeat.ticks > ticks  # the loop kept running meanwhile
        return raised.value

    with SqlStore(sql_url, settings=settings) as store:
        error = asyncio.run(scenario(store))
        assert str(error).startswith(f"gave up appending to run run-1 in {store.display_url} after ")
        assert "nothing after seq 0 was written" in str(error)
        assert "lock" in str(error)
        assert "\n" not in str(error)
        assert (error.run_id, error.expected_seq, error.outcome_unknown) == ("run-1", 0, False)
        with pytest.raises(RunNotFoundError):
            store.read_run("run-1")
        run(lambda: store.writer().append("run-1", events, 0))  # the writer goes on afterwards
        assert store.read_run("run-1") == events


def test_an_unreachable_server_is_store_unavailable_naming_the_url_without_its_password() -> None:
    url = "postgresql+psycopg://otter:s3cret@127.0.0.1:9/executus"  # port 9 (discard): refused
    settings = WriterSettings(connect_timeout=2, retry_window=0.3, first_backoff=0.05)
    with SqlStore(url, settings=settings) as store:
        with pytest.raises(StoreUnavailableError) as raised:
            run(lambda: store.writer().append("run-1", [started("run-1")], 0))
        message = str(raised.value)
        assert message.startswith(
            "gave up appending to run run-1 in postgresql+psycopg://otter:***@127.0.0.1:9/"
        )
        assert "s3cret" not in message
        assert "cannot open database" in message


def test_a_cancelled_append_still_commits_and_the_writer_stays_consistent(sql_url: str) -> None:
    events = run_events("run-1")

    async def scenario(store: SqlStore) -> None:
        writer = store.writer()
        await writer.append("run-1", events[:2], 0)
        with write_lock_held(sql_url):
            (append,) = await submitted(writer.append("run-1", events[2:4], 2))
            append.cancel()
            with pytest.raises(asyncio.CancelledError):
                await append
        # Handed over before the cancel: committed as if the caller had waited, so the run's
        # next append expects the seq after it.
        await writer.append("run-1", events[4:], 4)

    with SqlStore(sql_url, settings=QUICK) as store:
        asyncio.run(scenario(store))
        assert store.read_run("run-1") == events
        assert hashes_of(store, "run-1") == expected_hashes(events)


def test_closing_the_store_commits_what_waits_then_refuses_more(sql_url: str) -> None:
    runs = [f"run-{index}" for index in range(5)]

    async def scenario(store: SqlStore) -> None:
        writer = store.writer()
        tasks = await submitted(*(writer.append(run_id, run_events(run_id), 0) for run_id in runs))
        store.close()  # blocks until the writer has committed them all
        await asyncio.gather(*tasks)
        with pytest.raises(StoreError, match="closed"):
            await writer.append("late", [started("late")], 0)

    store = SqlStore(sql_url)
    asyncio.run(scenario(store))
    with SqlStore(sql_url) as reopened:
        for run_id in runs:
            assert reopened.read_run(run_id) == run_events(run_id)


@pytest.mark.parametrize(
    "bad",
    [
        {"lock_timeout": 0},
        {"statement_timeout": -1},
        {"retry_window": -1},
        {"max_group": 0},
    ],
)
def test_settings_that_cannot_work_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match=f"WriterSettings.{next(iter(bad))}"):
        WriterSettings(**bad)


def test_a_run_another_store_moved_on_fails_alone_in_its_group(sql_url: str) -> None:
    """This store's cached row of run-a is stale (another store appended to it): the group's
    write is refused by the database, and each batch is tried again on its own."""
    logs = {run_id: run_events(run_id) for run_id in ("run-a", "run-b", "run-c")}

    async def scenario(store: SqlStore) -> list[BaseException | None]:
        writer = store.writer()
        with write_lock_held(sql_url):
            # Not first: the first may be taken alone before the lock holds the writer up.
            tasks = await submitted(
                writer.append("run-b", logs["run-b"][2:], 2),
                writer.append("run-a", logs["run-a"][2:4], 2),  # the log is at 4 by now
                writer.append("run-c", logs["run-c"][2:], 2),
            )
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    with SqlStore(sql_url, settings=QUICK) as store, SqlStore(sql_url) as other:
        for run_id, log in logs.items():
            store.append(run_id, log[:2], 0)
        other.append("run-a", logs["run-a"][2:4], 2)
        outcomes = asyncio.run(scenario(store))
        assert isinstance(outcomes[1], ConcurrencyError)
        assert (outcomes[1].expected_seq, outcomes[1].actual_seq) == (2, 4)
        assert outcomes[0] is None
        assert outcomes[2] is None
        assert store.read_run("run-a") == logs["run-a"][:4]
        for run_id in ("run-b", "run-c"):
            assert store.read_run(run_id) == logs[run_id]
            assert hashes_of(store, run_id) == expected_hashes(logs[run_id])


def test_a_runs_row_moved_behind_the_stores_back_fails_alone_in_its_group(sql_url: str) -> None:
    """Only the runs-row update's guard on last_seq sees this: the events rows go in (their seqs
    are free), then the group's updates of ordinary steps (one statement for all) match one row
    too few, and each batch is tried again on its own."""
    logs = {run_id: run_events(run_id) for run_id in ("run-a", "run-b", "run-c")}

    async def scenario(store: SqlStore) -> list[BaseException | None]:
        writer = store.writer()
        with write_lock_held(sql_url):
            tasks = await submitted(
                writer.append("run-b", logs["run-b"][2:4], 2),
                writer.append("run-a", logs["run-a"][2:4], 2),
                writer.append("run-c", logs["run-c"][2:4], 2),
            )
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    with SqlStore(sql_url, settings=QUICK) as store:
        for run_id, log in logs.items():
            store.append(run_id, log[:2], 0)
        with store.engine.begin() as connection:
            connection.execute(text("UPDATE runs SET last_seq = 3 WHERE run_id = 'run-a'"))
        outcomes = asyncio.run(scenario(store))
        assert isinstance(outcomes[1], ConcurrencyError)
        assert (outcomes[1].expected_seq, outcomes[1].actual_seq) == (2, 3)
        assert outcomes[0] is None
        assert outcomes[2] is None
        assert store.read_run("run-a") == logs["run-a"][:2]
        for run_id in ("run-b", "run-c"):
            assert store.read_run(run_id) == logs[run_id][:4]
            assert store.get_run(run_id).last_seq == 4
            assert hashes_of(store, run_id) == expected_hashes(logs[run_id][:4])
