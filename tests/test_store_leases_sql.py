"""Leases in the SQL store: fencing inside the group commit, concurrent claimers, the writer's
lease port, and PostgreSQL appends with no global lock while readers tail gap-free.

The contract every backend keeps is in tests/test_leases.py; this file holds what only the SQL
store has (transactions, processes, locks).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url
from store_events import expected_hashes, hashes_of, run_events
from test_store_writer import QUICK, Heartbeat, submitted, write_lock_held

from executus import LeaseHeldError, LeaseLostError
from executus.storage import Lease, LeaseWriter
from store import SqlStore, StoredEvent, open_store, upgrade
from store._hot import LEDGER_LOCK_KEY

LIVE = 3600.0
CHILDREN = Path(__file__).resolve().parent / "store_children.py"
GOLDEN = Path(__file__).resolve().parent / "golden" / "v0_1_0"


def _admin(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(dsn, autocommit=True)


@pytest.mark.parametrize("new_owner_appended", [False, True], ids=["taken-over", "taken-over-and-appended"])
def test_a_stale_epoch_fails_only_its_own_append_in_a_group_commit(
    sql_url: str, new_owner_appended: bool
) -> None:
    """The fenced-out append gets a LeaseLostError, also when the new owner has taken its seqs
    (it must not read as a ConcurrencyError: the worker stops the run rather than retry)."""
    logs = {run_id: run_events(run_id) for run_id in ("run-a", "run-b", "run-c")}

    async def scenario(store: SqlStore, epochs: dict[str, int]) -> list[BaseException | None]:
        writer = store.writer()
        with write_lock_held(sql_url):  # so that the three wait, then go in one transaction
            tasks = await submitted(
                *(writer.append(run_id, log[2:], 2, epoch=epochs[run_id]) for run_id, log in logs.items())
            )
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    with SqlStore(sql_url, settings=QUICK) as store:
        epochs = {}
        for run_id, log in logs.items():
            epochs[run_id] = store.acquire(run_id, "worker-a", LIVE).epoch
            store.append(run_id, log[:2], 0, epoch=epochs[run_id])
        taken = store.acquire("run-b", "worker-b", LIVE, force=True)  # worker-a paused past its lease
        new_events = logs["run-b"][2:3]
        if new_owner_appended:  # from its own process: this store's cached row of run-b is stale
            with SqlStore(sql_url) as other:
                other.append("run-b", new_events, 2, epoch=taken.epoch)
        before = store.write_transactions
        outcomes = asyncio.run(scenario(store, epochs))
        assert outcomes[0] is None
        assert isinstance(outcomes[1], LeaseLostError)
        assert (outcomes[1].run_id, outcomes[1].epoch, outcomes[1].owner) == ("run-b", 1, "worker-b")
        assert outcomes[2] is None
        assert store.write_transactions - before <= 2  # the others were not retried one by one
        for run_id in ("run-a", "run-c"):
            assert store.read_run(run_id) == logs[run_id]
            assert hashes_of(store, run_id) == expected_hashes(logs[run_id])
        kept = logs["run-b"][:2] + (new_events if new_owner_appended else [])
        assert store.read_run("run-b") == kept
        assert store.get_run("run-b").last_seq == len(kept)


def test_leases_taken_and_given_up_together_share_a_transaction_and_a_refusal_is_only_its_own(
    sql_url: str,
) -> None:
    """Runs that start together take their leases in one group commit, beside appends; one
    whose lease another worker holds is refused alone; releases go the same way."""
    runs = [f"run-{index}" for index in range(20)]
    log = run_events("run-x")

    async def scenario(store: SqlStore) -> tuple[list[Lease | BaseException], BaseException | None]:
        writer = store.writer()
        assert isinstance(writer, LeaseWriter)
        with write_lock_held(sql_url):  # so that they all wait, then go in one transaction
            tasks = await submitted(
                *(writer.acquire(run_id, "worker-a", LIVE) for run_id in [*runs, "held"]),
                writer.append("run-x", log[2:], 2),
            )
        *acquired, appended = await asyncio.gather(*tasks, return_exceptions=True)
        leases = [lease for lease in acquired if isinstance(lease, Lease)]
        with write_lock_held(sql_url):
            releases = await submitted(*(writer.release(lease) for lease in leases))
        await asyncio.gather(*releases)
        return acquired, appended

    with SqlStore(sql_url, settings=QUICK) as store:
        store.append("run-x", log[:2], 0)
        store.acquire("held", "worker-b", LIVE)
        before = store.write_transactions
        acquired, appended = asyncio.run(scenario(store))
        # The writer's transactions: the acquires and the append in one (two if it took the first
        # alone before the lock stopped it), the releases in another (or two); not one per lease.
        assert 2 <= store.write_transactions - before <= 4
        assert appended is None
        assert store.read_run("run-x") == log
        *taken, refused = acquired
        assert [(lease.run_id, lease.owner, lease.epoch) for lease in taken] == [  # type: ignore[union-attr]
            (run_id, "worker-a", 1) for run_id in runs
        ]
        assert isinstance(refused, LeaseHeldError)
        assert (refused.run_id, refused.owner) == ("held", "worker-b")
        for run_id in runs:
            info = store.lease_of(run_id)
            assert info is not None
            assert (info.owner, info.epoch, info.live) == ("worker-a", 1, False)  # released
        held = store.lease_of("held")
        assert held is not None
        assert (held.owner, held.live) == ("worker-b", True)


def test_the_writer_serves_leases_off_the_event_loop(sql_url: str) -> None:
    """A heartbeat blocked on the database (SQLite's write lock held elsewhere) leaves the loop
    running; each lease call gets its answer."""

    async def scenario(store: SqlStore) -> None:
        writer = store.writer()
        assert isinstance(writer, LeaseWriter)
        lease = await writer.acquire("run-1", "worker-a", LIVE)
        await writer.append("run-1", run_events("run-1")[:1], 0, epoch=lease.epoch)
        async with Heartbeat() as heartbeat:
            with write_lock_held(sql_url):
                renewing = asyncio.create_task(writer.renew(lease, LIVE))
                await heartbeat.beats(5)
            renewal = await renewing
        assert renewal.lease.epoch == lease.epoch
        await writer.release(renewal.lease)

    with SqlStore(sql_url) as store:
        asyncio.run(scenario(store))
        info = store.lease_of("run-1")
        assert info is not None
        assert (info.owner, info.live) == ("worker-a", False)


def test_concurrent_claimers_never_claim_one_run_twice(sql_url: str) -> None:
    runs = 60
    with SqlStore(sql_url) as store:
        for number in range(runs):
            store.enqueue("librarian", "hi", run_id=f"run-{number:02}")
    claimed: dict[str, list[str]] = defaultdict(list)
    failures: list[BaseException] = []

    def claimer(owner: str) -> None:
        try:
            with SqlStore(sql_url) as own:
                while batch := own.claim(owner, LIVE, limit=3):
                    for claim in batch:
                        claimed[claim.lease.run_id].append(owner)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=claimer, args=(f"worker-{number}",)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert sorted(claimed) == [f"run-{number:02}" for number in range(runs)]
    assert all(len(owners) == 1 for owners in claimed.values())


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
def test_a_claim_skips_a_run_another_claimer_holds_locked_rather_than_wait(sql_url: str) -> None:
    with SqlStore(sql_url) as store, _admin(sql_url) as other:
        for number in range(3):
            store.enqueue("librarian", "hi", run_id=f"run-{number}")
        other.execute("BEGIN")
        other.execute("SELECT 1 FROM leases WHERE run_id = 'run-0' FOR UPDATE")  # mid-claim
        outcome: list[list[str]] = []
        claiming = threading.Thread(
            target=lambda: outcome.append([c.lease.run_id for c in store.claim("worker-a", LIVE, 2)]),
            daemon=True,
        )
        claiming.start()
        claiming.join(timeout=30)
        other.execute("ROLLBACK")
        assert outcome == [["run-1", "run-2"]]


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
def test_no_global_lock_an_open_append_of_one_run_does_not_block_another_and_tailing_waits_for_it(
    sql_url: str,
) -> None:
    """Run A's append is held open mid-transaction, its rows written but not committed (its
    seal waits for the ledger lock, held here). Run B's append commits meanwhile. A reader
    sees neither until A commits, then A's events before B's: it never moves past A's."""
    finishing_a = run_events("run-a")
    log_b = run_events("run-b", status=None)
    with (
        SqlStore(sql_url) as store_a,
        SqlStore(sql_url) as store_b,
        SqlStore(sql_url) as reader,
        _admin(sql_url) as admin,
    ):
        admin.execute("SELECT pg_advisory_lock(%s)", (LEDGER_LOCK_KEY,))
        appending_a = threading.Thread(target=store_a.append, args=("run-a", finishing_a, 0), daemon=True)
        appending_b = threading.Thread(target=store_b.append, args=("run-b", log_b, 0), daemon=True)
        try:
            appending_a.start()
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            while admin.execute(waiting).fetchone() != (1,):  # A has written its rows, and waits
                assert appending_a.is_alive()
            appending_b.start()
            appending_b.join(timeout=30)
            assert not appending_b.is_alive(), "run B's append waited for run A's transaction"
            assert reader.read_run("run-b") == log_b  # committed, and readable by run
            assert reader.read_after(0) == []  # but not by position while A may still commit
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", (LEDGER_LOCK_KEY,))
        appending_a.join(timeout=30)
        tailed = reader.read_after(0)
        assert [(stored.event.run_id, stored.event.seq) for stored in tailed] == [
            *(("run-a", event.seq) for event in finishing_a),
            *(("run-b", event.seq) for event in log_b),
        ]
        assert reader.read_after(tailed[-1].position) == []
        assert [
            stored.event.run_id for stored in reader.read_after(tailed[len(finishing_a) - 1].position)
        ] == ["run-b"] * len(log_b)


def _tail(reader: SqlStore, done: threading.Event, seen: list[StoredEvent]) -> None:
    position = 0
    while True:
        finishing = done.is_set()
        page = reader.read_after(position, limit=50)
        seen.extend(page)
        if page:
            position = page[-1].position
        elif finishing:
            return


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
def test_a_reader_tailing_appenders_in_several_processes_misses_nothing_and_repeats_nothing(
    sql_url: str, tmp_path: Path
) -> None:
    processes, runs, steps = 3, 6, 12
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILDREN), "append", sql_url, f"p{number}", str(runs), str(steps), str(go)]
        )
        for number in range(processes)
    ]
    seen: list[StoredEvent] = []
    done = threading.Event()
    with SqlStore(sql_url) as reader:
        tailer = threading.Thread(target=_tail, args=(reader, done, seen), daemon=True)
        tailer.start()
        go.touch()
        assert [child.wait(timeout=120) for child in children] == [0] * processes
        done.set()
        tailer.join(timeout=60)
        assert not tailer.is_alive()
        everything = reader.read_after(0, limit=100_000)
    keys = [(stored.event.run_id, stored.event.seq) for stored in seen]
    assert len(keys) == len(set(keys))  # nothing twice
    expected = {
        (f"p{number}-{run}", event.seq)
        for number in range(processes)
        for run in range(runs)
        for event in run_events(f"p{number}-{run}", steps=steps)
    }
    assert set(keys) == expected  # nothing missed
    assert seen == everything  # one order, however it was paged
    by_run: dict[str, list[int]] = defaultdict(list)
    for run_id, seq in keys:
        by_run[run_id].append(seq)
    assert all(seqs == sorted(seqs) for seqs in by_run.values())


def test_a_v0_1_0_database_upgrades_and_its_runs_take_leases(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    shutil.copyfile(GOLDEN / "crash.db", path)
    url = f"sqlite:///{path}"
    upgrade(url)
    with open_store(url) as store:
        [summary, *_] = store.list_runs()
        assert store.lease_of(summary.run_id) is None
        lease = store.acquire(summary.run_id, "worker-a", LIVE)
        assert lease.epoch == 1
        assert store.queued_runs() == []
