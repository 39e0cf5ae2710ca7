"""`executus report`, `executus otel export` and `replay --report` against a real SQLite database."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from executus.cli import cli
from executus.cli._common import Settings
from executus.cli._report import report_filename, write_report
from executus.otel import trace_id_for
from executus.storage import MemoryStore
from store import open_store
from tests.test_cli import assert_one_line_error
from tests.test_otel_wire import Receiver, receiver  # noqa: F401 - the OTLP receiver fixture

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NOW = START + timedelta(hours=1)


def invoke(db: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", *args], obj=Settings(now=lambda: NOW))


def test_report_writes_one_self_contained_file(demo_template: Path, tmp_path: Path) -> None:
    result = invoke(demo_template, "report", "demo-0002", "-o", str(tmp_path / "killed.html"))

    assert result.exit_code == 0, result.output
    assert result.stderr == f"wrote the report of run demo-0002 to {tmp_path / 'killed.html'}\n"
    html = (tmp_path / "killed.html").read_text()
    assert '<meta http-equiv="Content-Security-Policy" content="default-src &#x27;none&#x27;;' in html
    assert "Integrity: verified" in html
    assert "was killed after 6m30s" in html
    assert [path.name for path in tmp_path.iterdir()] == ["killed.html"]  # no temporary file left


def test_report_all_writes_every_run_and_an_index(demo_template: Path, tmp_path: Path) -> None:
    result = invoke(demo_template, "report", "--all", "-o", str(tmp_path / "reports"))

    assert result.exit_code == 0, result.output
    names = sorted(path.name for path in (tmp_path / "reports").iterdir())
    assert names == sorted([*(report_filename(f"demo-000{n}") for n in range(1, 8)), "index.html"])
    index = (tmp_path / "reports" / "index.html").read_text()
    for n in range(1, 8):
        assert f'href="{report_filename(f"demo-000{n}")}"' in index


def tampered_copy(template: Path, tmp_path: Path, statement: str) -> Path:
    tampered = tmp_path / "tampered.db"
    shutil.copyfile(template, tampered)
    with sqlite3.connect(tampered) as connection:
        assert connection.execute(statement).rowcount > 0
    return tampered


def test_report_shows_verify_finding_an_edited_payload(demo_template: Path, tmp_path: Path) -> None:
    tampered = tampered_copy(
        demo_template,
        tmp_path,
        "UPDATE events SET payload = replace(payload, 'Everest', 'Everust') "
        "WHERE run_id = 'demo-0001' AND seq = 1",
    )

    result = invoke(tampered, "report", "demo-0001", "-o", str(tmp_path / "r.html"))

    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text()
    assert "Integrity: FAILED" in html
    assert "executus verify found 1 problem; the first: run demo-0001 seq 1: payload changed: " in html
    # The same finding `executus verify` prints.
    verified = invoke(tampered, "verify", "demo-0001")
    assert verified.exit_code == 1
    assert escape(verified.stdout.splitlines()[0], quote=True) in html


def test_report_shows_verify_finding_an_edited_runs_row(demo_template: Path, tmp_path: Path) -> None:
    # The events are untouched, so their chain still ends at the recorded head: only the
    # comparison of the runs row with the events (verify's projection check) sees this.
    tampered = tampered_copy(demo_template, tmp_path, "UPDATE runs SET steps = 99 WHERE run_id = 'demo-0001'")

    result = invoke(tampered, "report", "demo-0001", "-o", str(tmp_path / "r.html"))

    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text()
    assert "Integrity: FAILED" in html
    assert "the first: run demo-0001 seq " in html
    assert "projection differs: the runs row does not match its events: runs.steps is 99" in html


def test_report_all_verifies_each_run(demo_template: Path, tmp_path: Path) -> None:
    tampered = tampered_copy(demo_template, tmp_path, "UPDATE runs SET steps = 99 WHERE run_id = 'demo-0003'")

    result = invoke(tampered, "report", "--all", "-o", str(tmp_path / "reports"))

    assert result.exit_code == 0, result.output
    for n in range(1, 8):
        html = (tmp_path / "reports" / report_filename(f"demo-000{n}")).read_text()
        assert ("Integrity: FAILED" in html) == (n == 3)
        assert ("Integrity: verified" in html) == (n != 3)


def test_report_from_a_store_verify_cannot_run_on_says_only_the_chain_was_checked(
    demo_template: Path, tmp_path: Path
) -> None:
    memory = MemoryStore()
    with open_store(f"sqlite:///{demo_template}", read_only=True) as sql:
        events = sql.read_run("demo-0001")
    memory.append("demo-0001", events, expected_seq=0)

    write_report(tmp_path / "r.html", events, event_store=memory)

    html = (tmp_path / "r.html").read_text()
    assert "Integrity: verified" in html
    assert "Only the hash chain was checked: this store is not a SQL database" in html


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("report", "-o", "x.html"), ("give one RUN, or --all",)),
        (("report", "demo-0001", "--all", "-o", "x"), ("give one RUN, or --all",)),
        (
            ("report", "demo-0001", "--since", "2h", "-o", "x.html"),
            ("--since, --until and --limit go with --all",),
        ),
        (("report", "nope", "-o", "x.html"), ("no run 'nope'",)),
        (("report", "--all", "--since", "yesterday", "-o", "x"), ("--since",)),
        (("otel", "export"), ("give one RUN, or --since WHEN",)),
        (("otel", "export", "demo-0001", "--since", "2h"), ("give one RUN, or --since WHEN",)),
        (("otel", "export", "demo-0001", "--endpoint", "http://x", "-o", "f"), ("not both",)),
        (("replay", "--all", "--report", "x.html"), ("--report goes with one RUN",)),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    demo_template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    fragments: tuple[str, ...],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(invoke(demo_template, *args), *fragments)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_report_into_a_missing_directory_is_one_line(demo_template: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        invoke(demo_template, "report", "demo-0001", "-o", str(tmp_path / "no" / "such" / "r.html")),
        "cannot write",
    )
    assert_one_line_error(invoke(demo_template, "report", "demo-0001", "-o", str(tmp_path)), "is a directory")


def test_otel_export_writes_otlp_json(demo_template: Path, tmp_path: Path) -> None:
    result = invoke(demo_template, "otel", "export", "--since", "2h", "-o", str(tmp_path / "spans.jsonl"))

    assert result.exit_code == 0, result.output
    assert result.stderr == f"exported 33 spans of 7 runs to {tmp_path / 'spans.jsonl'}\n"
    lines = [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]
    trace_ids = {
        span["traceId"]
        for line in lines
        for resource in line["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    }
    assert trace_ids == {f"{trace_id_for(f'demo-000{n}'):032x}" for n in range(1, 8)}


def test_otel_export_sends_to_an_endpoint(demo_template: Path, receiver: Receiver) -> None:  # noqa: F811
    result = invoke(demo_template, "otel", "export", "demo-00", "--endpoint", receiver.url)
    assert_one_line_error(result, "is ambiguous")  # a prefix that names several runs

    result = invoke(demo_template, "otel", "export", "demo-0003", "--endpoint", receiver.url)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"exported 4 spans of 1 run to {receiver.url}\n"
    assert sorted(span.name for _, span in receiver.spans()) == [
        "chat fake-model",
        "chat fake-model",
        "execute_tool load_document",
        "invoke_agent summarizer",
    ]


def test_otel_export_refused_by_the_endpoint_is_one_line(demo_template: Path, receiver: Receiver) -> None:  # noqa: F811
    receiver.answer = 400
    assert_one_line_error(
        invoke(demo_template, "otel", "export", "demo-0003", "--endpoint", receiver.url),
        "refused the spans of run demo-0003",
        receiver.url,
    )


def test_replay_report_writes_the_recorded_runs_report(demo_template: Path, tmp_path: Path) -> None:
    result = invoke(demo_template, "replay", "demo-0006", "--report", str(tmp_path / "replay.html"))

    assert result.exit_code == 0, result.output
    html = (tmp_path / "replay.html").read_text()
    assert "ui-reviewer" in html
    assert 'id="divergence"' not in html  # identical: nothing to show side by side
    assert "data:image/png;base64," in html
