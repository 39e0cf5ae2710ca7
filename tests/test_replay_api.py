"""The public surface of the replay package is pinned: changing it is a deliberate act."""

from __future__ import annotations

import replay


def test_public_names() -> None:
    assert replay.__all__ == [
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


def test_every_public_name_is_exported_from_the_package_and_documented() -> None:
    for name in replay.__all__:
        member = getattr(replay, name)
        assert getattr(member, "__module__", "").startswith("replay"), name
        assert member.__doc__, f"{name} has no docstring"


def test_errors_derive_from_the_executus_root() -> None:
    from executus import ExecutusError

    for error in (
        replay.CassetteError,
        replay.CassetteConflictError,
        replay.ReplayError,
        replay.DivergenceError,
    ):
        assert issubclass(error, ExecutusError)
