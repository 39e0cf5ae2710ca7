"""Commands for runs shared by workers: ``worker``, ``submit``, ``cancel`` and ``resume``.

Exit codes: 0 ok; 1 ``cancel`` of a run that has already finished (nothing to cancel: scripts
that race a cancel against the run's end can tell it from a typo), or ``resume`` of a run that
ended other than ok; 2 bad input, an unknown run, a run another worker owns, an unusable
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Final

import click

from executus._agent import Agent
from executus._errors import DatabaseUnavailableError, ExecutusError, RunNotFoundError
from executus._executor import Executor
from executus._forensics import format_duration
from executus._leases import LeaseInfo, QueuedRun, RunLeases
from executus._ownership import DEFAULT_LEASE_TTL
from executus._store import RunSummary
from executus._worker import Worker, enqueue
from executus.cli._common import CliError, Settings, db_option, load_object, one_line, opened
from executus.cli._options import FiniteFloat
from executus.cli._render import Cell, Output, format_timestamp, short_id, status_cell
from executus.cli._store import BrowsableStore, resolve_run_id
from executus.cli._terminal import echo

__all__ = [
    "cancel_command",
    "owner_gone",
    "owners_gone",
    "pending_rows",
    "resume_command",
    "run_owner",
    "submit_command",
    "worker_command",
]

EXIT_ALREADY_FINISHED = 1


def _leases(event_store: BrowsableStore) -> RunLeases:
    if not isinstance(event_store, RunLeases):
        raise CliError(f"{event_store.display_url} keeps no leases or work queue (run executus db upgrade)")
    return event_store


def load_agents(specs: Iterable[str]) -> list[Agent]:
    """The agents ``--agents`` names: ``MODULE`` (every Agent in it) or ``MODULE:ATTR`` (an
    Agent, a factory of one, or a list of them).

    Raises:
        CliError: a spec cannot be loaded, or names no agent.
    """
    agents: list[Agent] = []
    for spec in specs:
        if ":" in spec:
            found: Agent | list[object] | tuple[object, ...] = load_object(
                spec, (Agent, list, tuple), "an Agent or a list of Agents"
            )
            listed: list[object] = [found] if isinstance(found, Agent) else list(found)
        else:
            listed = [value for value in vars(_import(spec)).values() if isinstance(value, Agent)]
            if not listed:
                raise CliError(f"module {spec} has no Agent at module level; name one with {spec}:ATTR")
        for agent in listed:
            if not isinstance(agent, Agent):
                raise CliError(f"{spec} is not an Agent or a list of Agents")
            if agent not in agents:
                agents.append(agent)
    return agents


def _import(module_name: str) -> ModuleType:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except Exception as error:
        raise CliError(f"cannot load module {module_name}: {one_line(error)}") from None


DATABASE_WAIT: Final = 60.0
"""Seconds ``executus worker`` waits at start-up for a PostgreSQL server that refuses connections."""


# -- worker ------------------------------------------------------------------------------------


@click.command("worker", short_help="Claim and run queued and orphaned runs.")
@db_option
@click.option(
    "--agents",
    "agent_specs",
    multiple=True,
    required=True,
    metavar="MODULE[:ATTR]",
    help="The agents to run: every Agent in MODULE, or MODULE:ATTR (repeatable).",
)
@click.option("--concurrency", type=click.IntRange(min=1, max=10_000), default=4, show_default=True)
@click.option("--worker-id", metavar="ID", help="This worker's id (default: host:pid:random).")
@click.option(
    "--lease",
    "lease_ttl",
    type=FiniteFloat(min=1),
    default=DEFAULT_LEASE_TTL,
    show_default=True,
    metavar="SECONDS",
    help="How long a run's lease lasts unless renewed: a dead worker's runs wait this long.",
)
@click.option(
    "--wait-for-database",
    "database_wait",
    type=FiniteFloat(min=0),
    default=DATABASE_WAIT,
    show_default=True,
    metavar="SECONDS",
    help="A PostgreSQL server that refuses connections at start-up (still starting, restarting) "
    "is retried this long before the worker gives up.",
)
@click.option("--poll", type=FiniteFloat(min=0.01), default=0.5, show_default=True, hidden=True)
@click.pass_obj
def worker_command(
    settings: Settings,
    agent_specs: tuple[str, ...],
    concurrency: int,
    worker_id: str | None,
    lease_ttl: float,
    database_wait: float,
    poll: float,
) -> None:
    """Claim and run queued runs and runs whose worker died, until SIGTERM or Ctrl-C.

    On SIGTERM or SIGINT the worker stops claiming and hands the runs it drives over: it stops
    them where they are (nothing recorded) and releases their leases, so another worker, or
    this one restarted, resumes them at once.
    """
    agents = load_agents(agent_specs)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    executus_logger = logging.getLogger("executus")  # this worker's own news only, not its libraries'
    executus_logger.addHandler(handler)
    executus_logger.setLevel(logging.INFO)
    with _opened_when_up(settings, database_wait) as event_store:
        _leases(event_store)
        worker = Worker(
            event_store,
            agents,
            concurrency=concurrency,
            worker_id=worker_id,
            lease_ttl=lease_ttl,
            poll_interval=poll,
        )
        names = ", ".join(sorted(worker.agents))
        where = event_store.display_url
        _freeze_start_up_heap()

        def announce() -> None:
            line = f"worker {worker.worker_id}: agents {names}; up to {concurrency} runs at once; {where}"
            Output().line(line, "accent")
            sys.stdout.flush()

        asyncio.run(worker.run_until_signalled(announce))
    Output().line(f"worker {worker.worker_id} stopped")


def _freeze_start_up_heap() -> None:
    """Leave what the worker loaded at start-up out of every later garbage collection.

    Modules, agents and the store live as long as the process, yet every full collection walks
    them all (60,000 and more objects: most of a 100 ms pause of the event loop under 100
    concurrent runs, bench/RESULTS.md case 7). The worker is executus's own process, so it may
    set its collector (the library never does): one collection, then ``gc.freeze()``, as
    CPython's documentation suggests for long-lived servers.
    """
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def _opened_when_up(settings: Settings, wait: float) -> Iterator[BrowsableStore]:
    """The configured store, once a PostgreSQL server that refuses connections accepts them.

    A worker is started by a supervisor, often beside the database (a compose file, a reboot):
    a server still starting or restarting is worth waiting for, as the writer waits out an
    outage mid-run. SQLite has no server, and any other failure is an error at once.
    """
    give_up_at = time.monotonic() + wait
    while True:
        try:
            event_store = settings.open_store(settings.db_url, read_only=False)
            break
        except DatabaseUnavailableError as error:
            if not error.server_down or time.monotonic() >= give_up_at:
                raise
            echo(f"waiting for the database: {error}", err=True)
            time.sleep(min(1.0, max(0.0, give_up_at - time.monotonic())))
    try:
        yield event_store
    finally:
        event_store.close()


# -- submit ------------------------------------------------------------------------------------


@click.command("submit", short_help="Queue a run for workers.")
@db_option
@click.argument("agent_spec", metavar="MODULE:ATTR")
@click.argument("input")
@click.option("--caller", metavar="ID", help="The caller the run is for.")
@click.option("--json", "as_json", is_flag=True, help="Print the queued run as JSON.")
@click.pass_obj
def submit_command(
    settings: Settings, agent_spec: str, input: str, caller: str | None, as_json: bool
) -> None:
    """Queue a run of the agent MODULE:ATTR on INPUT; prints its run id.

    A worker with an agent of that name (`executus worker --agents MODULE`) picks it up.
    """
    agent = load_object(agent_spec, Agent, "an Agent")
    with opened(settings) as event_store:
        run_id = enqueue(event_store, agent, input, caller)
    output = Output()
    if as_json:
        output.json({"run_id": run_id, "agent": agent.name, "caller_id": caller, "status": "pending"})
    else:
        output.line(run_id)


# -- cancel ------------------------------------------------------------------------------------


@click.command("cancel", short_help="Ask the owning worker to cancel a run.")
@db_option
@click.argument("run")
@click.option("--reason", metavar="TEXT", help="Why; recorded in the run's run_cancelled.")
@click.pass_context
def cancel_command(ctx: click.Context, run: str, reason: str | None) -> None:
    """Ask the worker that owns RUN to cancel it; it applies the request within one heartbeat,
    recorded as a caller cancel with the reason. A queued run is cancelled as it starts.

    Exit 0: the request is recorded; 1: the run had already finished; 2: no such run.
    """
    settings = ctx.ensure_object(Settings)
    output = Output()
    with opened(settings) as event_store:
        leases = _leases(event_store)
        run_id, summary = _find(event_store, leases, run)
        if summary is not None and summary.status != "running":
            output.line(f"run {run_id} has already finished ({summary.status}): nothing to cancel", "warn")
            ctx.exit(EXIT_ALREADY_FINISHED)
        leases.request_cancel(run_id, reason)
        info = leases.lease_of(run_id)
    if summary is None:
        output.line(f"cancel requested for queued run {run_id}: it is cancelled as a worker starts it")
    elif info is not None and info.live and info.owner is not None:
        output.line(
            f"cancel requested for run {run_id}: its owner {info.owner} applies it within one heartbeat"
        )
    else:
        output.line(
            f"cancel requested for run {run_id}: no worker owns it now; it is applied when one takes it over"
        )


def _find(event_store: BrowsableStore, leases: RunLeases, typed: str) -> tuple[str, RunSummary | None]:
    """The run ``typed`` names: a recorded one (with its summary) or a queued one (None)."""
    try:
        run_id = resolve_run_id(event_store, typed)
    except RunNotFoundError:
        queued = [run.run_id for run in leases.queued_runs(limit=None) if run.run_id.startswith(typed)]
        if len(queued) == 1:
            return queued[0], None
        raise
    return run_id, event_store.get_run(run_id)


# -- resume ------------------------------------------------------------------------------------


@click.command("resume", short_help="Carry on an interrupted run.")
@db_option
@click.argument("run")
@click.option("--agent", "agent_spec", required=True, metavar="MODULE:ATTR", help="The run's agent.")
@click.option(
    "--force",
    is_flag=True,
    help="Take the run over even while another worker's lease on it is live (that worker stops "
    "it at its next write). Only when you know that worker is gone.",
)
@click.pass_context
def resume_command(ctx: click.Context, run: str, agent_spec: str, force: bool) -> None:
    """Carry on an interrupted RUN (no run_finished in its log) from its log, in this process.

    Refused while another worker's lease on the run is live (exit 2): the run is alive
    elsewhere. Exit 0: the run ended ok; 1: it ended otherwise.
    """
    settings = ctx.ensure_object(Settings)
    agent = load_object(agent_spec, Agent, "an Agent")
    with opened(settings) as event_store:
        run_id = resolve_run_id(event_store, run)
        executor = Executor(event_store)
        try:
            result = asyncio.run(executor.resume(run_id, agent, force=force))
        except ExecutusError as error:
            raise CliError(one_line(error)) from None
    output = Output()
    output.cells([Cell(f"run {result.run_id}", "accent"), status_cell(result.status)])
    if result.output is not None:
        output.line(result.output)
    elif result.error is not None:
        output.line(str(result.error), "warn")
    if not result.ok:
        ctx.exit(1)


# -- what show, why and runs add -----------------------------------------------------------------


def _lease(event_store: BrowsableStore, run_id: str) -> LeaseInfo | None:
    """The run's lease as the store has it, or None (no lease, or a store that keeps none)."""
    if not isinstance(event_store, RunLeases):
        return None
    info: LeaseInfo | None = event_store.lease_of(run_id)
    if info is None or info.owner is None or info.expires_at is None:
        return None
    return info


def run_owner(event_store: BrowsableStore, run_id: str, now: datetime) -> tuple[str | None, str | None]:
    """What to say of an unfinished run's owner, from one read of its lease: ``(gone, working)``,
    one line each, at most one of them set (neither when the store keeps no leases, or the run
    has none)."""
    info = _lease(event_store, run_id)
    if info is None:
        return None, None
    assert info.expires_at is not None
    if info.live:
        working = (
            f"worker {info.owner} holds its lease until {format_timestamp(info.expires_at)} UTC, renewing "
            "it while it works (if that worker died, the run is recovered once the lease runs out)"
        )
        return None, working
    ago = max(0.0, (now - info.expires_at).total_seconds())
    gone = (
        f"its owner {info.owner} is gone: the lease expired at {format_timestamp(info.expires_at)} UTC "
        f"({ago:.0f}s ago) and no worker has taken the run over yet; `executus worker` recovers it, "
        f"or `executus resume {short_id(run_id)} --agent MODULE:ATTR`"
    )
    return gone, None


def owner_gone(event_store: BrowsableStore, run_id: str, now: datetime) -> str | None:
    """One line saying the run's owner is gone (its lease expired, and nobody took it over),
    or None while an owner holds it, or when the store keeps no leases."""
    return run_owner(event_store, run_id, now)[0]


def owners_gone(
    event_store: BrowsableStore, summaries: Iterable[RunSummary], now: datetime
) -> dict[str, str]:
    """For ``executus runs``: a short note for each running run whose owner is gone."""
    notes = {}
    for summary in summaries:
        info = _lease(event_store, summary.run_id) if summary.status == "running" else None
        if info is not None and not info.live:
            assert info.expires_at is not None
            ago = format_duration(max(0.0, (now - info.expires_at).total_seconds()))
            notes[summary.run_id] = f"owner gone {ago} ago ({info.owner})"  # cut to fit: the gist first
    return notes


def pending_rows(event_store: BrowsableStore, limit: int | None) -> list[QueuedRun]:
    """The queued runs ``runs --status pending`` lists, oldest first."""
    return _leases(event_store).queued_runs(limit)


def print_pending(output: Output, queued: list[QueuedRun], as_json: bool) -> None:
    if as_json:
        output.json(
            [
                {
                    "run_id": run.run_id,
                    "agent": run.agent,
                    "caller_id": run.caller_id,
                    "status": "pending",
                    "submitted_at": run.submitted_at.isoformat(),
                    "input": run.input,
                }
                for run in queued
            ]
        )
        return
    if not queued:
        output.line("No queued runs.")
        return
    rows = [
        [
            Cell(short_id(run.run_id)),
            Cell(run.agent),
            status_cell("pending"),
            Cell(format_timestamp(run.submitted_at)),
            Cell(run.caller_id or "", "quiet"),
        ]
        for run in queued
    ]
    output.table(("RUN", "AGENT", "STATUS", "SUBMITTED", "CALLER"), rows)
