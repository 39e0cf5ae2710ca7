"""The writer through database faults: a frozen or restarted PostgreSQL, a reply to COMMIT lost.

The PostgreSQL tests stop, freeze (SIGSTOP) and restart a throwaway server of their own
(``own_postgres``). The loop's freedom is shown by a heartbeat's ticks, never by a timing bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

import pytest
from _pgserver import ThrowawayPostgres
from store_events import expected_hashes, hashes_of, run_events
from test_store_writer import QUICK, Heartbeat, submitted, write_lock_held

from executus import StoreUnavailableError
from executus.events import Event
from executus.storage import Lease, LeaseWriter
from store import SqlStore, WriterSettings
from store._hot import AppendTransaction
from store._session import AppendConnection, TransientFailure

_Result = TypeVar("_Result")


PAST_THE_DEADLINE = WriterSettings(
    lock_timeout=0.2, statement_timeout=0.3, connect_timeout=2, retry_window=60
)
"""A frozen server cannot enforce its own timeouts: after 1.5 s the writer abandons the
connection, and keeps reconnecting until the server is back."""


@pytest.mark.parametrize(
    ("settings", "frozen_for"), [(QUICK, 0.3), (PAST_THE_DEADLINE, 3.0)], ids=["briefly", "past-the-deadline"]
)
def test_a_frozen_server_delays_only_its_appends_which_are_made_once(
    own_postgres: ThrowawayPostgres, settings: WriterSettings, frozen_for: float
) -> None:
    run_id = f"frozen-{frozen_for}"
    events = run_events(run_id)

    async def scenario(store: SqlStore) -> None:
        writer = store.writer()
        await writer.append(run_id, events[:1], 0)  # connected
        async with Heartbeat() as heartbeat:
            own_postgres.pause()
            try:
                (append,) = await submitted(writer.append(run_id, events[1:], 1))
                ticks = heartbeat.ticks
                await asyncio.sleep(frozen_for)
                assert heartbeat.ticks > ticks  # the loop ran while the server did not answer
                assert not append.done()
            finally:
                own_postgres.resume()
            await append

    with SqlStore(own_postgres.url, settings=settings) as store:
        asyncio.run(scenario(store))
        assert store.read_run(run_id) == events
        assert hashes_of(store, run_id) == expected_hashes(events)


def test_a_server_frozen_for_good_is_store_unavailable_and_nothing_is_written(
    own_postgres: ThrowawayPostgres,
) -> None:
    events = run_events("frozen-for-good")
    settings = dataclasses.replace(PAST_THE_DEADLINE, retry_window=2)

    async def scenario(store: SqlStore) -> StoreUnavailableError:
        writer = store.writer()
        await writer.append("frozen-for-good", events[:1], 0)
        own_postgres.pause()
        try:
            with pytest.raises(StoreUnavailableError) as raised:
                # The bound is only a guard against hanging the suite if the writer never gave up.
                await asyncio.wait_for(writer.append("frozen-for-good", events[1:], 1), 120)
        finally:
            own_postgres.resume()
        return raised.value

    with SqlStore(own_postgres.url, settings=settings) as store:
        error = asyncio.run(scenario(store))
        assert (error.run_id, error.expected_seq, error.outcome_unknown) == ("frozen-for-good", 1, False)
        assert "nothing after seq 1 was written" in str(error)
        assert store.read_run("frozen-for-good") == events[:1]


def test_a_lease_asked_for_while_the_server_is_down_is_taken_once_it_is_back_or_given_up_in_one_line(
    own_postgres: ThrowawayPostgres,
) -> None:
    """Acquires and releases ride the group commit, so they get its retries: a run starting
    while the database restarts waits for it rather than failing, and one that outlives the
    retry window fails as StoreUnavailableError, naming the run."""

    @contextlib.asynccontextmanager
    async def server_down(store: SqlStore, warm_run: str) -> AsyncIterator[LeaseWriter]:
        """The store's writer, connected, while the server is stopped."""
        writer = store.writer()
        assert isinstance(writer, LeaseWriter)
        await writer.append(warm_run, run_events(warm_run)[:1], 0)
        await asyncio.to_thread(own_postgres.stop_server)
        try:
            yield writer
        finally:
            await asyncio.to_thread(own_postgres.start_server)

    async def restarted(store: SqlStore) -> Lease:
        async with server_down(store, "warm") as writer:
            (waiting,) = await submitted(writer.acquire("run-1", "worker-a", 60))
            await asyncio.sleep(0.5)
            assert not waiting.done()  # retrying, not failed
        lease = await waiting
        await writer.release(lease)
        return lease

    async def gone(store: SqlStore) -> StoreUnavailableError:
        async with server_down(store, "warm-2") as writer:
            with pytest.raises(StoreUnavailableError) as raised:
                await asyncio.wait_for(writer.acquire("run-2", "worker-a", 60), 120)  # a guard only
        return raised.value

    with SqlStore(own_postgres.url, settings=QUICK) as store:
        lease = asyncio.run(restarted(store))
        assert (lease.run_id, lease.owner, lease.epoch) == ("run-1", "worker-a", 1)
        info = store.lease_of("run-1")
        assert info is not None
        assert (info.epoch, info.live) == (1, False)  # released once the server was back
    with SqlStore(own_postgres.url, settings=dataclasses.replace(QUICK, retry_window=1)) as store:
        error = asyncio.run(gone(store))
        assert error.run_id == "run-2"
        assert str(error).startswith("gave up acquiring run run-2 in postgresql")
        assert "\n" not in str(error)
        assert store.lease_of("run-2") is None


def test_appends_resume_after_a_server_restart_with_no_loss_and_no_duplicate(
    own_postgres: ThrowawayPostgres,
) -> None:
    runs = [f"restart-{index}" for index in range(5)]
    logs = {run_id: run_events(run_id, steps=10, status="ok") for run_id in runs}

    async def record(
        writer_append: Callable[[str, Sequence[Event], int], object], run_id: str, stopped: asyncio.Event
    ) -> None:
        for event in logs[run_id]:
            if event.seq == len(logs[run_id]) // 2:
                # The second half is appended while the server is down, however long stopping
                # it takes on a busy machine.
                await stopped.wait()
            await writer_append(run_id, [event], event.seq - 1)  # type: ignore[misc]
            await asyncio.sleep(0.01)

    async def scenario(store: SqlStore) -> None:
        writer = store.writer()
        stopped = asyncio.Event()
        tasks = [asyncio.create_task(record(writer.append, run_id, stopped)) for run_id in runs]
        await asyncio.sleep(0.1)
        await asyncio.to_thread(own_postgres.stop_server)
        stopped.set()
        await asyncio.sleep(0.5)
        assert not any(task.done() for task in tasks)  # the runs were cut off mid-way
        await asyncio.to_thread(own_postgres.start_server)
        await asyncio.gather(*tasks)

    with SqlStore(own_postgres.url, settings=QUICK) as store:
        asyncio.run(scenario(store))
        for run_id, log in logs.items():
            assert store.read_run(run_id) == log
            assert hashes_of(store, run_id) == expected_hashes(log)


class _Abandoned(Exception):
    pass


class LosesTheReplyToCommit:
    """The store's connection, but its next transaction fails as a connection lost after COMMIT
    was sent: with ``committed``, after really committing (the reply was what got lost), else
    after rolling back (the COMMIT never arrived)."""

    def __init__(self, real: AppendConnection, *, committed: bool) -> None:
        self._real = real
        self._committed = committed
        self.armed = False

    def attempt(self, doing: Callable[[], str], body: Callable[[AppendTransaction], _Result]) -> _Result:
        if not self.armed:
            return self._real.attempt(doing, body)
        self.armed = False
        if self._committed:
            self._real.attempt(doing, body)
        else:

            def written_then_abandoned(transaction: AppendTransaction) -> _Result:
                body(transaction)
                raise _Abandoned

            with pytest.raises(_Abandoned):
                self._real.attempt(doing, written_then_abandoned)
        raise TransientFailure("lost the connection while committing (injected)", uncertain=True)

    def close(self) -> None:
        self._real.close()


@pytest.mark.parametrize("committed", [True, False], ids=["commit-kept", "commit-lost"])
def test_a_group_whose_commit_reply_was_lost_is_written_once_with_no_conflict(
    sql_url: str, committed: bool
) -> None:
    one, two = run_events("lost-1"), run_events("lost-2")

    async def scenario(store: SqlStore, connection: LosesTheReplyToCommit) -> None:
        writer = store.writer()
        await writer.append("lost-1", one[:1], 0)
        with write_lock_held(sql_url):  # so that the next four go in one group
            connection.armed = True
            tasks = await submitted(
                writer.append("lost-1", one[1:3], 1),
                writer.append("lost-2", two[:2], 0),
                writer.append("lost-1", one[3:], 3),
                writer.append("lost-2", two[2:], 2),
            )
        await asyncio.gather(*tasks)

    with SqlStore(sql_url, settings=QUICK) as store:
        connection = LosesTheReplyToCommit(store._committer._connection, committed=committed)
        store._committer._connection = connection  # type: ignore[assignment]
        asyncio.run(scenario(store, connection))
        assert not connection.armed  # the fault happened
        for run_id, log in (("lost-1", one), ("lost-2", two)):
            assert store.read_run(run_id) == log
            assert hashes_of(store, run_id) == expected_hashes(log)
