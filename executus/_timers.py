"""The run's watchdog timer: wakes the driver at the instant the core asked for.

One timer per run serves both the deadline and the critic's checks (the core arms it at the
earlier of the two). Waiting is on the run's clock, so a :class:`~executus.VirtualClock`
jumps straight to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from executus._clock import Clock
from executus._weak import weakly

__all__ = ["WatchdogTimer"]


class WatchdogTimer:
    """Calls ``fire(now)`` once the clock reaches the armed instant; re-arming replaces it.

    A bound method ``fire`` is held weakly (see ``__init__``): the object it belongs to must be
    kept alive by someone else, as a run's driver is while it runs, or nothing fires.
    """

    def __init__(self, clock: Clock, fire: Callable[[datetime], None], name: str) -> None:
        self._clock = clock
        # A method of the object that owns the timer is held weakly: owner -> timer -> method
        # -> owner would be a reference cycle, and a finished run (its whole transcript) would
        # then wait for a full garbage collection to be freed instead of going at once.
        self._fire = weakly(fire)
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def arm(self, at: datetime | None) -> None:
        """Fire at ``at`` (None: never), replacing whatever was armed before."""
        self.disarm()
        if at is not None:
            self._task = asyncio.get_running_loop().create_task(self._wait(at), name=self._name)

    def disarm(self) -> None:
        """Make sure nothing fires."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _wait(self, at: datetime) -> None:
        delay = (at - self._clock.now()).total_seconds()
        if delay > 0:
            await self._clock.sleep(delay)
        self._task = None
        fire = self._fire()
        if fire is not None:  # None: its owner is gone, and nobody is left to tell
            fire(self._clock.now())
