"""Holding a bound method without holding its object.

A run's helpers (its watchdog timer, its heartbeat, a session's context) call back into the
run's driver. Holding the driver's bound method strongly would make a reference cycle (driver ->
helper -> method -> driver), and a finished run, its whole transcript, would then wait for a
full garbage collection instead of being freed at once.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["weakly"]

P = ParamSpec("P")
R = TypeVar("R")


def weakly(function: Callable[P, R]) -> Callable[[], Callable[P, R] | None]:
    """A getter of ``function``: a bound method is held weakly (None once its object is gone),
    any other callable as it is."""
    if inspect.ismethod(function):
        return weakref.WeakMethod(function)
    return lambda: function
