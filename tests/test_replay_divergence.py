"""A changed agent shows up as the first diverging event, with a field-level diff."""

from __future__ import annotations

import pytest
from test_replay_scenarios import GOLDEN, TOOLS, librarian

from executus import IdleCritic, Ladder, Tool, kill, nudge
from executus.testing import ScriptedModel
from replay import FieldDifference, Replayer, ReplayResult, load_cassette

UNUSED = ScriptedModel([])
"""The agent's own model is never called during a replay."""


def _replay(golden: str, **changes: object) -> ReplayResult:
    return Replayer().replay_run(
        load_cassette(GOLDEN / f"{golden}.jsonl"), agent=librarian(UNUSED, **changes)
    )


def test_the_unchanged_agent_replays_identically() -> None:
    result = _replay("ok")
    assert result.identical, result.report()
    assert result.agent_changes == ()


def test_a_changed_system_prompt_is_a_fingerprint_mismatch_at_step_one() -> None:
    result = _replay("ok", system_prompt="You answer questions about books.")
    divergence = result.divergence
    assert divergence is not None
    assert (divergence.seq, divergence.expected_kind, divergence.actual_kind) == (
        2,
        "model_requested",
        "model_requested",
    )
    assert [d.path for d in divergence.differences] == ["fingerprint"]
    assert divergence.request_differences == (
        FieldDifference(
            "messages[0] (system).content",
            "You answer questions about the catalogue.",
            "You answer questions about books.",
        ),
    )
    assert result.report().splitlines()[:12] == [
        "replay of run run-0001 diverged at seq 2",
        "  expected: model_requested (step 1, fingerprint dbc98eff0fa8, 2 messages)",
        f"  actual:   model_requested (step 1, fingerprint {divergence.actual.fingerprint[:12]}, 2 messages)",  # type: ignore[union-attr]
        "  differences:",
        "    fingerprint:",
        "        expected: 'dbc98eff0fa82634b5794f91050ea0babc7525b5bf8926b24dc5d5febf4e7d97'",
        f"        actual:   {divergence.actual.fingerprint!r}",  # type: ignore[union-attr]
        "  the model request differs (rebuilt from each log):",
        "    messages[0] (system).content:",
        "        expected: 'You answer questions about the catalogue.'",
        "        actual:   'You answer questions about books.'",
        "  the agent differs from the recorded one (the change under test):",
    ]


def _search_with_limit(query: str, limit: int = 3) -> str:
    """Search the library catalogue.

    Args:
        query: words to look for.
        limit: how many books to list.
    """
    return ""


def test_a_changed_tool_schema_names_the_tool_and_the_schema_field() -> None:
    search = Tool.from_function(_search_with_limit, name="search")
    result = _replay("ok", tools=[search, *TOOLS[1:]])
    divergence = result.divergence
    assert divergence is not None
    assert divergence.seq == 2
    assert [d.path for d in divergence.request_differences] == ["tools[search].parameters.properties.limit"]
    assert divergence.request_differences[0].actual == {
        "default": 3,
        "description": "how many books to list.",
        "title": "Limit",
        "type": "integer",
    }
    assert [c.path for c in result.agent_changes] == ["agent.tools[search].parameters.properties.limit"]


def test_a_removed_tool_shows_as_missing_from_the_request() -> None:
    result = _replay("ok", tools=[tool for tool in TOOLS if tool.name != "broken"])
    divergence = result.divergence
    assert divergence is not None
    assert divergence.seq == 2
    (missing,) = divergence.request_differences
    assert (missing.path, missing.actual) == ("tools[broken]", None)
    assert "tools[broken]:\n        expected: {'name': 'broken'" in result.report()


def test_a_changed_critic_policy_diverges_at_the_first_different_decision() -> None:
    critic = IdleCritic(
        idle_after=60, policy=Ladder([nudge("Still there? Say what you are waiting for."), kill()])
    )
    result = _replay("killed", critic=critic)
    divergence = result.divergence
    assert divergence is not None
    assert (divergence.seq, divergence.expected_kind) == (8, "critic_decided")
    assert [(d.path, d.expected, d.actual) for d in divergence.differences][:2] == [
        ("decision", "extend", "kill"),
        ("new_deadline", "2026-03-01T09:35:30Z", None),
    ]


@pytest.mark.parametrize(
    ("max_iterations", "seq", "expected", "actual"),
    [(3, 10, "run_finished", "model_requested"), (1, 6, "model_requested", "run_finished")],
)
def test_a_changed_max_iterations_diverges_where_the_run_ends_differently(
    max_iterations: int, seq: int, expected: str, actual: str
) -> None:
    result = _replay("max_iterations", max_iterations=max_iterations)
    divergence = result.divergence
    assert divergence is not None
    assert (divergence.seq, divergence.expected_kind, divergence.actual_kind) == (seq, expected, actual)
    assert divergence.differences == (FieldDifference("kind", expected, actual),)
    assert [(c.path, c.expected, c.actual) for c in result.agent_changes] == [
        ("agent.max_iterations", 2, max_iterations)
    ]


def test_limits_that_change_nothing_are_reported_but_not_a_divergence() -> None:
    result = _replay("ok", max_runtime=900.0)
    assert result.identical
    assert [(c.path, c.expected, c.actual) for c in result.agent_changes] == [
        ("agent.max_runtime", 300.0, 900.0)
    ]
    assert "the agent differs from the recorded one" in result.report()
