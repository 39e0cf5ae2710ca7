"""Run ownership, the work queue and cancel requests (``RunLeases``), on every backend.

Expiry is made without waiting: a ``ttl`` of 0 is a lease that has already run out, one of an
hour is live for the whole test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest
from store_events import run_events, started

from executus import LeaseHeldError, LeaseLostError, RunExistsError, RunNotFoundError
from executus.redaction import RedactingStore, RedactingWriter, Redactor
from executus.storage import EventStore, InlineWriter, Lease, LeaseWriter, MemoryStore, Renewal, RunLeases
from store import SqlStore

LIVE = 3600.0
EXPIRED = 0.0


class LeasingStore(EventStore, RunLeases, Protocol):
    """A store that records runs and keeps their leases."""


class _ThroughWriter:
    """A SQL store whose acquire, renew and release go through its writer, as an executor's do
    (acquires and releases ride the group commit there), so the contract holds on both paths."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._writer = store.writer()
        assert isinstance(self._writer, LeaseWriter)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def acquire(self, run_id: str, owner: str, ttl: float, *, force: bool = False) -> Lease:
        return asyncio.run(self._writer.acquire(run_id, owner, ttl, force=force))

    def renew(self, lease: Lease, ttl: float) -> Renewal:
        return asyncio.run(self._writer.renew(lease, ttl))

    def release(self, lease: Lease) -> None:
        asyncio.run(self._writer.release(lease))


def _opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LeasingStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    backend, _, through = request.param.partition("-")
    empty_database = request.getfixturevalue("empty_database")
    with SqlStore(empty_database(backend, request, tmp_path)) as opened:
        yield _ThroughWriter(opened) if through else opened  # type: ignore[misc]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def leases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LeasingStore]:
    """A store that keeps leases."""
    yield from _opened(request, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "postgresql", "sqlite-writer", "postgresql-writer"])
def leasing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LeasingStore]:
    """The same, and a SQL store whose acquire, renew and release go through its writer: for
    the tests of those three."""
    yield from _opened(request, tmp_path)


def test_a_new_run_is_acquired_at_epoch_one_and_a_live_lease_is_refused_to_another_owner(
    leasing: LeasingStore,
) -> None:
    lease = leasing.acquire("run-1", "worker-a", LIVE)
    assert (lease.run_id, lease.owner, lease.epoch) == ("run-1", "worker-a", 1)
    with pytest.raises(LeaseHeldError) as raised:
        leasing.acquire("run-1", "worker-b", LIVE)
    assert (raised.value.run_id, raised.value.owner) == ("run-1", "worker-a")
    assert raised.value.expires_at == lease.expires_at
    assert "owned by worker-a until" in str(raised.value)
    assert "--force" in str(raised.value)
    info = leasing.lease_of("run-1")
    assert info is not None
    assert (info.owner, info.epoch, info.live, info.cancel_reason) == ("worker-a", 1, True, None)


def test_the_same_owner_re_acquires_and_force_takes_over_each_with_a_new_epoch(leasing: LeasingStore) -> None:
    assert leasing.acquire("run-1", "worker-a", LIVE).epoch == 1
    assert leasing.acquire("run-1", "worker-a", LIVE).epoch == 2
    taken = leasing.acquire("run-1", "worker-b", LIVE, force=True)
    assert (taken.owner, taken.epoch) == ("worker-b", 3)


def test_an_expired_lease_is_acquired_by_another_owner(leasing: LeasingStore) -> None:
    leasing.acquire("run-1", "worker-a", EXPIRED)
    assert leasing.acquire("run-1", "worker-b", LIVE).epoch == 2
    info = leasing.lease_of("run-1")
    assert info is not None
    assert (info.owner, info.live) == ("worker-b", True)


def test_renew_extends_the_lease_until_someone_else_takes_it(leasing: LeasingStore) -> None:
    lease = leasing.acquire("run-1", "worker-a", EXPIRED)
    renewal = leasing.renew(lease, LIVE)
    assert renewal.cancel_reason is None
    assert renewal.lease.epoch == lease.epoch
    assert renewal.lease.expires_at >= lease.expires_at + timedelta(seconds=LIVE - 60)
    with pytest.raises(LeaseHeldError):  # live again: nobody else may take it
        leasing.acquire("run-1", "worker-b", LIVE)
    leasing.acquire("run-1", "worker-b", LIVE, force=True)
    with pytest.raises(LeaseLostError) as raised:
        leasing.renew(renewal.lease, LIVE)
    assert (raised.value.run_id, raised.value.epoch, raised.value.owner) == ("run-1", 1, "worker-b")
    assert "now held by worker-b" in str(raised.value)


def test_release_lets_the_lease_expire_keeps_the_owner_and_is_a_no_op_once_the_epoch_moved(
    leasing: LeasingStore,
) -> None:
    old = leasing.acquire("run-1", "worker-a", LIVE)
    leasing.release(old)
    info = leasing.lease_of("run-1")
    assert info is not None
    assert (info.owner, info.epoch, info.live) == ("worker-a", 1, False)
    new = leasing.acquire("run-1", "worker-b", LIVE)
    leasing.release(old)  # stale: changes nothing
    info = leasing.lease_of("run-1")
    assert info is not None
    assert (info.owner, info.epoch, info.live) == ("worker-b", new.epoch, True)


def test_a_fenced_append_with_a_stale_epoch_fails_and_writes_nothing(leasing: LeasingStore) -> None:
    events = run_events("run-1", status=None)
    old = leasing.acquire("run-1", "worker-a", LIVE)
    leasing.append("run-1", events[:1], 0, epoch=old.epoch)
    new = leasing.acquire("run-1", "worker-b", LIVE, force=True)
    with pytest.raises(LeaseLostError) as raised:
        leasing.append("run-1", events[1:3], 1, epoch=old.epoch)
    assert (raised.value.epoch, raised.value.owner) == (old.epoch, "worker-b")
    assert leasing.read_run("run-1") == events[:1]
    assert leasing.get_run("run-1").last_seq == 1
    leasing.append("run-1", events[1:3], 1, epoch=new.epoch)
    assert leasing.read_run("run-1") == events[:3]


def test_a_fenced_append_to_a_run_never_leased_fails(leases: LeasingStore) -> None:
    with pytest.raises(LeaseLostError) as raised:
        leases.append("run-1", run_events("run-1")[:1], 0, epoch=1)
    assert raised.value.owner is None
    assert leases.list_runs() == []


def test_an_unfenced_append_ignores_leases_and_a_run_recorded_so_has_no_lease(leasing: LeasingStore) -> None:
    leasing.acquire("run-1", "worker-a", LIVE)
    leasing.append("run-1", run_events("run-1", status=None)[:1], 0)
    leasing.append("run-2", run_events("run-2")[:1], 0)
    assert leasing.get_run("run-1").last_seq == 1
    assert leasing.lease_of("run-2") is None


def test_a_queued_run_is_claimed_once_and_leaves_the_queue_when_it_starts(leases: LeasingStore) -> None:
    queued = leases.enqueue("librarian", "Any books about otters?", run_id="run-1", caller_id="alice")
    assert (queued.run_id, queued.agent, queued.input, queued.caller_id) == (
        "run-1",
        "librarian",
        "Any books about otters?",
        "alice",
    )
    assert leases.queued_runs() == [queued]
    info = leases.lease_of("run-1")
    assert info is not None
    assert (info.owner, info.live) == (None, False)
    [claim] = leases.claim("worker-a", LIVE, limit=10)
    assert claim.queued == queued
    assert (claim.agent, claim.cancel_reason) == ("librarian", None)
    assert (claim.lease.owner, claim.lease.epoch) == ("worker-a", 1)
    assert (claim.previous_owner, claim.previous_expiry) == (None, None)
    assert leases.claim("worker-b", LIVE, limit=10) == []
    assert leases.queued_runs() == [queued]  # claimed, not started yet
    leases.append("run-1", [started("run-1")], 0, epoch=claim.lease.epoch)
    assert leases.queued_runs() == []


def test_a_queued_run_whose_claimer_died_before_starting_it_is_claimed_again(leases: LeasingStore) -> None:
    queued = leases.enqueue("librarian", "hi", run_id="run-1")
    [first] = leases.claim("worker-a", EXPIRED, limit=1)
    [second] = leases.claim("worker-b", LIVE, limit=1)
    assert second.queued == queued
    assert (second.lease.epoch, second.previous_owner) == (2, "worker-a")
    assert second.previous_expiry == first.lease.expires_at


def test_enqueue_refuses_an_id_that_is_queued_or_recorded(leases: LeasingStore) -> None:
    leases.enqueue("librarian", "hi", run_id="run-1")
    leases.append("run-2", run_events("run-2")[:1], 0)
    for run_id in ("run-1", "run-2"):
        with pytest.raises(RunExistsError, match=f"run '{run_id}' already exists"):
            leases.enqueue("librarian", "hi", run_id=run_id)


def test_an_unfinished_run_whose_lease_expired_is_claimed_and_a_finished_one_never(
    leasing: LeasingStore,
) -> None:
    events = run_events("run-1", status=None)
    lease = leasing.acquire("run-1", "worker-a", EXPIRED)
    leasing.append("run-1", events, 0, epoch=lease.epoch)
    done = leasing.acquire("run-2", "worker-a", LIVE)
    leasing.append("run-2", run_events("run-2"), 0, epoch=done.epoch)
    leasing.release(done)
    [claim] = leasing.claim("worker-b", LIVE, limit=10)
    assert claim.queued is None
    assert claim.agent == "librarian"  # the recorded run's, as the worker picks its agent by it
    assert (claim.lease.run_id, claim.lease.owner, claim.lease.epoch) == ("run-1", "worker-b", 2)
    assert (claim.previous_owner, claim.previous_expiry) == ("worker-a", lease.expires_at)
    assert leasing.claim("worker-c", LIVE, limit=10) == []
    with pytest.raises(LeaseLostError):  # the old owner, back from its pause
        leasing.append("run-1", run_events("run-1")[len(events) :], len(events), epoch=lease.epoch)


def test_claim_takes_only_runs_of_the_agents_named_oldest_first_up_to_the_limit(
    leases: LeasingStore,
) -> None:
    for number in range(4):
        leases.enqueue("librarian" if number != 1 else "clerk", f"question {number}", run_id=f"run-{number}")
    claimed = leases.claim("worker-a", LIVE, limit=2, agents=["librarian"])
    assert [claim.lease.run_id for claim in claimed] == ["run-0", "run-2"]
    assert [claim.lease.run_id for claim in leases.claim("worker-b", LIVE, limit=5, agents=["clerk"])] == [
        "run-1"
    ]
    assert [claim.lease.run_id for claim in leases.claim("worker-c", LIVE, limit=5)] == ["run-3"]


def test_a_cancel_request_reaches_the_owner_at_its_next_renewal(leasing: LeasingStore) -> None:
    lease = leasing.acquire("run-1", "worker-a", LIVE)
    leasing.append("run-1", run_events("run-1", status=None)[:1], 0, epoch=lease.epoch)
    leasing.request_cancel("run-1", "the user changed their mind")
    assert leasing.renew(lease, LIVE).cancel_reason == "the user changed their mind"
    info = leasing.lease_of("run-1")
    assert info is not None
    assert info.cancel_reason == "the user changed their mind"


def test_a_cancel_request_without_a_reason_is_still_a_request(leasing: LeasingStore) -> None:
    leasing.enqueue("librarian", "hi", run_id="run-1")
    leasing.request_cancel("run-1", None)
    [claim] = leasing.claim("worker-a", LIVE, limit=1)
    assert claim.cancel_reason == ""  # the claimer applies it as the run starts
    assert leasing.renew(claim.lease, LIVE).cancel_reason == ""


def test_a_cancel_request_for_an_unknown_run_is_refused(leases: LeasingStore) -> None:
    with pytest.raises(RunNotFoundError):
        leases.request_cancel("run-404", "why not")


def test_a_cancel_request_for_a_run_recorded_without_a_lease_waits_for_its_next_owner(
    leasing: LeasingStore,
) -> None:
    leasing.append("run-1", run_events("run-1", status=None)[:1], 0)
    leasing.request_cancel("run-1", "stop")
    lease = leasing.acquire("run-1", "worker-a", LIVE)
    assert leasing.renew(lease, LIVE).cancel_reason == "stop"


def test_queued_runs_come_oldest_first_up_to_the_limit(leases: LeasingStore) -> None:
    for number in range(3):
        leases.enqueue("librarian", "hi", run_id=f"run-{number}")
    assert [queued.run_id for queued in leases.queued_runs(limit=2)] == ["run-0", "run-1"]
    assert [queued.run_id for queued in leases.queued_runs(limit=None)] == ["run-0", "run-1", "run-2"]


def test_wait_for_work_returns_at_its_timeout_with_no_work(leases: LeasingStore) -> None:
    leases.wait_for_work(0.01)


def test_wait_for_work_wakes_when_a_run_is_enqueued(leases: LeasingStore) -> None:
    if isinstance(leases, SqlStore | _ThroughWriter) and leases.engine.dialect.name == "sqlite":
        pytest.skip("SQLite has no notifications: wait_for_work sleeps its timeout out")
    woke = threading.Event()

    def wait() -> None:
        leases.wait_for_work(600)
        woke.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    # An enqueue before the waiter listens is not seen: enqueue until it wakes (30 s at most).
    for attempt in range(150):
        leases.enqueue("librarian", "hi", run_id=f"run-{attempt}")
        if woke.wait(0.2):
            break
    waiter.join(30)
    assert woke.is_set()


def test_the_inline_writer_keeps_leases_and_fences_through_the_store() -> None:
    store = MemoryStore()
    writer = InlineWriter(store)
    events = run_events("run-1", status=None)

    async def heartbeat() -> Lease:
        lease = await writer.acquire("run-1", "worker-a", LIVE)
        await writer.append("run-1", events[:1], 0, epoch=lease.epoch)
        renewed = (await writer.renew(lease, LIVE)).lease
        store.acquire("run-1", "worker-b", LIVE, force=True)
        with pytest.raises(LeaseLostError):
            await writer.append("run-1", events[1:2], 1, epoch=renewed.epoch)
        await writer.release(renewed)  # stale: a no-op
        return renewed

    asyncio.run(heartbeat())
    assert store.read_run("run-1") == events[:1]
    info = store.lease_of("run-1")
    assert info is not None
    assert (info.owner, info.live) == ("worker-b", True)


def test_redacting_wrappers_pass_leases_and_epochs_through() -> None:
    store = MemoryStore()
    redacting = RedactingStore(store, Redactor(b"k" * 32))
    writer = RedactingWriter(InlineWriter(store), Redactor(b"k" * 32), read_run=store.read_run)
    events = run_events("run-1", status=None)

    async def scenario() -> None:
        lease = await writer.acquire("run-1", "worker-a", LIVE)
        await writer.append("run-1", events[:1], 0, epoch=lease.epoch)
        assert (await writer.renew(lease, LIVE)).cancel_reason is None
        redacting.append("run-1", events[1:2], 1, epoch=lease.epoch)
        store.acquire("run-1", "worker-b", LIVE, force=True)
        with pytest.raises(LeaseLostError):
            await writer.append("run-1", events[2:3], 2, epoch=lease.epoch)
        with pytest.raises(LeaseLostError):
            redacting.append("run-1", events[2:3], 2, epoch=lease.epoch)
        await writer.release(lease)

    asyncio.run(scenario())
    assert isinstance(redacting, RunLeases)
    assert store.read_run("run-1") == events[:2]
