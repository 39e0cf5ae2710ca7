"""The peers, driven the way the issue's anchor scripts drove them (``../shared/bench``).

Peers are optional (the ``bench`` extra): each function raises :class:`PeerMissing` when its
library is not installed, and the case records the row as "not installed".

* eventsourcing's application recorders get the same events as ``StoredEvent`` objects
  (originator = run id, version = seq, topic = kind, state = the JSON payload encoded inside
  the timing), one ``insert_events`` call per executor transaction. On SQLite it runs at its
  defaults (WAL, ``synchronous`` left at SQLite's default FULL: an fsync per commit) and also
  at ``synchronous=NORMAL``, executus's setting, which is the like-for-like comparison; on
  PostgreSQL at its defaults (an exclusive table lock per insert).
* LangGraph's ``SqliteSaver`` checkpoints a one-node graph after every step; the node adds one
  ~300-byte message to a ``messages`` channel, as an agent loop's state grows. It runs at its
  default durability (``async``: the checkpoint is written while the next step runs, as the
  anchors were measured) and at ``sync`` (committed before the next step, executus's rule).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import operator
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypedDict

from sqlalchemy.engine import make_url

from bench._raw import RawBatch
from bench._timing import RunFigures

__all__ = [
    "PeerMissing",
    "eventsourcing_postgres_append",
    "eventsourcing_sqlite_append",
    "langgraph_run",
    "require",
]


class PeerMissing(Exception):
    """A peer library is not installed (``pip install -e '.[bench]'``)."""


def require(*modules: str) -> None:
    """Raise :class:`PeerMissing` unless every module can be imported."""
    missing = [module for module in modules if not _importable(module)]
    if missing:
        raise PeerMissing(f"{', '.join(missing)} not installed")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package of a dotted name is missing
        return False


def _stored_events(batch: RawBatch) -> list[Any]:
    from eventsourcing.persistence import StoredEvent

    return [
        StoredEvent(
            originator_id=row[0], originator_version=row[1], topic=row[2], state=json.dumps(data).encode()
        )
        for row, data in zip(batch.rows, batch.payloads, strict=True)
    ]


def _timed_inserts(recorder: Any, datastore: Any, batches: Sequence[RawBatch]) -> float:
    """Create the recorder's table, time one ``insert_events`` call per batch; events/s."""
    recorder.create_table()
    count = sum(len(batch.rows) for batch in batches)
    started = time.perf_counter()
    for batch in batches:
        recorder.insert_events(_stored_events(batch))
    seconds = time.perf_counter() - started
    datastore.close()
    return count / seconds


def eventsourcing_sqlite_append(
    path: str, batches: Sequence[RawBatch], *, normal_sync: bool = False
) -> float:
    """eventsourcing's ``SQLiteApplicationRecorder.insert_events``, one call per batch; events/s.

    Args:
        path: the database file.
        batches: the rows to insert, one ``insert_events`` call per batch.
        normal_sync: set ``synchronous=NORMAL`` on its connections, the durability executus
            uses, so the comparison is not one of fsyncs. eventsourcing has no option for it,
            so this wraps its (private) connection factory.
    """
    require("eventsourcing")
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    datastore = SQLiteDatastore(path, originator_id_type="text")
    if normal_sync:
        pool: Any = datastore.pool
        create = pool._create_connection

        def create_with_normal_sync() -> Any:
            connection = create()
            connection._sqlite_conn.execute("PRAGMA synchronous=NORMAL")
            return connection

        pool._create_connection = create_with_normal_sync
    return _timed_inserts(SQLiteApplicationRecorder(datastore), datastore, batches)


def eventsourcing_postgres_append(url: str, batches: Sequence[RawBatch]) -> float:
    """eventsourcing's ``PostgresApplicationRecorder.insert_events``, one call per batch; events/s."""
    require("eventsourcing", "psycopg_pool")
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    parsed = make_url(url)
    datastore = PostgresDatastore(
        parsed.database or "postgres",
        parsed.host or "127.0.0.1",
        parsed.port or 5432,
        parsed.username or "postgres",
        str(parsed.password or ""),
        originator_id_type="text",
    )
    return _timed_inserts(PostgresApplicationRecorder(datastore), datastore, batches)


class _GraphState(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]
    n: int


def langgraph_run(steps: int, directory: Path, durability: str | None = None) -> RunFigures:
    """Run LangGraph for ``steps`` checkpointed steps and measure it like an executus run.

    The growth is measured from the checkpointer's empty tables, so schema pages are not
    counted against the run (as for executus). Step marks are taken as the node starts.

    Args:
        steps: graph steps (one checkpoint each).
        directory: where its database goes.
        durability: LangGraph's ``durability`` (None: its default, ``"async"``, which writes a
            step's checkpoint while the next step already runs; ``"sync"`` commits it first,
            as executus commits an event before the side effect it precedes).
    """
    require("langgraph", "langgraph.checkpoint.sqlite")
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    marks: list[float] = []

    def step(state: _GraphState) -> dict[str, Any]:
        marks.append(time.perf_counter())
        message = {"role": "assistant", "content": "x" * 300, "step": state["n"]}
        return {"messages": [message], "n": state["n"] + 1}

    def route(state: _GraphState) -> str:
        return END if state["n"] >= steps else "step"

    graph: Any = StateGraph(_GraphState)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", route)
    path = directory / "langgraph.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        SqliteSaver(connection).setup()
        connection.commit()
    empty = _size(directory)  # closed, as it is measured again after the run
    connection = sqlite3.connect(path, check_same_thread=False)
    app = graph.compile(checkpointer=SqliteSaver(connection))
    config = {"configurable": {"thread_id": "bench"}, "recursion_limit": steps + 10}
    started = time.perf_counter()
    app.invoke({"messages": [], "n": 0}, config, durability=durability)
    seconds = time.perf_counter() - started
    connection.commit()
    connection.close()
    return RunFigures(steps, seconds, _size(directory) - empty, tuple(marks))


def _size(directory: Path) -> int:
    return sum(os.path.getsize(directory / name) for name in os.listdir(directory))
