"""The replay package's public names are documented and its errors share the executus root.

(``tests/test_public_api.py`` pins ``replay.__all__`` with every other package's.)
"""

from __future__ import annotations

import replay


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
