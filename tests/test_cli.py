"""The `executus` commands that read runs: demo, runs, show, why; both output modes; errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import store as sql_store
from executus import SequentialIds, VirtualClock
from executus.cli import cli
from executus.cli._common import Settings
from executus.cli._demo import record_demo
from executus.events import Event, decode_event
from executus.storage import MemoryStore, RunQuery

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NOW = START + timedelta(hours=1)
ANSI = "\x1b["


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database holding the seven demo runs, ids demo-0001 … demo-0007 (read-only)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'demo.db'}"
    with sql_store.open_store(url) as opened:
        record_demo(opened, VirtualClock(START), SequentialIds("demo-"))
    return url


def invoke(*args: str, settings: Settings | None = None, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in-process with the clock pinned to NOW."""
    return CliRunner().invoke(cli, list(args), obj=settings or Settings(now=lambda: NOW), env=env)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr


# -- runs ------------------------------------------------------------------------------------------


def test_runs_prints_an_aligned_plain_table_newest_first(demo_url: str) -> None:
    result = invoke("--db", demo_url, "runs")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RUN", "AGENT", "STATUS", "TOKENS", "STARTED", "UTC", "TOOK", "END", "CAUSE"]
    assert max(len(line) for line in lines) <= 80
    assert [line.split()[:3] for line in lines[1:3]] == [
        ["demo-000", "poller", "error"],
        ["demo-000", "ui-reviewer", "ok"],
    ]
    killed = next(line for line in lines if " killed " in line)
    assert "6m30s" in killed
    assert "critic_kill: the" in killed  # cut with an ellipsis to fit 80 columns
    assert killed.endswith("…")
    assert lines[0].index("STATUS") == killed.index("killed")
    assert ANSI not in result.stdout


def test_runs_json_is_an_array_of_summaries(demo_url: str) -> None:
    result = invoke("runs", "--db", demo_url, "--json")
    assert result.exit_code == 0
    runs = json.loads(result.stdout)
    assert [run["run_id"] for run in runs] == [f"demo-000{n}" for n in range(7, 0, -1)]
    killed = runs[5]
    assert killed["status"] == "killed"
    assert killed["duration"] == 390.0
    assert killed["caller_id"] == "demo"
    assert set(killed) >= {
        "agent",
        "model",
        "steps",
        "input_tokens",
        "output_tokens",
        "end_cause",
        "head_hash",
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--status", "killed"], ["demo-0002"]),
        (["--agent", "weather"], ["demo-0005"]),
        (["--caller", "demo", "--limit", "2"], ["demo-0007", "demo-0006"]),
        (["--caller", "someone-else"], []),
        (["--since", "2026-03-01T09:07"], ["demo-0007", "demo-0006", "demo-0005", "demo-0004"]),
        (["--since", "53m"], ["demo-0007", "demo-0006", "demo-0005", "demo-0004"]),
        (["--since", "2026-03-02"], []),
    ],
)
def test_runs_filters(demo_url: str, options: list[str], expected: list[str]) -> None:
    result = invoke("--db", demo_url, "runs", "--json", *options)
    assert result.exit_code == 0, result.output
    assert [run["run_id"] for run in json.loads(result.stdout)] == expected


def test_runs_says_how_to_get_runs_when_there_are_none(demo_url: str) -> None:
    result = invoke("--db", demo_url, "runs", "--agent", "nobody")
    assert result.exit_code == 0
    assert result.stdout.startswith("No runs match in sqlite:///")
    assert "executus demo" in result.stdout


def test_a_bad_since_is_a_usage_error(demo_url: str) -> None:
    result = invoke("--db", demo_url, "runs", "--since", "yesterday-ish")
    assert result.exit_code == 2
    assert "neither an ISO date or time" in result.stderr


# -- show ------------------------------------------------------------------------------------------


def test_show_prints_the_timeline_with_idle_gaps(demo_url: str) -> None:
    result = invoke("--db", demo_url, "show", "demo-0002")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "run demo-0002  scraper  killed"
    assert lines[1] == "caller demo · model fake-model · started 2026-03-01 09:00:10 UTC"
    timeline = [line.split()[:3] for line in lines[3:]]
    assert timeline == [
        ["1", "+0.0s", "run_started"],
        ["2", "+0.0s", "model_requested"],
        ["3", "+1.2s", "model_responded"],
        ["4", "+1.2s", "tool_started"],
        ["⋯", "idle", "2m29s"],
        ["5", "+2m30s", "critic_decided"],
        ["⋯", "idle", "2m00s"],
        ["6", "+4m30s", "critic_decided"],
        ["⋯", "idle", "2m00s"],
        ["7", "+6m30s", "critic_decided"],
        ["8", "+6m30s", "run_cancelled"],
        ["9", "+6m30s", "run_finished"],
    ]
    assert "extend after 4m29s idle: deadline 09:15:10 → 09:17:10" in result.stdout
    assert (
        "critic_kill: the run stayed idle after nudges and an extension; in flight: fetch_page [call-1]"
        in lines[-2]
    )
    assert ANSI not in result.stdout


def test_show_gap_threshold_is_adjustable(demo_url: str) -> None:
    assert (
        "idle"
        not in invoke("--db", demo_url, "show", "demo-0002", "--gap", "600").stdout.split("critic_decided")[0]
    )
    assert invoke("--db", demo_url, "show", "demo-0005", "--gap", "2").stdout.count("⋯ idle") == 1


def test_show_json_prints_one_decodable_event_a_line(demo_url: str) -> None:
    result = invoke("--db", demo_url, "show", "demo-0006", "--json")
    assert result.exit_code == 0
    events = [decode_event(json.loads(line)) for line in result.stdout.splitlines()]
    assert [event.seq for event in events] == list(range(1, 11))
    assert events[-1].kind == "run_finished"


def test_show_accepts_a_unique_prefix_of_the_run_id(demo_url: str) -> None:
    result = invoke("--db", demo_url, "show", "demo-0007")
    assert result.exit_code == 0
    assert invoke("--db", demo_url, "show", "demo-00", "--json").exit_code == 2


class GrowingStore(MemoryStore):
    """A store another process is writing into: every poll reveals the next events."""

    display_url = "memory://growing"

    def __init__(self, events: Sequence[Event], visible: int) -> None:
        super().__init__()
        self.pending = list(events)
        self.reveal(visible)
        self.polls = 0

    def reveal(self, count: int) -> None:
        batch, self.pending = self.pending[:count], self.pending[count:]
        if batch:
            self.append(batch[0].run_id, batch, batch[0].seq - 1)

    def sleep(self, seconds: float) -> None:
        self.polls += 1
        self.reveal(2)

    def run_ids_with_prefix(self, prefix: str, limit: int = 5) -> list[str]:
        ids = sorted(summary.run_id for summary in self.list_runs(RunQuery(limit=None)))
        return [run_id for run_id in ids if run_id.startswith(prefix)][:limit]

    def close(self) -> None:
        pass


@pytest.fixture
def killed_events(demo_url: str) -> list[Event]:
    with sql_store.open_store(demo_url) as opened:
        return opened.read_run("demo-0002")


@pytest.mark.parametrize("as_json", [False, True])
def test_show_follow_tails_a_live_run_until_it_finishes(killed_events: list[Event], as_json: bool) -> None:
    growing = GrowingStore(killed_events, visible=4)
    settings = Settings(open_store=lambda url, read_only=False: growing, now=lambda: NOW, sleep=growing.sleep)
    result = invoke("show", "demo-0002", "--follow", *(["--json"] if as_json else []), settings=settings)
    assert result.exit_code == 0, result.output
    assert growing.polls == 3
    if as_json:
        assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == list(range(1, 10))
    else:
        assert result.stdout.count("⋯ idle") == 3
        assert result.stdout.rstrip().splitlines()[-1].split()[:3] == ["9", "+6m30s", "run_finished"]


def test_show_without_follow_says_when_a_run_has_not_finished(killed_events: list[Event]) -> None:
    growing = GrowingStore(killed_events, visible=4)
    result = invoke(
        "show",
        "demo-0002",
        settings=Settings(open_store=lambda url, read_only=False: growing, now=lambda: NOW),
    )
    assert result.exit_code == 0
    assert result.stdout.rstrip().endswith(
        "No run_finished yet: the run is still going or was interrupted (use --follow)."
    )
    runs = invoke("runs", settings=Settings(open_store=lambda url, read_only=False: growing, now=lambda: NOW))
    assert "running" in runs.stdout
    assert "59m50s…" in runs.stdout


# -- why -------------------------------------------------------------------------------------------


def test_why_explains_the_killed_run_citing_events(demo_url: str) -> None:
    result = invoke("--db", demo_url, "why", "demo-0002")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("Run demo-0002 (scraper) was killed after 6m30s.\n")
    for heading in ("Outcome", "In flight", "Idle time", "Critic decisions", "Deadline"):
        assert f"\n{heading}\n" in text
    assert (
        "  - Tool call fetch_page(url='https://slow.example.com/report') [call-1] started at 09:00:11 "
        "(+1.2s) and never finished: it had been running for 6m29s when the run stopped.  [seq 4, 8]"
    ) in text
    assert "extended the deadline 09:15:10 → 09:17:10 (+2m00s)" in text
    assert "09:00:10 + 15m00s + 2m00s = 09:17:10" in text


def test_why_json_lists_statements_with_their_seqs(demo_url: str) -> None:
    result = invoke("--db", demo_url, "why", "demo-0007", "--json")
    data = json.loads(result.stdout)
    assert data["status"] == "error"
    assert {
        "section": "failure",
        "text": "Its last reply (step 3) still asked for check_status(job='J-42').",
        "seqs": [11],
    } in data["statements"]


@pytest.mark.parametrize(
    "args", [["runs"], ["show", "demo-0002"], ["why", "demo-0002"], ["demo"]], ids=lambda args: args[0]
)
def test_on_a_terminal_output_is_coloured(demo_url: str, tmp_path: Path, args: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}" if args == ["demo"] else demo_url
    result = invoke("--db", url, *args, env={"FORCE_COLOR": "1", "COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert ANSI in result.stdout


# -- demo ------------------------------------------------------------------------------------------


def test_demo_records_seven_runs_and_suggests_next_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    result = invoke("demo", "--db", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Recorded 7 demo runs in {url}\n")
    assert "of virtual time passed in an instant; caller 'demo')" in result.stdout
    for status in ("ok", "error", "timeout", "cancelled", "killed"):
        assert f" {status} " in result.stdout
    killed_line = next(line for line in result.stdout.splitlines() if f"executus --db {url} why " in line)
    killed_prefix = killed_line.split()[4]
    why = invoke("--db", url, "why", killed_prefix)
    assert why.exit_code == 0
    assert "(scraper) was killed after 6m30s." in why.stdout
    runs = json.loads(invoke("--db", url, "runs", "--json").stdout)
    finished = max(datetime.fromisoformat(run["finished_at"]) for run in runs)
    assert NOW - timedelta(minutes=1) < finished <= NOW, "the demo's runs end now, not in the future"


def test_the_database_can_come_from_the_environment(demo_url: str) -> None:
    result = invoke("runs", "--json", env={"EXECUTUS_DB": demo_url})
    assert len(json.loads(result.stdout)) == 7
    # --db on the command line, before or after the command name, beats EXECUTUS_DB.
    elsewhere = {"EXECUTUS_DB": "sqlite:////nonexistent-dir/x.db"}
    assert invoke("--db", demo_url, "runs", "--json", env=elsewhere).exit_code == 0
    assert invoke("runs", "--db", demo_url, "--json", env=elsewhere).exit_code == 0


# -- errors ----------------------------------------------------------------------------------------


def test_an_unknown_run_id_suggests_runs_with_a_close_prefix(demo_url: str) -> None:
    result = invoke("--db", demo_url, "show", "demo-0009")
    assert_one_line_error(result, "no run 'demo-0009' (did you mean demo-0001, demo-0002, demo-0003")
    assert_one_line_error(invoke("--db", demo_url, "why", "xyz-1"), "no run 'xyz-1'")


def test_an_ambiguous_prefix_lists_the_candidates(demo_url: str) -> None:
    assert_one_line_error(invoke("--db", demo_url, "why", "demo"), "run id 'demo' is ambiguous: demo-0001")


@pytest.mark.parametrize("command", [["runs"], ["show", "x"], ["why", "x"], ["demo"], ["export", "x"]])
def test_an_unreachable_database_is_one_line(command: list[str]) -> None:
    result = invoke("--db", "sqlite:////nonexistent-dir/runs.db", *command)
    assert_one_line_error(result, "cannot open database sqlite:////nonexistent-dir/runs.db")


def test_an_unreachable_server_hides_the_password() -> None:
    result = invoke("runs", "--db", "postgresql+psycopg://alice:s3cret@127.0.0.1:1/runs")
    assert_one_line_error(result, "cannot open database postgresql+psycopg://alice:***@127.0.0.1:1/runs")
    assert "s3cret" not in result.stderr


def test_a_database_behind_the_code_asks_for_db_upgrade(
    demo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_store._migrate, "head_revision", lambda: "9999")
    result = invoke("--db", demo_url, "runs")
    assert_one_line_error(result, "needs 9999", "run `executus db upgrade`")
