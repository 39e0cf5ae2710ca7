"""Time and ids, injected so that a run can be replayed bit for bit.

The executor never reads the wall clock or generates a random id itself: it asks its
:class:`Clock` and :class:`IdGenerator`. The clock also owns *waiting* (the runtime deadline,
the critic's checks, a fake model's hang) and how blocking work is run, so a
:class:`VirtualClock` can jump straight to the next timer whenever every task is waiting:
a run that took 30 minutes and was killed replays in milliseconds.

How the virtual clock works: it runs coroutines on its own asyncio event loop whose ``time()``
is virtual, with a selector that, when the loop would sleep until its next timer and no IO is
ready, moves virtual time forward to that timer instead of sleeping. Everything awaiting
asyncio timers (``asyncio.sleep``, ``asyncio.timeout``, ``wait_for``) is therefore virtual.
Blocking work (sync tools, and whatever the loop would hand to a worker thread: ``to_thread``,
``getaddrinfo``) runs inline on that loop, because a thread's real time has no place on a
virtual timeline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import math
import selectors
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

from executus._errors import ConfigurationError

__all__ = ["Clock", "IdGenerator", "RandomIds", "SequentialIds", "SystemClock", "VirtualClock"]

T = TypeVar("T")


@runtime_checkable
class Clock(Protocol):
    """Where the executor gets the time, and how it waits."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock's timeline."""
        ...

    async def run_blocking(self, function: Callable[[], T]) -> T:
        """Run blocking work (a sync tool) without stalling other runs, as this clock allows."""
        ...

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine to completion on an event loop this clock can drive."""
        ...

    def check_loop(self) -> None:
        """Raise :class:`ConfigurationError` if the running loop cannot serve this clock."""
        ...


class SystemClock:
    """Real time: the wall clock, asyncio's timers, and a thread for blocking work."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def run_blocking(self, function: Callable[[], T]) -> T:
        return await asyncio.to_thread(function)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coroutine)

    def check_loop(self) -> None:
        return None


class _FastForwardSelector(selectors.DefaultSelector):
    """A selector that turns "sleep until the next timer" into a jump of virtual time."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            # No timer pending (only IO can wake the loop), or work is ready: behave normally.
            return super().select(timeout)
        ready = super().select(0)
        if ready:
            return ready
        self._clock.advance(timeout)
        return []


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(_FastForwardSelector(clock))
        self.virtual_clock = clock

    def time(self) -> float:
        return self.virtual_clock.elapsed

    def run_in_executor(  # type: ignore[override]  # one signature for any arguments
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        # A worker thread's real time has no place on a virtual timeline: while it worked, the
        # loop would find nothing ready and jump to its next timer (a deadline, an HTTP
        # timeout). So ``asyncio.to_thread`` and ``loop.getaddrinfo`` (an SDK reading the
        # platform, a client resolving a host) run inline, as ``VirtualClock.run_blocking`` does.
        future: asyncio.Future[T] = self.create_future()
        try:
            future.set_result(func(*args))
        except Exception as error:
            future.set_exception(error)
        return future

    # asyncio runs a timer once ``when < time() + _clock_resolution``. Far from zero (after ~194
    # virtual days) adding 1 ns to a float changes nothing, and a due timer would never run:
    # the resolution must never be finer than the float spacing of the current virtual time.
    @property
    def _clock_resolution(self) -> float:
        return max(1e-9, 2 * math.ulp(self.virtual_clock.elapsed))

    @_clock_resolution.setter
    def _clock_resolution(self, value: float) -> None:
        pass  # BaseEventLoop.__init__ sets the real clock's resolution; ours is derived above


class VirtualClock:
    """Virtual time that jumps ahead whenever every task is waiting.

    Args:
        start: the clock's time before anything has waited (UTC). Pick a fixed value to make
            runs reproducible.

    Use :meth:`run` (or :meth:`Executor.run_sync`) to drive coroutines on it; an executor with
    a virtual clock refuses to run on any other event loop.
    """

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        if start.tzinfo is None:
            raise ConfigurationError("VirtualClock start must be timezone-aware")
        self._start = start.astimezone(UTC)
        self.elapsed = 0.0
        """Virtual seconds since ``start``."""

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.elapsed)

    def advance(self, seconds: float) -> None:
        """Move virtual time forward (the loop does this itself when every task waits)."""
        if seconds < 0:
            raise ValueError("virtual time cannot go backwards")
        self.elapsed += seconds

    async def sleep(self, seconds: float) -> None:
        self.check_loop()
        await asyncio.sleep(seconds)

    async def run_blocking(self, function: Callable[[], T]) -> T:
        return function()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=lambda: _VirtualTimeLoop(self)) as runner:
            return runner.run(coroutine)

    def check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if not (isinstance(loop, _VirtualTimeLoop) and loop.virtual_clock is self):
            raise ConfigurationError(
                "a VirtualClock can only drive its own event loop: run the coroutine with "
                "clock.run(...) or use Executor.run_sync(...)"
            )


@runtime_checkable
class IdGenerator(Protocol):
    """Where the executor gets new run ids."""

    def new_run_id(self) -> str:
        """A fresh, unique run id."""
        ...


class RandomIds:
    """Random 32-hex-digit run ids (uuid4); the production default."""

    def new_run_id(self) -> str:
        return uuid.uuid4().hex


class SequentialIds:
    """Predictable ids ``run-0001``, ``run-0002``…; for tests, demos and replay."""

    def __init__(self, prefix: str = "run-", start: int = 1) -> None:
        self._prefix = prefix
        self._counter = itertools.count(start)

    def new_run_id(self) -> str:
        return f"{self._prefix}{next(self._counter):04d}"
