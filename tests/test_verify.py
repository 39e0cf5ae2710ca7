"""`verify` catches rows changed behind the store's back, on SQLite and PostgreSQL, naming run and seq.

Each test records the demo runs, tampers with the rows directly in SQL the way someone with
write access to the database could, and checks what verification reports. The last cases
(a whole run deleted, a chain recomputed from scratch, the ledger rewritten too) are judged
against a checkpoint taken before the tampering.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from executus import SequentialIds, VirtualClock, tool
from executus._checkpoint import Checkpoint
from executus._notekey import generate_key, open_checkpoint
from executus.cli._demo import record_demo
from executus.events import UnknownEventError
from executus.storage import GENESIS_HASH, Finding, RunQuery, chain_hash, event_json_from_body
from store import SqlStore, signed_checkpoint, upgrade, verify_all, verify_checkpoint, verify_run
from store._engine import create_store_engine

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RUN = "demo-0001"  # ok, 12 events: seq 3 is the first model_responded
OTHER = "demo-0002"  # killed, 9 events


@pytest.fixture
def demo(sql_url: str) -> Iterator[SqlStore]:
    with SqlStore(sql_url) as opened:
        record_demo(opened, VirtualClock(START), SequentialIds("demo-"))
        yield opened


def execute(store: SqlStore, statement: str, **values: Any) -> None:
    engine = create_store_engine(str(store.engine.url.render_as_string(hide_password=False)))
    try:
        with engine.begin() as connection:
            connection.execute(text(statement), values)
    finally:
        engine.dispose()


def rows(store: SqlStore, run_id: str) -> list[Any]:
    with store.engine.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT seq, kind, schema_version, at, payload, hash FROM events "
                    "WHERE run_id = :r ORDER BY seq"
                ),
                {"r": run_id},
            )
        )


def edit_body(store: SqlStore, run_id: str, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
    (row,) = [row for row in rows(store, run_id) if row.seq == seq]
    body = json.loads(row.payload)
    change(body)
    execute(
        store,
        "UPDATE events SET payload = :p WHERE run_id = :r AND seq = :s",
        p=json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        r=run_id,
        s=seq,
    )


def recompute_chain(store: SqlStore, run_id: str) -> str:
    """What a thorough forger does after editing rows: rehash every row and fix the runs row."""
    head = GENESIS_HASH
    for row in rows(store, run_id):
        at = row.at if isinstance(row.at, datetime) else datetime.fromisoformat(row.at)
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        head = chain_hash(
            head, event_json_from_body(row.payload, run_id, row.seq, row.kind, row.schema_version, at)
        )
        execute(
            store,
            "UPDATE events SET hash = :h WHERE run_id = :r AND seq = :s",
            h=bytes.fromhex(head),
            r=run_id,
            s=row.seq,
        )
    execute(store, "UPDATE runs SET head_hash = :h WHERE run_id = :r", h=head, r=run_id)
    return head


def first(findings: tuple[Finding, ...], run_id: str) -> Finding:
    return next(finding for finding in findings if finding.run_id == run_id)


def test_an_untouched_database_verifies(demo: SqlStore) -> None:
    report = verify_all(demo)
    assert report.ok, report.findings
    assert (report.runs, report.events) == (7, 71)
    assert verify_run(demo, RUN).ok


def change_text(body: dict[str, Any]) -> None:
    body["text"] = "a different answer"


@pytest.mark.parametrize(
    ("tamper", "seq", "problem"),
    [
        pytest.param(lambda s: edit_body(s, RUN, 3, change_text), 3, "payload_changed", id="edit-payload"),
        pytest.param(
            lambda s: execute(s, "DELETE FROM events WHERE run_id = :r AND seq = 4", r=RUN),
            4,
            "event_missing",
            id="delete-event",
        ),
        pytest.param(
            lambda s: [
                execute(s, f"UPDATE events SET seq = {new} WHERE run_id = :r AND seq = {old}", r=RUN)
                for old, new in ((3, -3), (4, 3), (-3, 4))
            ],
            3,
            "reordered",
            id="reorder",
        ),
        pytest.param(
            lambda s: execute(s, "DELETE FROM events WHERE run_id = :r AND seq > 10", r=RUN),
            11,
            "tail_truncated",
            id="truncate-tail",
        ),
        pytest.param(
            lambda s: execute(
                s, "UPDATE runs SET status = 'error', input_tokens = 0 WHERE run_id = :r", r=RUN
            ),
            12,
            "projection_differs",
            id="edit-runs-row",
        ),
        pytest.param(
            lambda s: edit_body(s, RUN, 3, lambda body: body.update(kind="run_finished")),
            3,
            "malformed_body",
            id="body-repeats-envelope",
        ),
    ],
)
def test_each_tampering_is_caught_naming_the_run_and_first_bad_seq(
    demo: SqlStore, tamper: Callable[[SqlStore], object], seq: int, problem: str
) -> None:
    tamper(demo)
    for report in (verify_all(demo), verify_run(demo, RUN)):
        assert not report.ok
        finding = first(report.findings, RUN)
        assert (finding.run_id, finding.seq, finding.problem) == (RUN, seq, problem), report.findings
        assert {f.run_id for f in report.findings} == {RUN}  # the other runs are intact


def test_a_truncated_tail_with_its_runs_row_rewritten_is_caught_by_the_seal(demo: SqlStore) -> None:
    (tenth,) = [row for row in rows(demo, RUN) if row.seq == 10]
    execute(demo, "DELETE FROM events WHERE run_id = :r AND seq > 10", r=RUN)
    execute(
        demo,
        "UPDATE runs SET last_seq = 10, head_hash = :h, status = 'running', finished_at = NULL, "
        "end_cause = NULL WHERE run_id = :r",
        h=bytes(tenth.hash).hex(),
        r=RUN,
    )
    (finding,) = [f for f in verify_all(demo).findings if f.problem == "tail_truncated"]
    assert (finding.run_id, finding.seq) == (RUN, 11)
    assert "ledger entry" in finding.detail


def test_a_body_repeating_an_envelope_field_is_refused_by_readers_too(demo: SqlStore) -> None:
    edit_body(demo, RUN, 3, lambda body: body.update(kind="run_finished"))
    with pytest.raises(UnknownEventError, match=r"seq 3: .*repeats the envelope field 'kind'"):
        demo.read_run(RUN)


@pytest.fixture
def checkpoint(demo: SqlStore) -> Checkpoint:
    """A checkpoint of the untouched ledger, kept (as it would be) outside the database."""
    signer = generate_key("example.com/ledger")
    return open_checkpoint(signed_checkpoint(demo, signer), signer.verifier())


def test_a_whole_run_deleted_is_named_and_the_ledger_is_proven_intact(
    demo: SqlStore, checkpoint: Checkpoint
) -> None:
    execute(demo, "DELETE FROM events WHERE run_id = :r", r=OTHER)
    execute(demo, "DELETE FROM runs WHERE run_id = :r", r=OTHER)
    assert verify_checkpoint(demo, checkpoint) == []
    (finding,) = verify_all(demo).findings
    assert (finding.run_id, finding.seq, finding.problem) == (OTHER, 9, "run_deleted")


def test_a_chain_recomputed_from_scratch_is_caught_by_its_seal(
    demo: SqlStore, checkpoint: Checkpoint
) -> None:
    edit_body(demo, RUN, 3, change_text)
    recompute_chain(demo, RUN)
    assert verify_checkpoint(demo, checkpoint) == []
    (finding,) = verify_all(demo).findings
    assert (finding.run_id, finding.seq, finding.problem) == (RUN, 12, "seal_differs")


def test_rewriting_the_ledger_too_breaks_the_consistency_proof(
    demo: SqlStore, checkpoint: Checkpoint
) -> None:
    edit_body(demo, RUN, 3, change_text)
    head = recompute_chain(demo, RUN)
    execute(demo, "UPDATE ledger SET head_hash = :h WHERE run_id = :r", h=head, r=RUN)
    assert verify_all(demo).ok  # the database is consistent with itself now...
    (finding,) = verify_checkpoint(demo, checkpoint)  # ...but not with what was signed
    assert finding.problem == "ledger_changed"
    assert f"the first {checkpoint.size} seals are not the ones the checkpoint signed" in finding.detail


def test_deleting_a_run_and_its_seal_is_caught_against_the_checkpoint(
    demo: SqlStore, checkpoint: Checkpoint
) -> None:
    for table in ("events", "runs", "ledger"):
        execute(demo, f"DELETE FROM {table} WHERE run_id = :r", r=OTHER)
    assert [f.problem for f in verify_all(demo).findings] == ["ledger_changed"]  # a gap in the ledger
    (finding,) = verify_checkpoint(demo, checkpoint)
    assert finding.problem == "ledger_changed"
    execute(demo, "DELETE FROM ledger")  # and with the whole ledger gone
    (finding,) = verify_checkpoint(demo, checkpoint)
    assert finding.problem == "ledger_changed"
    assert "seals were deleted" in finding.detail


def test_a_run_finished_without_a_seal_is_reported(demo: SqlStore) -> None:
    execute(demo, "DELETE FROM ledger WHERE run_id = :r", r=RUN)
    problems = {(f.run_id, f.seq, f.problem) for f in verify_all(demo).findings}
    assert (RUN, 12, "unsealed") in problems


def test_verify_since_checks_only_runs_started_since(demo: SqlStore) -> None:
    edit_body(demo, RUN, 3, change_text)
    assert verify_all(demo, since=datetime(2030, 1, 1, tzinfo=UTC)).runs == 0
    assert not verify_all(demo, since=START).ok


@pytest.mark.parametrize("database", ["demo.db", "crash.db"])
def test_databases_0_1_0_recorded_verify_once_upgraded_and_their_finished_runs_are_sealed(
    database: str, tmp_path: Path
) -> None:
    copy = tmp_path / database
    shutil.copyfile(Path(__file__).parent / "golden" / "v0_1_0" / database, copy)
    upgrade(f"sqlite:///{copy}")
    with SqlStore(f"sqlite:///{copy}") as opened:
        report = verify_all(opened)
        finished = [run for run in opened.list_runs(RunQuery(limit=None)) if run.status != "running"]
    assert report.ok, report.findings
    assert report.runs >= len(finished) > 0


def test_long_runs_are_sealed_every_n_events_so_a_cut_tail_is_caught_before_they_finish(sql_url: str) -> None:
    from executus import Agent, Executor, Invocation
    from executus.storage import SealPolicy
    from executus.testing import ScriptedModel, call

    @tool
    def step(n: int) -> str:
        """One more step."""
        return f"step {n}"

    model = ScriptedModel([*(call("step", n=n) for n in range(6)), "done"])
    with SqlStore(sql_url, seal_policy=SealPolicy(every_events=5, every_seconds=None)) as opened:
        result = Executor(opened, clock=VirtualClock(START), ids=SequentialIds("long-")).run_sync(
            Agent(name="long", model=model, tools=[step], max_iterations=10), Invocation(), "go"
        )
        with opened.engine.connect() as connection:
            sealed = [
                row.last_seq
                for row in connection.execute(text("SELECT last_seq FROM ledger ORDER BY leaf_index"))
            ]
        last = opened.get_run(result.run_id).last_seq
        assert sealed[-1] == last
        assert len(sealed) >= last // 5  # a seal each time the seq passed a multiple of 5
        # Cut the run back to before its second seal and make every row agree with the cut.
        cut = sealed[1] - 1
        (kept,) = [row for row in rows(opened, result.run_id) if row.seq == cut]
        execute(opened, f"DELETE FROM events WHERE run_id = :r AND seq > {cut}", r=result.run_id)
        execute(opened, "DELETE FROM ledger WHERE run_id = :r AND last_seq = :s", r=result.run_id, s=last)
        execute(
            opened,
            "UPDATE runs SET last_seq = :s, head_hash = :h WHERE run_id = :r",
            s=cut,
            h=bytes(kept.hash).hex(),
            r=result.run_id,
        )
        truncated = [f for f in verify_all(opened).findings if f.problem == "tail_truncated"]
        assert (truncated[0].run_id, truncated[0].seq) == (result.run_id, cut + 1)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            '{"latency":NaN,"step":1,"text":null,"tool_calls":[],"usage":{"input_tokens":1,"output_tokens":1}}',
            id="nan",
        ),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param("{" * 100_000, id="too-deep"),
        pytest.param('{"step": 1}', id="not-canonical"),
    ],
)
def test_malformed_bodies_are_findings_not_crashes(demo: SqlStore, body: str) -> None:
    execute(demo, "UPDATE events SET payload = :p WHERE run_id = :r AND seq = 3", p=body, r=RUN)
    finding = first(verify_all(demo).findings, RUN)
    assert (finding.seq, finding.problem) == (3, "malformed_body"), finding


def test_runs_finishing_at_once_from_two_stores_get_one_ledger_entry_each(sql_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def record_some(prefix: str) -> None:
        with SqlStore(sql_url) as opened:
            record_demo(opened, VirtualClock(START), SequentialIds(prefix))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(record_some, ["left-", "right-"]))
    with SqlStore(sql_url) as opened:
        with opened.engine.connect() as connection:
            indexes = list(
                connection.execute(text("SELECT leaf_index FROM ledger ORDER BY leaf_index")).scalars()
            )
        assert indexes == list(range(14))
        assert verify_all(opened).ok


def test_a_nested_key_named_like_an_envelope_field_is_not_a_repeat() -> None:
    from executus._events import InFlight
    from executus.events import RunCancelled
    from executus.storage import decode_event_body, event_json_and_body

    event = RunCancelled(
        run_id="r",
        seq=4,
        at=START,
        cause="caller",
        in_flight=(InFlight(kind="tool", name="t", arguments={"seq": 1, "at": "noon"}, started_at=START),),
    )
    _, body = event_json_and_body(event)
    assert '"kind":"tool"' in body
    assert decode_event_body(body, "r", 4, "run_cancelled", 1, START) == event
    with pytest.raises(UnknownEventError, match="repeats the envelope field 'seq'"):
        decode_event_body(body[:-1] + ',"seq":5}', "r", 4, "run_cancelled", 1, START)
