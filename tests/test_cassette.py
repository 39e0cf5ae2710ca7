"""Cassettes: a run exported as JSON Lines, read back, imported into another store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from test_replay_scenarios import GOLDEN, SCENARIOS, record

from executus.storage import MemoryStore, event_json
from replay import CassetteConflictError, CassetteError, import_cassette, read_cassette, write_cassette


def _export(name: str) -> tuple[MemoryStore, str, str]:
    store, run_id = record(name)
    stream = io.StringIO()
    write_cassette(store, run_id, stream)
    return store, run_id, stream.getvalue()


def test_a_cassette_is_a_header_then_events_then_blobs() -> None:
    store, run_id, text = _export("ok")
    lines = text.splitlines()
    header = json.loads(lines[0])
    events = store.read_run(run_id)
    assert header["format"] == "executus-cassette"
    assert header["version"] == 1
    assert (header["run_id"], header["status"], header["events"], header["blobs"]) == (run_id, "ok", 20, 2)
    assert lines[1 : 1 + len(events)] == [event_json(event) for event in events]
    blob_lines = [json.loads(line) for line in lines[1 + len(events) :]]
    assert [line["media_type"] for line in blob_lines] == ["text/plain", "image/png"]
    assert text.endswith("\n")


def test_writing_is_deterministic_byte_for_byte() -> None:
    assert _export("ok")[2] == _export("ok")[2]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_cassettes_match_a_fresh_recording(name: str) -> None:
    # The executor's events for a scripted run are part of its contract: if this changes on
    # purpose, rewrite the golden files with `python tests/test_replay_scenarios.py`.
    golden = (GOLDEN / f"{name}.jsonl").read_text(encoding="utf-8")
    assert golden == _export(name)[2], f"{name}.jsonl: the recording changed; see the comment above"


def test_read_then_import_round_trips_events_and_blobs() -> None:
    store, run_id, text = _export("ok")
    cassette = read_cassette(io.StringIO(text))
    assert cassette.run_id == run_id
    assert [event_json(e) for e in cassette.events] == [event_json(e) for e in store.read_run(run_id)]
    other = MemoryStore()
    assert import_cassette(other, cassette) == run_id
    assert other.hashes(run_id) == store.hashes(run_id)
    for blob in cassette.blobs:
        assert other.get_blob(blob.sha256) == store.get_blob(blob.sha256)
    again = io.StringIO()
    write_cassette(other, run_id, again)
    assert again.getvalue() == text


def test_importing_the_same_run_twice_is_a_no_op() -> None:
    _, run_id, text = _export("killed")
    store = MemoryStore()
    import_cassette(store, read_cassette(io.StringIO(text)))
    import_cassette(store, read_cassette(io.StringIO(text)))
    assert store.get_run(run_id).status == "killed"


def test_importing_over_a_different_run_with_the_same_id_is_refused() -> None:
    store, run_id = record("ok")
    _, _, text = _export("killed")
    with pytest.raises(CassetteConflictError, match=f"run {run_id} already exists .* differs at seq 1"):
        import_cassette(store, read_cassette(io.StringIO(text)))


def _broken(text: str, line: int, change: str) -> str:
    lines = text.splitlines()
    lines[line - 1] = change
    return "\n".join(lines) + "\n"


def _edit(cassette: str, line: int, **fields: object) -> str:
    data = json.loads(cassette.splitlines()[line - 1])
    data.update(fields)
    return _broken(cassette, line, json.dumps(data, sort_keys=True, separators=(",", ":")))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: "", r"cassette: the file is empty"),
        (lambda t: _broken(t, 1, "{nope"), r"line 1: not valid JSON"),
        (lambda t: _edit(t, 1, format="vcr"), r"line 1: not an executus cassette \(format is 'vcr'\)"),
        (lambda t: _edit(t, 1, version=7), r"line 1: cassette version 7 is not one this executus reads"),
        (
            lambda t: _edit(t, 1, events=3),
            r"promises 3 events and 2 blobs \(6 lines\) but the file has 23",
        ),
        (lambda t: _broken(t, 3, "[1, 2]"), r"line 3: expected a JSON object, got list"),
        (lambda t: _edit(t, 3, kind="model_pondered"), r"line 3: unknown event kind 'model_pondered'"),
        (lambda t: _edit(t, 3, seq=4), r"line 3: expected seq 2, got 4"),
        (lambda t: _edit(t, 4, run_id="run-9"), r"line 4: event belongs to run 'run-9', not run-0001"),
        (lambda t: _edit(t, 21, output="I edited this"), r"do not match the header's head_hash"),
        (lambda t: _edit(t, 22, size=12), r"line 22: blob 6839ab87688f: size says 12 but the data has 11"),
        (lambda t: _edit(t, 22, data="bm90IHRoZSBzYW1l"), r"line 22: blob 6839ab87688f: size says 11 but"),
        (lambda t: _edit(t, 23, data="%%%"), r"line 23: blob 8650fa3ad33b: data is not valid base64"),
        (lambda t: _broken(t, 5, ""), r"line 5: blank line"),
    ],
)
def test_malformed_cassettes_name_the_line_and_why(mutate, message) -> None:  # type: ignore[no-untyped-def]
    _, _, text = _export("ok")
    with pytest.raises(CassetteError, match=message):
        read_cassette(io.StringIO(mutate(text)))


def test_a_cassette_missing_a_referenced_blob_is_refused() -> None:
    _, _, text = _export("ok")
    lines = text.splitlines()
    header = json.loads(lines[0])
    header["blobs"] = 1
    lines[0] = json.dumps(header, sort_keys=True, separators=(",", ":"))
    with pytest.raises(CassetteError, match=r"reference blob 8650fa3ad33b.* does not hold it"):
        read_cassette(io.StringIO("\n".join(lines[:-1]) + "\n"))


def test_cassettes_read_from_files_in_utf8(tmp_path: Path) -> None:
    store, run_id = record("ok")
    path = tmp_path / "run.jsonl"
    with path.open("w", encoding="utf-8") as stream:
        write_cassette(store, run_id, stream)
    with path.open(encoding="utf-8") as stream:
        assert read_cassette(stream).header.status == "ok"
