"""What only the SQL store has: global positions, raw records, real races, stored-row decoding."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, JsonValue, TypeAdapter
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from store_events import T0, expected_hashes, fold, record, run_events, started, unusual_run

from executus import DatabaseUnavailableError, RunNotFoundError, StoreError, StoreUnavailableError
from executus._events import utc_json
from executus.events import Event, ModelResponded, SchemaVersionError, ToolStarted, UnknownEventError
from executus.storage import (
    ConcurrencyError,
    chain_hash,
    decode_event_body,
    event_json,
    event_json_and_body,
    event_json_from_body,
)
from store import SqlStore, StoredEvent, WriterSettings, open_store
from store._schema import events as events_table
from store._schema import runs as runs_table


def _raw_insert(store: SqlStore, run_id: str, seq: int, payload: dict[str, object] | str) -> None:
    """Write an events row behind the store's back (another writer, or an old executus).

    A dict is a whole event: its kind, schema version and time go to their columns (a v0
    model_responded at T0 where it has none), and the rest is the stored body. A string is
    stored as the body as it is.
    """
    data = {} if isinstance(payload, str) else dict(payload)
    kind, schema_version, at = (
        data.pop("kind", "model_responded"),
        data.pop("schema_version", 0),
        data.pop("at", None),
    )
    data.pop("run_id", None)
    data.pop("seq", None)
    with store.engine.begin() as connection:
        connection.execute(
            insert(events_table).values(
                run_id=run_id,
                seq=seq,
                kind=kind,
                schema_version=schema_version,
                at=T0 if at is None else datetime.fromisoformat(str(at)),
                payload=payload if isinstance(payload, str) else json.dumps(data),
                hash=bytes(32),
            )
        )


def test_records_carry_positions_hashes_and_the_exact_stored_text(sql_store: SqlStore) -> None:
    events = run_events("run-1")
    record(sql_store, events)
    records = sql_store.records("run-1")
    assert [stored.event for stored in records] == events
    assert [stored.payload_json for stored in records] == [event_json(event) for event in events]
    assert [stored.hash for stored in records] == expected_hashes(events)
    assert [stored.prev_hash for stored in records[1:]] == [stored.hash for stored in records[:-1]]
    assert records[0].prev_hash == "0" * 64
    positions = [stored.position for stored in records]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    with pytest.raises(RunNotFoundError):
        sql_store.records("nope")


def test_read_after_pages_through_every_run_in_commit_order(sql_store: SqlStore) -> None:
    first, second = run_events("run-a"), run_events("run-b", at=T0 + timedelta(hours=1))
    committed: list[Event] = []
    for a, b in zip(first, second, strict=False):  # interleave two runs
        for event in (a, b):
            sql_store.append(event.run_id, [event], event.seq - 1)
            committed.append(event)
    everything = sql_store.read_after(0)
    assert [stored.event for stored in everything] == committed
    paged: list[StoredEvent] = []
    position = 0
    while page := sql_store.read_after(position, limit=3):
        assert len(page) <= 3
        paged += page
        position = page[-1].position
    assert paged == everything
    assert sql_store.read_after(everything[-1].position) == []
    # Each record links to its own run's previous event, even on a page that starts mid-run.
    for stored in paged:
        assert chain_hash(stored.prev_hash, stored.payload_json) == stored.hash
    by_run = {run_id: sql_store.records(run_id) for run_id in ("run-a", "run-b")}
    assert sorted(everything, key=lambda stored: (stored.event.run_id, stored.event.seq)) == [
        *by_run["run-a"],
        *by_run["run-b"],
    ]
    assert [stored.hash for stored in by_run["run-a"]] == expected_hashes(first)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-9, minutes=-30)), timezone(timedelta(hours=14))])


@settings(max_examples=300, deadline=None)
@given(
    run_id=st.text(min_size=1, max_size=20),
    seq=st.integers(min_value=1, max_value=2**31 - 1),
    at=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31), timezones=_ZONES),
    arguments=st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=5),
)
def test_the_full_text_is_rebuilt_exactly_from_the_body_and_the_envelope(
    run_id: str, seq: int, at: datetime, arguments: dict[str, JsonValue]
) -> None:
    """What the SQL store relies on: body + envelope columns give back the hashed text exactly."""
    event = ToolStarted(run_id=run_id, seq=seq, at=at, call_id="call-1", name="search", arguments=arguments)
    full, body = event_json_and_body(event)
    assert full == event_json(event)
    assert utc_json(event.at) == TypeAdapter(AwareDatetime).dump_python(event.at, mode="json")
    envelope = (run_id, seq, event.kind, event.schema_version)
    assert event_json_from_body(body, *envelope, at) == full
    assert decode_event_body(body, *envelope, at) == event
    assert decode_event_body(body, *envelope, utc_json(at)) == event


def test_a_row_keeps_its_body_and_rebuilds_the_exact_text_its_hash_covers(sql_store: SqlStore) -> None:
    events = unusual_run("run-ü")
    record(sql_store, events)
    assert sql_store.read_run("run-ü") == events
    records = sql_store.records("run-ü")
    assert [stored.payload_json for stored in records] == [event_json(event) for event in events]
    assert [stored.hash for stored in records] == expected_hashes(events)
    with sql_store.engine.connect() as connection:
        rows = connection.execute(
            select(events_table.c.payload, events_table.c.hash).order_by(events_table.c.seq)
        ).all()
    assert [row.payload for row in rows] == [event_json_and_body(event)[1] for event in events]
    for row in rows:
        assert not set(json.loads(row.payload)) & {"run_id", "seq", "kind", "schema_version", "at"}
    assert [bytes(row.hash) for row in rows] == [bytes.fromhex(digest) for digest in expected_hashes(events)]


def test_run_ids_with_prefix_treats_wildcards_literally(sql_store: SqlStore) -> None:
    for number, run_id in enumerate(["run_1", "runX1", "run%2", "abc"]):
        record(sql_store, run_events(run_id, at=T0 + timedelta(minutes=number)))
    assert sql_store.run_ids_with_prefix("run_") == ["run_1"]
    assert sql_store.run_ids_with_prefix("run%") == ["run%2"]
    assert sql_store.run_ids_with_prefix("run") == ["run_1", "runX1", "run%2"]
    assert sql_store.run_ids_with_prefix("run", limit=1) == ["run_1"]
    assert sql_store.run_ids_with_prefix("zzz") == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://alice:s3cret@db.example:5432/runs",
            "postgresql+psycopg://alice:***@db.example:5432/runs",
        ),
        (
            "postgresql+psycopg://alice@db.example/runs?password=s3cret",
            "postgresql+psycopg://alice@db.example/runs?password=%2A%2A%2A",
        ),
        (
            "sqlite:////home/me/Application Support/executus.db",
            "sqlite:////home/me/Application Support/executus.db",
        ),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_display_url_masks_the_password_and_nothing_else(url: str, shown: str) -> None:
    with SqlStore(url) as opened:
        assert opened.display_url == shown
        assert "s3cret" not in repr(opened)


def test_sqlite_runs_in_wal_mode_with_synchronous_normal(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'executus.db'}") as sql_store:
        with sql_store.engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout")
            }
        assert pragma == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 30_000}


def test_an_in_memory_sqlite_store_works_in_one_process() -> None:
    with open_store("sqlite://") as opened:
        record(opened, run_events("run-1"))
        assert opened.get_run("run-1") == fold(opened.read_run("run-1"))


def test_times_come_back_aware_and_in_utc(sql_store: SqlStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    events = [event.model_copy(update={"at": event.at.astimezone(plus_two)}) for event in run_events("run-1")]
    record(sql_store, events)
    summary = sql_store.get_run("run-1")
    assert summary == fold(events)
    assert summary.started_at.utcoffset() == timedelta(0)
    assert summary.started_at == T0


def test_a_seq_taken_by_a_writer_that_bypassed_the_lock_is_a_concurrency_error(sql_store: SqlStore) -> None:
    """The unique (run_id, seq) constraint is the last line: its violation is a lost race."""
    events = run_events("run-1")
    record(sql_store, events[:2])
    _raw_insert(sql_store, "run-1", 4, {"kind": "intruder"})  # seq 3 is free, seq 4 is taken
    with pytest.raises(ConcurrencyError) as raised:
        sql_store.append("run-1", events[2:4], 2)
    assert (raised.value.expected_seq, raised.value.actual_seq) == (2, 4)
    # The transaction failed on its second row: its first row (seq 3) must be gone too.
    with sql_store.engine.connect() as connection:
        seqs = connection.execute(
            select(events_table.c.seq).where(events_table.c.run_id == "run-1")
        ).scalars()
        assert sorted(seqs) == [1, 2, 4]
        last_seq = connection.execute(select(runs_table.c.last_seq)).scalar_one()
    assert last_seq == 2
    assert sql_store.get_run("run-1") == fold(events[:2])


def test_concurrent_appends_from_two_stores_exactly_one_wins(sql_url: str) -> None:
    """Two stores (two connection pools, as two processes have) race for every seq."""
    rounds = 15
    with SqlStore(sql_url) as one, SqlStore(sql_url) as two:
        one.append("run-1", [started("run-1")], 0)
        outcomes: dict[str, list[bool]] = {"one": [], "two": []}
        losers_saw: list[tuple[int, int]] = []
        barrier = threading.Barrier(2, timeout=30)

        def writer(name: str, writing: SqlStore) -> None:
            for seq in range(2, rounds + 2):
                barrier.wait()
                event = started("run-1").model_copy(update={"seq": seq, "input": name})
                try:
                    writing.append("run-1", [event], seq - 1)
                except ConcurrencyError as error:
                    losers_saw.append((error.expected_seq, error.actual_seq))
                    outcomes[name].append(False)
                else:
                    outcomes[name].append(True)
                barrier.wait()

        threads = [
            threading.Thread(target=writer, args=item, daemon=True) for item in (("one", one), ("two", two))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert [a + b for a, b in zip(outcomes["one"], outcomes["two"], strict=True)] == [1] * rounds
        assert losers_saw == [(seq - 1, seq) for seq in range(2, rounds + 2)]
        stored = one.read_run("run-1")
        assert [event.seq for event in stored] == list(range(1, rounds + 2))
        winners = ["one" if won else "two" for won in outcomes["one"]]
        assert [event.input for event in stored[1:]] == winners  # type: ignore[union-attr]
        assert two.get_run("run-1").last_seq == rounds + 1


def test_a_reader_tailing_by_position_never_skips_an_event(sql_url: str) -> None:
    """Writers commit concurrently while a reader tails read_after: it must see everything."""
    writers, per_writer = 3, 25
    with SqlStore(sql_url) as reader:
        done = threading.Event()
        seen: list[StoredEvent] = []

        def tail() -> None:
            position = 0
            while True:
                finishing = done.is_set()
                for stored in reader.read_after(position, limit=7):
                    seen.append(stored)
                    position = stored.position
                if finishing and not reader.read_after(position):
                    return

        def write(number: int) -> None:
            with SqlStore(sql_url) as writing:
                run_id = f"run-{number}"
                writing.append(run_id, [started(run_id)], 0)
                for seq in range(2, per_writer + 1):
                    event = started(run_id).model_copy(update={"seq": seq})
                    writing.append(run_id, [event], seq - 1)

        tailer = threading.Thread(target=tail, daemon=True)
        tailer.start()
        threads = [threading.Thread(target=write, args=(number,), daemon=True) for number in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        done.set()
        tailer.join(timeout=60)
        assert len(seen) == writers * per_writer
        assert seen == reader.read_after(0, limit=10_000)


def test_a_v0_row_is_upcast_when_read(sql_store: SqlStore) -> None:
    """A model_responded row as pre-release builds wrote it: latency in integer milliseconds."""
    record(sql_store, [started("run-1")])
    v0 = {
        "run_id": "run-1",
        "seq": 2,
        "at": "2026-01-01T00:00:03Z",
        "kind": "model_responded",
        "schema_version": 0,
        "step": 1,
        "text": "Otters hold hands.",
        "latency_ms": 1500,
    }
    _raw_insert(sql_store, "run-1", 2, v0)
    event = sql_store.read_run("run-1")[1]
    assert isinstance(event, ModelResponded)
    assert (event.latency, event.schema_version, event.text) == (1.5, 1, "Otters hold hands.")
    stored = sql_store.records("run-1")[1]
    assert json.loads(stored.payload_json) == v0  # the row itself is never rewritten


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ({"kind": "model_exploded", "run_id": "run-1", "seq": 2}, UnknownEventError, "unknown event kind"),
        ({"kind": "model_responded", "schema_version": 99}, SchemaVersionError, "upgrade executus"),
        ("{not json", UnknownEventError, "not an event"),
        ("[1, 2]", UnknownEventError, "not an event"),
        ({"kind": "model_responded", "schema_version": 1}, UnknownEventError, "invalid model_responded"),
        ({"kind": "tool_started", "schema_version": 1, "name": 7}, UnknownEventError, "invalid tool_started"),
    ],
)
def test_rows_this_code_cannot_read_give_clear_errors(
    sql_store: SqlStore, payload: dict[str, object] | str, error: type[Exception], message: str
) -> None:
    record(sql_store, [started("run-1")])
    _raw_insert(sql_store, "run-1", 2, payload)
    with pytest.raises(error, match=message) as raised:
        sql_store.read_run("run-1")
    assert "run run-1 seq 2" in str(raised.value)
    with pytest.raises(error, match="run run-1 seq 2"):
        sql_store.records("run-1")
    assert sql_store.read_run("run-1", after_seq=2) == []  # rows before and after stay readable


def test_the_first_media_type_of_a_blob_wins(sql_store: SqlStore) -> None:
    digest = sql_store.put_blob(b"png bytes", "image/png")
    assert sql_store.put_blob(b"png bytes", "application/octet-stream") == digest
    assert sql_store.get_blob(digest).media_type == "image/png"
    with sql_store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(events_table)).scalar_one() == 0


def test_times_are_stored_exactly_as_sqlalchemy_stores_them(sql_store: SqlStore) -> None:
    """Appends bind parameters on the bare driver; rows must not differ from SQLAlchemy's own."""
    plus_two = timezone(timedelta(hours=2))
    events = [
        event.model_copy(
            update={"at": (event.at + timedelta(microseconds=1001 * (event.seq - 1))).astimezone(plus_two)}
        )
        for event in run_events("run-1")
    ]
    record(sql_store, events)
    summary = sql_store.get_run("run-1")
    with sql_store.engine.begin() as connection:
        for event in events:
            connection.execute(
                insert(events_table).values(
                    run_id="copy",
                    seq=event.seq,
                    kind=event.kind,
                    schema_version=event.schema_version,
                    at=event.at,
                    payload="{}",
                    hash=bytes(32),
                )
            )
        connection.execute(insert(runs_table).values({**dataclasses.asdict(summary), "run_id": "copy"}))
        # Raw values, as the database holds them: text on SQLite, timestamptz on PostgreSQL.
        stored_times = connection.execute(
            text("SELECT run_id, seq, at FROM events ORDER BY seq, run_id")
        ).all()
        stored_runs = connection.execute(
            text("SELECT started_at, finished_at, last_event_at FROM runs ORDER BY run_id DESC")
        ).all()
    assert [row.at for row in stored_times if row.run_id == "run-1"] == [
        row.at for row in stored_times if row.run_id == "copy"
    ]
    assert stored_runs[0] == stored_runs[1]
    if sql_store.engine.dialect.name == "sqlite":
        assert stored_times[0].at == "2026-01-01 00:00:00.000000"  # naive UTC, fixed width


def test_appends_from_many_threads_to_one_store_all_land_in_order(sql_store: SqlStore) -> None:
    """Appends share one writer connection: threads take turns, and none sees a false race."""
    runs = {f"run-{number}": run_events(f"run-{number}", steps=4) for number in range(6)}
    barrier = threading.Barrier(len(runs), timeout=30)
    errors: list[BaseException] = []

    def write(events: list[Event]) -> None:
        barrier.wait()
        try:
            record(sql_store, events)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(events,), daemon=True) for events in runs.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    for run_id, events in runs.items():
        assert sql_store.read_run(run_id) == events
        assert sql_store.get_run(run_id) == fold(events)
    positions = [stored.position for stored in sql_store.read_after(0, limit=10_000)]
    assert positions == sorted(set(positions))


def test_an_unreachable_database_fails_the_append_in_one_line_without_the_password() -> None:
    # A refused connection is retried for the retry window (30 s by default) before it fails.
    settings = WriterSettings(retry_window=1.0)
    for url in (
        "postgresql+psycopg://alice:s3cret@127.0.0.1:1/runs",
        "sqlite:////nonexistent-dir/executus.db",
    ):
        with (
            SqlStore(url, settings=settings) as unreachable,
            pytest.raises(DatabaseUnavailableError, match="cannot open database") as raised,
        ):
            unreachable.append("run-1", [started("run-1")], 0)
        assert "s3cret" not in str(raised.value)
        assert "\n" not in str(raised.value)


def _read_only_url(sql_url: str) -> str:
    url = make_url(sql_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///file:{url.database}?mode=ro&uri=true"
    return url.update_query_dict({"options": "-c default_transaction_read_only=on"}).render_as_string(
        hide_password=False
    )


def test_a_statement_the_database_refuses_is_a_store_error_and_writes_nothing(sql_url: str) -> None:
    with SqlStore(_read_only_url(sql_url)) as read_only:
        with pytest.raises(StoreError, match=r"appending to run run-1 in .* failed: .*read-?only") as raised:
            read_only.append("run-1", [started("run-1")], 0)
        assert "\n" not in str(raised.value)
        assert not isinstance(raised.value, DatabaseUnavailableError)
    with SqlStore(sql_url) as writable:
        assert writable.list_runs() == []
        record(writable, run_events("run-1"))  # the database itself is fine
        assert writable.read_run("run-1") == run_events("run-1")


def test_a_read_the_database_refuses_is_a_store_error_in_one_line(fresh_url: str) -> None:
    """read_run runs its SELECT on the driver's cursor: its errors must still be executus's."""
    with open_store(fresh_url) as opened:
        record(opened, run_events("run-1"))
        with opened.engine.begin() as connection:
            connection.execute(text("ALTER TABLE events RENAME COLUMN payload TO body"))
        with pytest.raises(StoreError, match=r"reading run run-1 in .* failed: .*payload") as raised:
            opened.read_run("run-1")
        assert "\n" not in str(raised.value)
        assert not isinstance(raised.value, DatabaseUnavailableError)


def test_an_in_memory_store_shares_its_one_connection_between_appends_and_reads() -> None:
    with open_store("sqlite://") as opened:
        events = run_events("run-1")
        record(opened, events[:3])
        with pytest.raises(ConcurrencyError):
            opened.append("run-1", events[3:4], 2)  # rolled back on the connection reads use too
        record(opened, events[3:])
        assert opened.read_run("run-1") == events
        assert [stored.event for stored in opened.read_after(0)] == events


def _admin(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(dsn, autocommit=True)


def _terminate(admin: psycopg.Connection[tuple[Any, ...]], condition: str) -> None:
    """Terminate the executus backends matching ``condition`` (there must be one) and wait until
    they are gone, as a database restart or an administrator would drop them."""
    deadline = time.monotonic() + 30
    query = f"SELECT pid FROM pg_stat_activity WHERE application_name = 'executus' AND {condition}"
    while not (pids := [pid for (pid,) in admin.execute(query)]):
        assert time.monotonic() < deadline, f"no executus backend with {condition}"
        time.sleep(0.01)
    admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
    remaining = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)"
    while admin.execute(remaining, (pids,)).fetchone() != (0,):
        assert time.monotonic() < deadline, "terminated backends did not go away"
        time.sleep(0.01)


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
def test_an_append_after_the_server_dropped_the_connection_reconnects(sql_url: str) -> None:
    events = run_events("run-1")
    with SqlStore(sql_url) as sql_store, _admin(sql_url) as admin:
        sql_store.append("run-1", events[:2], 0)
        _terminate(admin, "datname = current_database()")  # every connection of the store
        sql_store.append("run-1", events[2:], 2)
        assert sql_store.read_run("run-1") == events
        assert sql_store.get_run("run-1") == fold(events)


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
def test_a_connection_lost_mid_append_twice_is_unavailable_and_writes_nothing(sql_url: str) -> None:
    """Lost while waiting for the append lock: retried on new connections until the retry
    window is over (the lock is still held), then reported."""
    events = run_events("run-1")
    waiting = "pid IN (SELECT pid FROM pg_locks WHERE locktype = 'relation' AND NOT granted)"
    quick = WriterSettings(lock_timeout=5, retry_window=3)
    with SqlStore(sql_url, settings=quick) as sql_store, _admin(sql_url) as admin, _admin(sql_url) as blocker:
        sql_store.append("run-1", events[:2], 0)
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE events IN EXCLUSIVE MODE")  # appends now wait
        outcome: list[BaseException] = []

        def append() -> None:
            try:
                sql_store.append("run-1", events[2:], 2)
            except BaseException as error:
                outcome.append(error)

        appending = threading.Thread(target=append, daemon=True)
        appending.start()
        _terminate(admin, waiting)
        _terminate(admin, waiting)  # the retry's new connection
        appending.join(timeout=30)
        blocker.execute("COMMIT")
        assert len(outcome) == 1
        assert isinstance(outcome[0], StoreUnavailableError)
        assert isinstance(outcome[0], DatabaseUnavailableError)
        assert str(outcome[0]).startswith("gave up appending to run run-1 in postgresql+psycopg://")
        assert "nothing after seq 2 was written" in str(outcome[0])
        assert outcome[0].run_id == "run-1"
        assert outcome[0].expected_seq == 2
        assert not outcome[0].outcome_unknown
        assert sql_store.read_run("run-1") == events[:2]
        sql_store.append("run-1", events[2:], 2)  # on a new connection
        assert sql_store.read_run("run-1") == events
