"""The pytest plugin, end to end: the worked example under examples/ run by an inner pytest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).parent.parent / "examples" / "regression_test"
PLUGIN = ("-p", "replay.pytest_plugin", "-p", "no:cacheprovider")


@pytest.fixture
def example(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Inner runs load only this plugin: quicker, and independent of what else is installed.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    for name in ("librarian.py", "test_librarian.py"):
        shutil.copy(EXAMPLE / name, pytester.path / name)
    shutil.copytree(EXAMPLE / "cassettes", pytester.path / "cassettes")
    return pytester.path


def test_the_example_replays_from_its_cassettes(pytester: pytest.Pytester, example: Path) -> None:
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=2)


def test_a_changed_prompt_fails_with_the_first_divergence(pytester: pytest.Pytester, example: Path) -> None:
    source = (example / "librarian.py").read_text()
    (example / "librarian.py").write_text(source.replace("Search before you answer.", "Answer at once."))
    outcome = pytester.runpytest(*PLUGIN)
    outcome.assert_outcomes(failed=2)
    outcome.stdout.fnmatch_lines(
        [
            "*executus: test_librarian_finds_otter_books.jsonl: replay of run * diverged at seq 2",
            "*the model request differs (rebuilt from each log):",
            "*messages[[]0] (system).content:",
            "*expected: 'You answer questions about the catalogue. Search before you answer.'",
            "*actual:   'You answer questions about the catalogue. Answer at once.'",
        ]
    )


def test_a_missing_cassette_fails_closed_in_mode_none(pytester: pytest.Pytester, example: Path) -> None:
    shutil.rmtree(example / "cassettes")
    outcome = pytester.runpytest(*PLUGIN)
    outcome.assert_outcomes(failed=2)
    outcome.stdout.fnmatch_lines(
        ["*cassettes/badgers.jsonl does not exist and the record mode is 'none'; record it with *=once"]
    )


def test_once_records_missing_cassettes_then_none_replays_them(
    pytester: pytest.Pytester, example: Path
) -> None:
    shutil.rmtree(example / "cassettes")
    pytester.runpytest(*PLUGIN, "--executus-record-mode=once").assert_outcomes(passed=2)
    recorded = example / "cassettes" / "test_librarian" / "test_librarian_finds_otter_books.jsonl"
    assert recorded.read_text().startswith('{"agent":"librarian"')
    assert (example / "cassettes" / "badgers.jsonl").exists()
    before = recorded.read_text()
    pytester.runpytest(*PLUGIN, "--executus-record-mode=once").assert_outcomes(passed=2)
    assert recorded.read_text() == before
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=2)


def test_all_re_records_every_cassette(pytester: pytest.Pytester, example: Path) -> None:
    cassette = example / "cassettes" / "badgers.jsonl"
    before = cassette.read_text()
    pytester.runpytest(*PLUGIN, "--executus-record-mode=all").assert_outcomes(passed=2)
    assert cassette.read_text() != before  # a new run id and new wall-clock times
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=2)


COUNTING = """
from executus import Agent
from executus.testing import FunctionModel, reply, call

calls = []

def answer(request):
    calls.append(request.step)
    if request.step == 1:
        return reply(None, call("lookup", id="c1", topic="otters"))
    return "{answer}"

def test_counts(executus_cassette):
    from librarian import search
    lookup = search.__class__.from_function(search.function, name="lookup")
    model = FunctionModel(answer, name="m")
    agent = Agent(name="counter", model=model, tools=[lookup], max_iterations={limit})
    result = executus_cassette.run(agent, "otters?")
    print("LIVE CALLS", calls, result.status)
"""


def test_new_reuses_recorded_steps_and_calls_the_model_only_for_new_ones(
    pytester: pytest.Pytester, example: Path
) -> None:
    pytester.makepyfile(test_counting=COUNTING.format(answer="first answer", limit=5))
    pytester.runpytest(*PLUGIN, "-s", "--executus-record-mode=once", "test_counting.py").stdout.fnmatch_lines(
        ["*LIVE CALLS [[]1, 2] ok"]
    )
    pytester.runpytest(*PLUGIN, "-s", "--executus-record-mode=new", "test_counting.py").stdout.fnmatch_lines(
        ["*LIVE CALLS [[]] ok"]
    )
    pytester.makepyfile(test_counting=COUNTING.format(answer="second answer", limit=5))
    outcome = pytester.runpytest(*PLUGIN, "-s", "test_counting.py")
    outcome.stdout.fnmatch_lines(["*LIVE CALLS [[]] ok"])  # replay never calls the model


def test_a_step_missing_from_the_cassette_fails_with_a_hint(pytester: pytest.Pytester, example: Path) -> None:
    always_calls = COUNTING.replace('return "{answer}"', 'return reply(None, call("lookup", topic="x"))')
    pytester.makepyfile(test_counting=always_calls.format(limit=2))
    pytester.runpytest(*PLUGIN, "--executus-record-mode=once", "test_counting.py").assert_outcomes(passed=1)
    pytester.makepyfile(test_counting=always_calls.format(limit=3))
    outcome = pytester.runpytest(*PLUGIN, "test_counting.py")
    outcome.assert_outcomes(failed=1)
    outcome.stdout.fnmatch_lines(
        [
            "*diverged at seq 10",
            "*the run needs a model step the cassette does not hold "
            "(the recording has no model reply for step 3)*",
        ]
    )


def test_an_unknown_record_mode_is_a_usage_error(pytester: pytest.Pytester, example: Path) -> None:
    outcome = pytester.runpytest(*PLUGIN, "--executus-record-mode=sometimes")
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
