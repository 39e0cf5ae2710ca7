"""``executus replay``: exit 0 identical, 1 diverged (report printed), 2 bad input (one line)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from _support import store_goldens
from click.testing import CliRunner, Result
from test_replay_scenarios import GOLDEN

from executus.cli._replay import replay_command
from replay import import_cassette, load_cassette

AGENTS = """
from executus import IdleCritic, Ladder, kill
from executus.testing import ScriptedModel
import test_replay_scenarios as scenarios

same = scenarios.librarian(ScriptedModel([]))
terse = scenarios.librarian(ScriptedModel([]), system_prompt="Be terse.")
strict = IdleCritic(idle_after=20, policy=Ladder([kill("idle for 20s")]))

def make_strict():
    return strict

not_an_agent = 42
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    module = "agents_" + re.sub(r"\W", "_", request.node.name)
    (tmp_path / f"{module}.py").write_text(AGENTS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EXECUTUS_DB", f"sqlite:///{tmp_path / 'runs.db'}")
    for name in ("ok", "killed"):
        shutil.copy(GOLDEN / f"{name}.jsonl", tmp_path / f"{name}.jsonl")
    return tmp_path


def _replay(*args: str) -> Result:
    return CliRunner().invoke(replay_command, list(args))


def _module(workdir: Path) -> str:
    return next(path.stem for path in workdir.glob("agents_*.py"))


def test_an_identical_cassette_exits_0(workdir: Path) -> None:
    result = _replay("ok.jsonl")
    assert (result.exit_code, result.output) == (0, "replay of run run-0001: identical (20 events)\n")


def test_a_changed_agent_exits_1_with_the_report(workdir: Path) -> None:
    result = _replay("ok.jsonl", "--agent", f"{_module(workdir)}:terse")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == "replay of run run-0001 diverged at seq 2"
    assert "    messages[0] (system).content:" in result.output
    assert _replay("ok.jsonl", "--agent", f"{_module(workdir)}:same").exit_code == 0


def test_a_stored_run_replays_by_id_prefix(workdir: Path) -> None:
    import store as sql_store

    with sql_store.open_store() as opened:
        import_cassette(opened, load_cassette("killed.jsonl"))
    result = _replay("run-00")
    assert (result.exit_code, result.output) == (0, "replay of run run-0001: identical (11 events)\n")


def test_json_output(workdir: Path) -> None:
    result = _replay("ok.jsonl", "--agent", f"{_module(workdir)}:terse", "--json")
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert document["identical"] is False
    assert document["divergence"]["seq"] == 2
    assert document["divergence"]["request_differences"] == [
        {
            "path": "messages[0] (system).content",
            "expected": "You answer questions about the catalogue.",
            "actual": "Be terse.",
        }
    ]
    assert document["agent_changes"][0]["path"] == "agent.system_prompt"


@pytest.mark.parametrize("attribute", ["strict", "make_strict"])
def test_what_if_critic_reports_and_exits_0(workdir: Path, attribute: str) -> None:
    result = _replay("killed.jsonl", "--what-if-critic", f"{_module(workdir)}:{attribute}")
    assert result.exit_code == 0, result.output
    assert "  => would still have been killed, 2m40.0s earlier" in result.output
    document = json.loads(
        _replay("killed.jsonl", "--what-if-critic", f"{_module(workdir)}:strict", "--json").output
    )
    assert document["what_if"]["killed_at"] == 20.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "error: no cassette file missing.jsonl"),
        (["nope"], "error: no run 'nope'"),
        (
            ["ok.jsonl", "--agent", "agents"],
            "error: an Agent must be given as module:attribute, not 'agents'",
        ),
        (
            ["ok.jsonl", "--agent", "no_such_module:x"],
            "error: cannot load an Agent no_such_module:x: No module named",
        ),
        (
            ["ok.jsonl", "--agent", "MODULE:not_an_agent"],
            "error: MODULE:not_an_agent is an int, not an Agent",
        ),
        (["broken.jsonl"], "error: cassette line 1: not valid JSON"),
    ],
)
def test_bad_input_exits_2_with_one_line(workdir: Path, args: list[str], message: str) -> None:
    (workdir / "broken.jsonl").write_text("{\n")
    args = [arg.replace("MODULE", _module(workdir)) for arg in args]
    result = _replay(*args)
    assert result.exit_code == 2
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith(message.replace("MODULE", _module(workdir)))


def test_executus_replay_is_a_command_of_the_executus_cli(workdir: Path) -> None:
    from executus.cli import cli

    result = CliRunner().invoke(cli, ["replay", "ok.jsonl"])
    assert (result.exit_code, result.output) == (0, "replay of run run-0001: identical (20 events)\n")
    diverged = CliRunner().invoke(cli, ["replay", "ok.jsonl", "--agent", f"{_module(workdir)}:terse"])
    assert diverged.exit_code == 1


def _store_goldens(*names: str) -> None:
    import store as sql_store

    with sql_store.open_store() as opened:
        store_goldens(opened, *names)


def test_all_replays_every_stored_run_with_a_summary(workdir: Path) -> None:
    _store_goldens("ok", "killed", "timeout")
    result = _replay("--all")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "3 runs replayed: 3 identical, 0 not"
    assert re.search(r"^killed-run +librarian +killed +identical$", result.output, re.MULTILINE)
    killed_only = _replay("--all", "--status", "killed", "--json")
    assert [document["run_id"] for document in json.loads(killed_only.output)] == ["killed-run"]


def test_all_with_a_changed_agent_exits_1_and_names_each_divergence(workdir: Path) -> None:
    _store_goldens("ok", "killed")
    result = _replay("--all", "--agent", f"{_module(workdir)}:terse")
    assert result.exit_code == 1
    assert "diverged at seq 2 (model_requested / model_requested)" in result.output
    assert result.output.splitlines()[-1] == "2 runs replayed: 0 identical, 2 not"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: give one RUN or CASSETTE, or --all"),
        (["ok.jsonl", "--all"], "error: give one RUN or CASSETTE, or --all"),
        (["ok.jsonl", "--status", "ok"], "error: --status, --since, --until and --limit go with --all"),
        (["--all", "--since", "someday"], "error: --since: 'someday' is neither an ISO date"),
    ],
)
def test_all_and_its_filters_are_checked(workdir: Path, args: list[str], message: str) -> None:
    result = _replay(*args)
    assert result.exit_code == 2
    assert result.output.startswith(message)
