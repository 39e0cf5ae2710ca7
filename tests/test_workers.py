"""Real worker processes over one database: chaos (SIGKILLs, a PostgreSQL restart), a zombie
worker, a cancel from another process, and the CLI commands around the queue.

Workers are ``executus worker`` processes running ``tests/worker_agents.py`` (tests/_fleet.py).
Timing only decides where a kill lands; what is checked does not depend on it.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fleet import (
    Fleet,
    busy_owners,
    empty_tables,
    fleet_violations,
    importable_environment,
    recoveries,
    wait_until_finished,
)
from _pgserver import ThrowawayPostgres
from click.testing import CliRunner

from executus import enqueue
from executus.cli import cli
from executus.events import RunCancelled, RunResumed, ToolFinished
from store import SqlStore
from store._engine import create_store_engine

TIMEOUT = 90.0
"""Seconds a fleet may take before the test gives up and reports what is unfinished."""


@pytest.fixture
def fleet(sql_url: str, tmp_path: Path) -> Iterator[Fleet]:
    made = Fleet(sql_url, tmp_path)
    try:
        yield made
    finally:
        made.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "executus.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            key: value for key, value in importable_environment().items() if not key.startswith("EXECUTUS_")
        },
    )


def _wait_for(predicate: object, timeout: float = TIMEOUT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- chaos -------------------------------------------------------------------------------------


def _chaos(
    fleet: Fleet,
    store: SqlStore,
    runs: int,
    workers: int,
    kills: int,
    seed: int,
    restart: ThrowawayPostgres | None = None,
) -> None:
    rng = random.Random(seed)
    run_ids = [enqueue(store, "payer", f"order {index}", caller_id="chaos") for index in range(runs)]
    for _ in range(workers):
        fleet.start()
    deadline = time.monotonic() + TIMEOUT
    killed = 0
    engine = create_store_engine(fleet.url)
    while killed < kills and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.2, 0.8))
        try:
            busy = busy_owners(engine) & set(fleet.processes)
        except Exception:  # the database is restarting
            continue
        if not busy:
            continue  # the workers are still starting, or the work is done
        victim = rng.choice(sorted(busy))
        fleet.kill(victim)
        killed += 1
        fleet.start()
        if restart is not None and killed == kills // 2:
            # Mid-recovery: the victim's runs wait for their leases to expire while the
            # database goes away under every worker and comes back.
            restart.stop_server()
            time.sleep(0.5)
            restart.start_server()
    engine.dispose()
    print(f"chaos: {killed} kills done at {time.monotonic() - deadline + TIMEOUT:.1f}s")
    for _ in range(200):
        left = wait_until_finished(store, run_ids, 2.0)
        print(f"chaos: {len(left)} left at {time.monotonic() - deadline + TIMEOUT:.1f}s")
        if not left:
            break
    unfinished = wait_until_finished(store, run_ids, max(1.0, deadline - time.monotonic()))
    codes = fleet.stop()
    assert not unfinished, f"seed {seed}: {len(unfinished)} runs unfinished, e.g. {sorted(unfinished)[:3]}"
    unclean = {worker_id: fleet.log(worker_id)[-1500:] for worker_id, code in codes.items() if code != 0}
    assert unclean == {}, codes  # SIGTERM is a clean shutdown
    violations = fleet_violations(store, run_ids, fleet.marker_counts())
    assert violations == [], f"seed {seed}: {violations[:10]}"
    statuses = {store.get_run(run_id).status for run_id in run_ids}
    assert statuses == {"ok"}, statuses
    assert recoveries(store, run_ids), "no worker died with a run in flight: the test proved nothing"


def test_chaos_on_postgresql_sigkills_and_a_restart(own_postgres: ThrowawayPostgres, tmp_path: Path) -> None:
    empty_tables(own_postgres.url)
    fleet = Fleet(own_postgres.url, tmp_path, lease=2.0, concurrency=8, step=0.05, tool_seconds=0.1)
    seed = random.randrange(2**31)
    with SqlStore(own_postgres.url) as store:
        try:
            _chaos(fleet, store, runs=200, workers=4, kills=4, seed=seed, restart=own_postgres)
        finally:
            fleet.stop()


def test_a_worker_started_while_postgresql_is_down_waits_for_it(
    own_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    empty_tables(own_postgres.url)
    fleet = Fleet(own_postgres.url, tmp_path, lease=2.0, concurrency=2, step=0.01, tool_seconds=0.01)
    own_postgres.stop_server()
    try:
        worker_id = fleet.start()
        worker = fleet.processes[worker_id]
        _wait_for(
            lambda: "waiting for the database" in fleet.log(worker_id) or worker.poll() is not None,
            what="the worker to wait",
        )
        assert worker.poll() is None, fleet.log(worker_id)
    finally:
        own_postgres.start_server()
    try:
        with SqlStore(own_postgres.url) as store:
            run_id = enqueue(store, "payer", "order 1", caller_id="late")
            assert wait_until_finished(store, [run_id], TIMEOUT) == set()
            assert store.get_run(run_id).status == "ok"
    finally:
        codes = fleet.stop()
    assert codes == {worker_id: 0}, fleet.log(worker_id)


PICKUP_AFTER_RESTART = 10.0
"""Seconds a worker that stayed up through a PostgreSQL restart may take to start a new run:
well under its lease (30 s), so that only a worker that is really back in business passes."""


def test_a_worker_connected_through_a_postgresql_restart_picks_up_a_new_run_promptly(
    own_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    empty_tables(own_postgres.url)
    fleet = Fleet(own_postgres.url, tmp_path, lease=30.0, concurrency=8, step=0.05, tool_seconds=2.0)
    try:
        worker_id = fleet.start()
        with SqlStore(own_postgres.url) as store:
            busy = [enqueue(store, "payer", f"order {index}", caller_id="busy") for index in range(4)]
            _wait_for(lambda: sum(fleet.marker_counts().values()) >= len(busy), what="the charges")
        # The server goes away under the worker's runs (their tools in flight, their heartbeats
        # and appends due), its claim poll and its LISTEN connection, and comes back.
        own_postgres.stop_server()
        time.sleep(0.5)
        own_postgres.start_server()
        with SqlStore(own_postgres.url) as store:
            run_id = enqueue(store, "payer", "after the restart", caller_id="late")
            _wait_for(
                lambda: _has_started(store, run_id), PICKUP_AFTER_RESTART, f"the worker to start {run_id}"
            )
            assert wait_until_finished(store, [*busy, run_id], TIMEOUT) == set()
            assert {store.get_run(run_id).status for run_id in [*busy, run_id]} == {"ok"}
    finally:
        codes = fleet.stop()
    assert codes == {worker_id: 0}, fleet.log(worker_id)


def _has_started(store: SqlStore, run_id: str) -> bool:
    try:
        return bool(store.read_run(run_id))
    except Exception:  # not recorded yet (or the database is still waking up)
        return False


def test_chaos_on_sqlite_with_processes_on_one_host(tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "chaos.db"
    path.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{path}"
    fleet = Fleet(url, tmp_path, lease=2.0, concurrency=4, step=0.05, tool_seconds=0.1)
    seed = random.randrange(2**31)
    with SqlStore(url) as store:
        try:
            _chaos(fleet, store, runs=40, workers=3, kills=2, seed=seed)
        finally:
            fleet.stop()


# -- a zombie ----------------------------------------------------------------------------------


def test_a_worker_stopped_past_its_lease_cannot_append_or_start_anything_when_it_wakes(
    fleet: Fleet, sql_url: str
) -> None:
    fleet.tool_seconds = 3.0  # the charge is in flight when the first worker freezes
    fleet.lease = 1.0
    with SqlStore(sql_url) as store:
        run_id = enqueue(store, "payer", "order", caller_id="zombie")
        zombie = fleet.start("zombie")
        _wait_for(lambda: fleet.marker_counts()[run_id, "charge"] == 1, what="the first charge")
        fleet.signal(zombie, signal.SIGSTOP)
        fleet.start("rescuer")
        assert not wait_until_finished(store, [run_id], TIMEOUT)
        events_before = store.read_run(run_id)
        fleet.signal(zombie, signal.SIGCONT)
        # The zombie's charge finishes now: its append is refused, it stops the run and says so.
        _wait_for(
            lambda: "lease" in fleet.log(zombie) and run_id in fleet.log(zombie), what="the zombie's stop"
        )
        fleet.stop()
        assert store.read_run(run_id) == events_before
        counts = fleet.marker_counts()
        assert (counts[run_id, "charge"], counts[run_id, "lookup"]) == (1, 1)
        (resumed,) = [event for event in events_before if isinstance(event, RunResumed)]
        assert (resumed.previous_owner, resumed.worker_id) == ("zombie", "rescuer")
        charge = next(e for e in events_before if isinstance(e, ToolFinished) and e.name == "charge")
        assert charge.error is not None
        assert charge.error.type == "Interrupted"
        assert fleet_violations(store, [run_id], counts) == []


# -- cancel from another process ---------------------------------------------------------------


def test_a_cancel_from_another_process_is_recorded_as_a_caller_cancel_with_its_reason(
    fleet: Fleet, sql_url: str
) -> None:
    fleet.tool_seconds = 60.0
    with SqlStore(sql_url) as store:
        run_id = enqueue(store, "payer", "order", caller_id="cancel")
        fleet.start()
        _wait_for(lambda: fleet.marker_counts()[run_id, "charge"] == 1, what="the charge")
        cancelled = _cli("--db", sql_url, "cancel", run_id[:12], "--reason", "customer called")
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancel requested" in cancelled.stdout
        assert not wait_until_finished(store, [run_id], TIMEOUT)
        assert store.get_run(run_id).status == "cancelled"
        (event,) = [e for e in store.read_run(run_id) if isinstance(e, RunCancelled)]
        assert (event.cause, event.detail) == ("caller", "customer called")
        again = _cli("--db", sql_url, "cancel", run_id)
        assert again.returncode == 1
        assert again.stdout.strip() == f"run {run_id} has already finished (cancelled): nothing to cancel"


# -- the CLI around the queue --------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_submit_queues_a_run_that_runs_status_pending_lists(sql_url: str, tmp_path: Path) -> None:
    empty_tables(sql_url)
    code, out, err = invoke("--db", sql_url, "submit", "worker_agents:payer", "an order", "--caller", "c1")
    assert code == 0, err
    run_id = out.strip()
    code, out, _ = invoke("--db", sql_url, "runs", "--status", "pending", "--json")
    assert code == 0
    (queued,) = json.loads(out)
    assert (queued["run_id"], queued["agent"], queued["caller_id"], queued["status"]) == (
        run_id,
        "payer",
        "c1",
        "pending",
    )
    code, out, _ = invoke("--db", sql_url, "cancel", run_id)
    assert code == 0
    assert "queued run" in out


def test_resume_refuses_a_run_whose_lease_is_live_in_one_line(fleet: Fleet, sql_url: str) -> None:
    fleet.tool_seconds = 60.0
    with SqlStore(sql_url) as store:
        run_id = enqueue(store, "payer", "order")
        worker = fleet.start("busy")
        _wait_for(lambda: fleet.marker_counts()[run_id, "charge"] == 1, what="the charge")
        refused = _cli("--db", sql_url, "resume", run_id, "--agent", "worker_agents:payer")
        assert refused.returncode == 2
        assert refused.stdout == ""
        assert refused.stderr.count("\n") == 1
        assert "busy" in refused.stderr
        assert "--force" in refused.stderr
        # While its worker lives, why names it; runs has nothing to warn about.
        why = _cli("--db", sql_url, "why", run_id)
        assert "The run is going on: worker busy holds its lease until" in why.stdout
        listed = json.loads(_cli("--db", sql_url, "runs", "--json").stdout)
        assert [(run["run_id"], run["status"], run["owner_gone"]) for run in listed] == [
            (run_id, "running", None)
        ]
        fleet.kill(worker)
        # Its lease runs out: show --follow, why and runs say the owner is gone instead of waiting.
        _wait_for(lambda: not store.lease_of(run_id).live, what="the lease to expire")  # type: ignore[union-attr]
        followed = _cli("--db", sql_url, "show", run_id, "--follow")
        assert followed.returncode == 0
        assert "owner busy is gone" in followed.stdout
        why = _cli("--db", sql_url, "why", run_id)
        assert "owner busy is gone" in why.stdout
        assert "going on: worker" not in why.stdout
        listed = json.loads(_cli("--db", sql_url, "runs", "--json").stdout)
        assert re.fullmatch(r"owner gone [0-9.]+s ago \(busy\)", listed[0]["owner_gone"])
        table = _cli("--db", sql_url, "runs").stdout  # 80 columns: the worker's id may be cut
        assert re.search(rf"{run_id[:8]}  payer +running .+  owner gone [0-9.]+s ago \(", table)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("worker", "--agents", "no_such_module_here"), "cannot load module no_such_module_here"),
        (("worker", "--agents", "json"), "module json has no Agent"),
        (("worker", "--agents", "worker_agents:charge"), "not an Agent or a list of Agents"),
        (("submit", "worker_agents:nothing", "x"), "cannot load an Agent worker_agents:nothing"),
        (("cancel", "no-such-run"), "no-such-run"),
        (("resume", "no-such-run", "--agent", "worker_agents:payer"), "no-such-run"),
        (("worker", "--agents", "worker_agents", "--concurrency", "0"), "--concurrency"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sql_url: str, args: tuple[str, ...], fragment: str) -> None:
    code, out, err = invoke("--db", sql_url, *args)
    assert code == 2, err
    assert out == ""
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert fragment in err


def test_resume_of_a_finished_run_is_refused_in_one_line(fleet: Fleet, sql_url: str) -> None:
    with SqlStore(sql_url) as store:
        run_id = enqueue(store, "payer", "order")
        fleet.start()
        assert not wait_until_finished(store, [run_id], TIMEOUT)
    code, out, err = invoke("--db", sql_url, "resume", run_id, "--agent", "worker_agents:payer")
    assert code == 2
    assert "already finished with status ok" in err
    code, out, _ = invoke("--db", sql_url, "runs", "--status", "pending")
    assert (code, out) == (0, "No queued runs.\n")
