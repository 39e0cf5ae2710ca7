"""Regression tests for the librarian agent, replayed from cassettes beside this file.

Run with the executus pytest plugin (installed with executus; or ``-p replay.pytest_plugin``):

    pytest examples/regression_test                                  # replay only (CI)
    pytest examples/regression_test --executus-record-mode=once      # record missing cassettes
    pytest examples/regression_test --executus-record-mode=all       # re-record everything

A changed system prompt, tool schema, limit or critic policy fails the test with the first
diverging event and a field-level diff.
"""

from __future__ import annotations

import pytest
from librarian import librarian

from replay.pytest_plugin import AgentCassette


def test_librarian_finds_otter_books(executus_cassette: AgentCassette) -> None:
    result = executus_cassette.run(librarian, "Any books about otters?")
    assert result.status == "ok"
    assert result.output == "I found 3 books about otters: Otters at Dusk, The River Otter, Tarka."
    assert result.steps == 2


@pytest.mark.executus_cassette("cassettes/badgers.jsonl")
def test_librarian_searches_for_the_last_word(executus_cassette: AgentCassette) -> None:
    result = executus_cassette.run(librarian, "What do you have on badgers?")
    assert result.output is not None
    assert "about badgers" in result.output
