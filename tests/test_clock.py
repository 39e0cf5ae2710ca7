"""The virtual clock: jumps to the next timer, refuses foreign loops, keeps moving far out."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from _support import START

from executus import SequentialIds, VirtualClock


def test_an_hour_of_waiting_passes_at_once_and_shows_on_the_clock() -> None:
    clock = VirtualClock(START)

    async def wait_an_hour() -> None:
        await clock.sleep(1800)
        await asyncio.sleep(1800)

    began = time.perf_counter()
    clock.run(wait_an_hour())
    assert time.perf_counter() - began < 5  # generous: virtual time never sleeps for real
    assert clock.now() == START + timedelta(hours=1)


def test_time_carries_on_between_runs_of_the_same_clock() -> None:
    clock = VirtualClock(START)
    clock.run(clock.sleep(10))
    clock.run(clock.sleep(5))
    assert clock.now() == START + timedelta(seconds=15)


def test_short_timers_still_fire_after_years_of_virtual_time() -> None:
    clock = VirtualClock(START)
    clock.advance(2**26)  # about two years: float steps there exceed asyncio's 1 ns resolution

    async def tick(times: int) -> int:
        for _ in range(times):
            await asyncio.sleep(1e-9)
        return times

    assert clock.run(asyncio.wait_for(tick(3), timeout=1)) == 3


def test_sequential_ids_are_predictable() -> None:
    ids = SequentialIds("job-", start=7)
    assert [ids.new_run_id(), ids.new_run_id()] == ["job-0007", "job-0008"]


def test_work_handed_to_a_thread_takes_no_virtual_time() -> None:
    # An SDK reads its platform with asyncio.to_thread before its first request: if that ran on
    # a thread, the loop would find nothing ready meanwhile and jump to the pending deadline.
    clock = VirtualClock(START)

    async def scenario() -> tuple[float, float]:
        deadline = asyncio.ensure_future(asyncio.sleep(60))
        await asyncio.to_thread(time.sleep, 0.05)
        after_thread = clock.elapsed
        await asyncio.get_running_loop().getaddrinfo("127.0.0.1", 80)
        after_lookup = clock.elapsed
        deadline.cancel()
        return after_thread, after_lookup

    assert clock.run(scenario()) == (0.0, 0.0)
