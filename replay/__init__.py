"""Deterministic replay of recorded executus runs: cassettes, the replayer, a pytest plugin.

A recorded run becomes a regression test: :class:`Replayer` feeds the executor's decision
core the inputs the run received (recorded model replies, tool results, cancels, steer
messages, timer firings), in recorded order, and names the first event that differs
(:class:`ReplayDivergence`). Cassettes (:mod:`replay.cassette`) carry a run between
databases and beside the tests; :mod:`replay.pytest_plugin` replays them from pytest.

The public API is everything in ``__all__``; modules starting with ``_`` are internal.
"""

from replay._diff import FieldDifference
from replay._errors import CassetteConflictError, CassetteError, DivergenceError, ReplayError
from replay._replayer import BlobSource, Replayer
from replay._result import CriticAction, ReplayDivergence, ReplayResult, ReplayRunsResult, WhatIfReport
from replay.cassette import (
    Cassette,
    CassetteHeader,
    dump_cassette,
    import_cassette,
    load_cassette,
    read_cassette,
    save_cassette,
    write_cassette,
)

__all__ = [
    "BlobSource",
    "Cassette",
    "CassetteConflictError",
    "CassetteError",
    "CassetteHeader",
    "CriticAction",
    "DivergenceError",
    "FieldDifference",
    "ReplayDivergence",
    "ReplayError",
    "ReplayResult",
    "ReplayRunsResult",
    "Replayer",
    "WhatIfReport",
    "dump_cassette",
    "import_cassette",
    "load_cassette",
    "read_cassette",
    "save_cassette",
    "write_cassette",
]
