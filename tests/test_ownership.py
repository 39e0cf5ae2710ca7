"""Runs are owned: leases, fenced appends, the heartbeat, cancel requests, takeovers, idempotent
tools re-run on recovery (in one process, on the in-memory store; tests/test_workers.py runs
real worker processes over SQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from _support import START

from executus import (
    Agent,
    DatabaseUnavailableError,
    Executor,
    LeaseHeldError,
    LeaseLostError,
    SequentialIds,
    ToolContext,
    VirtualClock,
    Worker,
    enqueue,
    tool,
)
from executus._ownership import HandedOverError
from executus.events import Event, RunCancelled, RunResumed, ToolFinished
from executus.forensics import explain
from executus.storage import MemoryStore
from executus.testing import ScriptedModel, call
from replay import Replayer

TRANSFERS: list[int] = []
FETCHES: list[str] = []


@tool
async def transfer(amount: int) -> str:
    """Move money (not safe to repeat).

    Args:
        amount: how much.
    """
    TRANSFERS.append(amount)
    await asyncio.sleep(600)
    return f"moved {amount}"


@tool(idempotent=True)
async def fetch(url: str) -> str:
    """Read a page (safe to repeat).

    Args:
        url: which page.
    """
    FETCHES.append(url)
    await asyncio.sleep(600 if len(FETCHES) == 1 else 1)
    return f"page {url}"


@pytest.fixture(autouse=True)
def _no_side_effects_yet() -> None:
    TRANSFERS.clear()
    FETCHES.clear()


def _setup(worker_id: str = "worker-a") -> tuple[VirtualClock, MemoryStore, Executor]:
    clock = VirtualClock(START)
    store = MemoryStore(now=clock.now)
    return clock, store, Executor(store, clock=clock, ids=SequentialIds(), worker_id=worker_id, lease_ttl=30)


async def _hand_over_once_both_tools_run(executor: Executor, agent: Agent) -> None:
    """Run ``agent`` (it calls fetch and transfer at once) until both tools are running, then
    stop it there as a worker shutting down does: the run is left for another worker."""
    task = asyncio.ensure_future(executor.run(agent, None, "pay"))
    while len(TRANSFERS) + len(FETCHES) < 2:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    executor._active["run-0001"].hand_over()
    with pytest.raises(Exception, match="handed over"):
        await task


async def _until(store: MemoryStore, run_id: str, kind: str) -> None:
    while not store.list_runs() or kind not in [event.kind for event in store.read_run(run_id)]:  # noqa: ASYNC110
        await asyncio.sleep(0.5)


def test_a_run_is_owned_while_it_runs_and_released_when_it_ends() -> None:
    _, store, executor = _setup()
    agent = Agent("payer", ScriptedModel(["done"]))
    result = executor.run_sync(agent, None, "hello")
    info = store.lease_of(result.run_id)
    assert info is not None
    assert (info.owner, info.live) == ("worker-a", False)
    assert store.claim("worker-b", 30, 10) == []  # a finished run is never claimed again


def test_a_run_whose_lease_moved_on_stops_at_once_and_writes_nothing_more() -> None:
    clock, store, executor = _setup()
    model = ScriptedModel([call("transfer", amount=5), call("transfer", amount=6), "done"])
    agent = Agent("payer", model, tools=[transfer])

    async def scenario() -> None:
        task = asyncio.ensure_future(executor.run(agent, None, "pay"))
        await _until(store, "run-0001", "tool_started")
        store.acquire("run-0001", "worker-b", 30, force=True)  # another worker took it over
        with pytest.raises(LeaseLostError) as lost:
            await task
        assert lost.value.owner == "worker-b"

    clock.run(scenario())
    assert [event.kind for event in store.read_run("run-0001")][-1] == "tool_started"
    assert TRANSFERS == [5]  # the second transfer never started
    assert len(model.requests) == 1


def test_a_cancel_requested_elsewhere_is_applied_within_one_heartbeat_as_a_caller_cancel() -> None:
    clock, store, executor = _setup()
    agent = Agent("payer", ScriptedModel([call("transfer", amount=5)]), tools=[transfer])

    async def scenario() -> None:
        task = asyncio.ensure_future(executor.run(agent, None, "pay"))
        await _until(store, "run-0001", "tool_started")
        store.request_cancel("run-0001", "the customer changed their mind")
        result = await task
        assert result.status == "cancelled"

    started = clock.now()
    clock.run(scenario())
    cancelled = [event for event in store.read_run("run-0001") if isinstance(event, RunCancelled)]
    assert [(event.cause, event.detail) for event in cancelled] == [
        ("caller", "the customer changed their mind")
    ]
    assert cancelled[0].at - started <= timedelta(seconds=10 + 1)  # one heartbeat: ttl / 3


def test_resume_refuses_a_run_another_worker_owns_and_force_takes_it_over() -> None:
    clock, store, executor = _setup()
    agent = Agent("payer", ScriptedModel([call("transfer", amount=5)]), tools=[transfer])

    async def crash() -> None:
        task = asyncio.ensure_future(executor.run(agent, None, "pay"))
        await _until(store, "run-0001", "tool_started")
        task.cancel()  # stands in for a live worker: its lease stays
        store.acquire("run-0001", "worker-a", 30)

    clock.run(crash())
    other = Executor(store, clock=clock, worker_id="worker-b")
    again = Agent("payer", ScriptedModel(["checked"]), tools=[transfer])
    with pytest.raises(LeaseHeldError, match=r"worker-a.*--force"):
        clock.run(other.resume("run-0001", again))
    result = clock.run(other.resume("run-0001", again, force=True))
    assert result.status == "ok"
    resumed = [event for event in store.read_run("run-0001") if isinstance(event, RunResumed)][-1]
    assert (resumed.worker_id, resumed.previous_owner, resumed.forced) == ("worker-b", "worker-a", True)


def test_recovery_reruns_an_idempotent_tool_in_flight_and_answers_the_other_interrupted() -> None:
    clock, store, executor = _setup()
    model = ScriptedModel([[call("fetch", url="a"), call("transfer", amount=5)], "done"])
    agent = Agent("payer", model, tools=[fetch, transfer])
    clock.run(_hand_over_once_both_tools_run(executor, agent))
    recovering = Executor(store, clock=clock, worker_id="worker-b")
    after = Agent("payer", ScriptedModel(["done"]), tools=[fetch, transfer])
    result = clock.run(recovering.resume("run-0001", after))

    assert result.status == "ok"
    assert (FETCHES, TRANSFERS) == (["a", "a"], [5])  # fetch ran again, the transfer did not
    events = store.read_run("run-0001")
    resumed = next(event for event in events if isinstance(event, RunResumed))
    assert (resumed.worker_id, resumed.previous_owner, resumed.forced) == ("worker-b", "worker-a", None)
    assert resumed.lease_expired_at is not None
    assert resumed.rerun == ("call-1",)
    assert [call.name for call in resumed.interrupted] == ["fetch", "transfer"]
    answers = {event.name: event for event in events if isinstance(event, ToolFinished)}
    assert answers["fetch"].result == "page a"
    error = answers["transfer"].error
    assert error is not None
    assert error.type == "Interrupted"
    # The recovered run replays as recorded: the takeover and the re-run included.
    replayed = Replayer(blobs=store).replay_run(events)
    assert replayed.divergence is None, replayed.divergence


@pytest.mark.parametrize("stop", ["lease lost", "handed over"])
def test_a_child_run_of_a_run_stopped_here_ends_saying_its_parent_stopped(stop: str) -> None:
    clock, store, executor = _setup()
    accountant = Agent("accountant", ScriptedModel([call("transfer", amount=9)]), tools=[transfer])

    @tool
    async def delegate(task: str, context: ToolContext) -> str:
        """Hand the task to the accountant, as a child run.

        Args:
            task: what to do.
        """
        result = await context.start_child(accountant, task)
        return result.output or ""

    agent = Agent("manager", ScriptedModel([call("delegate", task="pay the rent")]), tools=[delegate])

    async def scenario() -> None:
        task = asyncio.ensure_future(executor.run(agent, None, "rent is due"))
        await _until(store, "run-0002", "tool_started")  # the child's transfer is under way
        if stop == "lease lost":
            store.acquire("run-0001", "worker-b", 30, force=True)  # another worker took it over
            await clock.sleep(11)  # the next heartbeat hears of it
        else:
            executor._active["run-0001"].hand_over()  # this worker is shutting down
        with pytest.raises(LeaseLostError if stop == "lease lost" else HandedOverError):
            await task

    clock.run(scenario())
    child = store.read_run("run-0002")
    assert store.get_run("run-0002").status == "cancelled"
    (cancelled,) = [event for event in child if isinstance(event, RunCancelled)]
    assert cancelled.cause == "parent_stopped"
    assert "run-0001" in cancelled.detail
    assert ("worker-b" if stop == "lease lost" else "handed over") in cancelled.detail
    assert [flight.name for flight in cancelled.in_flight] == ["transfer"]
    assert store.get_run("run-0001").status == "running"  # the parent's log: for its next owner
    (outcome, *_) = explain(child).section("outcome")[1:]
    assert "parent stopped" in outcome.text
    assert "caller" not in outcome.text
    replayed = Replayer(blobs=store).replay_run(child)
    assert replayed.divergence is None, replayed.divergence


def test_a_cancel_waiting_for_the_takeover_ends_the_run_before_any_model_call_or_rerun() -> None:
    """``executus cancel`` of a run whose worker died: the worker that takes it over records the
    takeover, answers what was in flight, and ends the run cancelled with the reason; it neither
    calls the model nor re-runs the idempotent tool."""
    clock, store, executor = _setup()
    agent = Agent(
        "payer",
        ScriptedModel([[call("fetch", url="a"), call("transfer", amount=5)]]),
        tools=[fetch, transfer],
    )
    clock.run(_hand_over_once_both_tools_run(executor, agent))
    store.request_cancel("run-0001", "the customer changed their mind")
    recovering = Executor(store, clock=clock, worker_id="worker-b")
    model = ScriptedModel(["never asked"])
    result = clock.run(recovering.resume("run-0001", Agent("payer", model, tools=[fetch, transfer])))

    assert result.status == "cancelled"
    assert model.requests == []
    assert (FETCHES, TRANSFERS) == (["a"], [5])
    events = store.read_run("run-0001")
    resumed_at = next(index for index, event in enumerate(events) if isinstance(event, RunResumed))
    assert [event.kind for event in events[resumed_at:]] == [
        "run_resumed",
        "tool_finished",
        "tool_finished",
        "run_cancelled",
        "run_finished",
    ]
    resumed, cancelled = events[resumed_at], events[-2]
    assert isinstance(resumed, RunResumed)
    assert resumed.rerun is None
    assert isinstance(cancelled, RunCancelled)
    assert (cancelled.cause, cancelled.detail, cancelled.in_flight) == (
        "caller",
        "the customer changed their mind",
        (),
    )
    replayed = Replayer(blobs=store).replay_run(events)
    assert replayed.divergence is None, replayed.divergence


# -- a Worker in this process ----------------------------------------------------------------------


def test_a_worker_runs_queued_runs_and_hands_a_run_in_flight_over_when_it_stops() -> None:
    store = MemoryStore()
    quick = Agent("quick", ScriptedModel(["one", "two", "three"]))
    slow = Agent("slow", ScriptedModel([call("transfer", amount=7)]), tools=[transfer])
    queued = [enqueue(store, quick, f"task {index}", caller_id="c") for index in range(3)]
    stuck = enqueue(store, "slow", "pay")
    worker = Worker(store, [quick, slow], concurrency=2, worker_id="w1", lease_ttl=30, poll_interval=0.05)

    async def scenario() -> None:
        task = asyncio.ensure_future(worker.run())
        while not TRANSFERS or not all(  # noqa: ASYNC110
            _has_log(store, run_id) and store.get_run(run_id).status == "ok" for run_id in queued
        ):
            await asyncio.sleep(0.02)
        worker.stop()
        await task

    asyncio.run(scenario())
    assert [store.get_run(run_id).caller_id for run_id in queued] == ["c", "c", "c"]
    assert store.get_run(stuck).status == "running"  # handed over: nothing recorded
    (claim,) = store.claim("w2", 30, 10)
    assert (claim.lease.run_id, claim.previous_owner) == (stuck, "w1")


def _has_log(store: MemoryStore, run_id: str) -> bool:
    return run_id in {summary.run_id for summary in store.list_runs()}


class _OutageStore(MemoryStore):
    """A store whose next ``outages`` reads of a run fail as a database that went away does."""

    outages = 0

    def read_run(self, run_id: str, after_seq: int = 0) -> list[Event]:
        if self.outages:
            self.outages -= 1
            raise DatabaseUnavailableError("lost the connection to the database while reading a run")
        return super().read_run(run_id, after_seq)


def test_a_claimed_run_whose_first_read_fails_is_given_back_at_once_not_held_for_its_lease() -> None:
    store = _OutageStore()
    orphaned = Executor(store, ids=SequentialIds(), worker_id="w0", lease_ttl=30)
    agent = Agent("slow", ScriptedModel([call("transfer", amount=7)]), tools=[transfer])

    async def orphan() -> None:  # a run whose worker stopped it where it was
        task = asyncio.ensure_future(orphaned.run(agent, None, "pay"))
        while not TRANSFERS:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        orphaned._active["run-0001"].hand_over()
        with pytest.raises(HandedOverError):
            await task

    asyncio.run(orphan())
    store.outages = 1  # the claim commits, then the resume's read of the log fails
    after = Agent("slow", ScriptedModel(["paid already"]), tools=[transfer])
    worker = Worker(store, [after], concurrency=1, worker_id="w1", lease_ttl=30, poll_interval=0.05)

    async def recover() -> None:
        task = asyncio.ensure_future(worker.run())
        # Within a few polls, not the 30 s lease a stranded claim would wait out.
        for _ in range(100):
            if store.get_run("run-0001").status != "running":
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await task

    asyncio.run(recover())
    assert store.outages == 0
    assert store.get_run("run-0001").status == "ok"
    resumed = [event for event in store.read_run("run-0001") if isinstance(event, RunResumed)]
    assert [(event.worker_id, event.previous_owner) for event in resumed] == [("w1", "w1")]
