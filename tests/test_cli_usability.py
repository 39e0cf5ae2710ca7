"""What a user of `runs`, `why` and `replay --all` notices: filters, counts, interruptions, and no
database password anywhere in the output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _support import store_goldens
from click.testing import CliRunner, Result
from sqlalchemy.engine import make_url

from executus import SequentialIds, VirtualClock
from executus.cli import cli
from executus.cli._common import Settings
from executus.cli._demo import record_demo
from executus.events import Event
from executus.storage import MemoryStore

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NOW = START + timedelta(hours=1)


class BrowsableMemory(MemoryStore):
    """The in-memory store with what the CLI browses by; optionally interrupted mid-way."""

    display_url = "memory://test"

    def __init__(self, interrupt_after_reads: int | None = None) -> None:
        super().__init__()
        self.reads_left = interrupt_after_reads

    def read_run(self, run_id: str, after_seq: int = 0) -> list[Event]:
        if self.reads_left is not None:
            if self.reads_left == 0:
                raise KeyboardInterrupt
            self.reads_left -= 1
        return super().read_run(run_id, after_seq)

    def run_ids_with_prefix(self, prefix: str, limit: int = 5) -> list[str]:
        return sorted(run_id for run_id in self._summaries if run_id.startswith(prefix))[:limit]

    def close(self) -> None:
        pass


def demo_store(interrupt_after_reads: int | None = None) -> BrowsableMemory:
    memory = BrowsableMemory()
    record_demo(memory, VirtualClock(START), SequentialIds("demo-"))
    memory.reads_left = interrupt_after_reads
    return memory


def invoke(memory: MemoryStore, *args: str) -> Result:
    settings = Settings(open_store=lambda url, read_only=False: memory, now=lambda: NOW)  # type: ignore[arg-type,return-value]
    return CliRunner().invoke(cli, list(args), obj=settings)


def run_ids(result: Result) -> list[str]:
    return [line.split()[0] for line in result.stdout.splitlines()[1:] if line.startswith("demo-")]


def test_runs_says_when_more_runs_match_than_the_limit_shows() -> None:
    memory = demo_store()
    limited = invoke(memory, "runs", "--limit", "3")
    assert len(run_ids(limited)) == 3
    assert "(the newest 3 shown; more runs match" in limited.stdout
    everything = invoke(memory, "runs", "--limit", "7")
    assert len(run_ids(everything)) == 7
    assert "more runs match" not in everything.stdout


def test_status_takes_several_values() -> None:
    memory = demo_store()
    statuses = {
        line.split()[2] for line in invoke(memory, "runs", "--status", "ok,killed").stdout.splitlines()[1:]
    }
    assert statuses == {"ok", "killed"}
    repeated = invoke(memory, "runs", "--status", "killed", "--status", "timeout", "--json").stdout
    assert sorted(run["status"] for run in json.loads(repeated)) == ["killed", "timeout"]


def test_until_keeps_only_runs_started_before() -> None:
    memory = demo_store()
    first_start = min(summary.started_at for summary in memory.list_runs())
    cut = (first_start + timedelta(seconds=1)).isoformat()
    result = invoke(memory, "runs", "--until", cut, "--json")
    assert [run["started_at"] for run in json.loads(result.stdout)] == [first_start.isoformat()]


def test_why_on_an_interrupted_run_says_so_and_since_when() -> None:
    memory = demo_store()
    # The scraper's log up to its tool call, as a process that died there left it.
    cut = [event.model_copy(update={"run_id": "cut-0001"}) for event in memory.read_run("demo-0002")[:4]]
    memory.append("cut-0001", cut, 0)
    result = invoke(memory, "why", "cut-0001")
    assert result.exit_code == 0, result.output
    headline = result.stdout.splitlines()[0]
    assert headline == (
        "Run cut-0001 (scraper) has not finished: its log ends at seq 4 (tool_started, "
        "2026-03-01 09:00:11 UTC, 59m49s ago); it is interrupted, unless it is still running."
    )
    assert "after 0.0s" not in result.stdout


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "usability_agents.py").write_text(
        "from executus.testing import ScriptedModel\nimport test_replay_scenarios as scenarios\n"
        "librarian = scenarios.librarian(ScriptedModel([]))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "usability_agents:librarian"


def test_replay_all_with_an_agent_replays_only_its_runs(agents: str) -> None:
    memory = demo_store()
    store_goldens(memory, "ok", "killed")
    result = invoke(memory, "replay", "--all", "--agent", agents)
    assert result.exit_code == 0, result.output
    replayed = [line.split()[1] for line in result.stdout.splitlines()[1:-1]]
    assert replayed == ["librarian", "librarian"]
    assert result.stdout.splitlines()[-1] == (
        "2 runs replayed: 2 identical, 0 not; skipped 7 runs of agents other than librarian"
    )


def test_what_if_no_critic_replays_the_run_without_one() -> None:
    memory = BrowsableMemory()
    store_goldens(memory, "killed")
    result = invoke(memory, "replay", "killed-run", "--what-if-critic", "none")
    assert result.exit_code == 0, result.output
    assert "no critic" in result.stdout
    as_json = json.loads(invoke(memory, "replay", "killed-run", "--what-if-critic", "none", "--json").stdout)
    assert as_json["what_if"]["critic"] is None
    assert as_json["what_if"]["recorded"]["status"] == "killed"
    everything = invoke(memory, "replay", "--all", "--what-if-critic", "none")
    assert everything.exit_code == 0, everything.output


def test_ctrl_c_in_replay_all_prints_what_was_replayed_and_exits_130() -> None:
    result = invoke(demo_store(interrupt_after_reads=3), "replay", "--all")
    assert result.exit_code == 130
    lines = result.stdout.splitlines()
    assert len([line for line in lines if line.startswith("demo-")]) == 3
    assert lines[-1] == "interrupted: 3 of 7 runs replayed: 3 identical, 0 not"


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
def test_no_password_is_ever_printed(sql_url: str) -> None:
    with_password = make_url(sql_url).set(password="hunter2-secret").render_as_string(hide_password=False)
    results = [
        CliRunner().invoke(cli, ["--db", with_password, *command], obj=Settings(now=lambda: NOW))
        for command in (["demo"], ["runs"], ["db", "current"], ["show", "nope"])
    ]
    unreachable = make_url(with_password).set(port=1).render_as_string(hide_password=False)
    results.append(CliRunner().invoke(cli, ["--db", unreachable, "runs"]))
    results.append(CliRunner().invoke(cli, ["--db", "host=127.0.0.1 port=1 password=hunter2-secret", "runs"]))
    assert results[0].exit_code == 0, results[0].output
    assert "Next, try" in results[0].stdout
    for result in results:
        assert "hunter2-secret" not in result.stdout + result.stderr
    assert "***" in results[0].stdout
    assert "***" in results[-1].stderr
