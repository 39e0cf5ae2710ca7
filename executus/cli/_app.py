"""The ``executus`` command line: record the demo, list runs, show and explain them, move them.

Exit codes: 0 ok; 1 a check failed (reserved for ``replay`` and ``verify``); 2 bad input or an
unusable database. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import shutil
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from executus._clock import VirtualClock
from executus._events import RunFinished, encode_event
from executus._forensics import explain, format_duration
from executus._store import MemoryStore, RunQuery, RunSummary
from executus.cli._audit import checkpoint_command, verify_command
from executus.cli._common import ExecutusGroup, Settings, db_option, opened
from executus.cli._demo import DEMO_CALLER, record_demo
from executus.cli._options import (
    FiniteFloat,
    limit_option,
    parse_when,
    select_runs,
    status_option,
    time_options,
)
from executus.cli._otel import otel_group
from executus.cli._render import (
    KIND_WIDTH,
    RUN_COLUMNS,
    Cell,
    Output,
    format_timestamp,
    run_table_rows,
    short_id,
    status_cell,
)
from executus.cli._replay import replay_command
from executus.cli._report import report_command
from executus.cli._run import run_command
from executus.cli._store import BrowsableStore, resolve_run_id
from executus.cli._terminal import echo
from executus.cli._timeline import DEFAULT_GAP_SECONDS, timeline
from executus.cli._transfer import db_group, export_command, import_command
from executus.cli._work import (
    cancel_command,
    owner_gone,
    owners_gone,
    pending_rows,
    print_pending,
    resume_command,
    run_owner,
    submit_command,
    worker_command,
)

__all__ = ["cli", "main"]


@click.group(cls=ExecutusGroup, context_settings={"help_option_names": ["-h", "--help"]})
@db_option
@click.version_option(package_name="executus")
def cli() -> None:
    """Run LLM agents and audit, explain and move their recorded runs.

    Start with `executus demo`, then `executus runs`.
    """


# -- demo --------------------------------------------------------------------------------------


@cli.command(short_help="Record the built-in demo runs.")
@db_option
@click.pass_obj
def demo(settings: Settings) -> None:
    """Record the built-in demo runs (fake models, virtual time) in the database."""
    output = Output()
    # The demo's virtual length is fixed by its scripts: rehearse it in memory, then start the
    # recorded runs that long ago, so they end now instead of minutes in the future.
    rehearsal = VirtualClock(settings.now())
    record_demo(MemoryStore(), rehearsal)
    clock = VirtualClock(settings.now() - timedelta(seconds=rehearsal.elapsed))
    with opened(settings) as event_store:
        recorded = record_demo(event_store, clock)
        summaries = [event_store.get_run(run.result.run_id) for run in recorded]
        where = event_store.display_url
    output.line(f"Recorded {len(recorded)} demo runs in {where}", "accent")
    output.line(
        f"(fake models on a virtual clock: {format_duration(clock.elapsed)} of virtual time passed "
        f"in an instant; caller {DEMO_CALLER!r})",
        "quiet",
    )
    output.line()
    rows = [
        [*row[:3], Cell(format_duration(run.result.duration)), Cell(run.scenario, "quiet")]
        for row, run in zip(run_table_rows(summaries, settings.now()), recorded, strict=True)
    ]
    output.table(("RUN", "AGENT", "STATUS", "DURATION", "SCENARIO"), rows)
    killed = next(run.result.run_id for run in recorded if run.result.status == "killed")
    import store as sql_store

    executus = _command_name() + (
        f" --db {sql_store.display_url(settings.db_url)}"
        if settings.db_from_option and settings.db_url
        else ""
    )
    output.line()
    output.line("Next, try:", "accent")
    suggestions = (
        (f"{executus} runs", "list the runs"),
        (f"{executus} show {short_id(killed)}", "the killed run's timeline"),
        (f"{executus} why {short_id(killed)}", "why it was killed, citing its events"),
        (f"{executus} export {short_id(killed)} -o killed.jsonl", "save it as a cassette"),
    )
    width = max(len(command) for command, _ in suggestions) + 3
    for command, purpose in suggestions:
        output.cells([Cell(f"  {command:<{width}}"), Cell(f"# {purpose}", "quiet")], separator="")


def _command_name() -> str:
    """How to type ``executus`` again: as invoked (``.venv/bin/executus``) unless it is on PATH."""
    invoked = sys.argv[0]
    if Path(invoked).name != "executus":
        return "executus"
    found = shutil.which("executus")
    if found is not None and Path(found).resolve() == Path(invoked).resolve():
        return "executus"
    return invoked


# -- runs --------------------------------------------------------------------------------------


def summary_json(summary: RunSummary) -> dict[str, Any]:
    """A run's summary row as JSON-ready data."""
    finished = summary.finished_at
    return {
        "run_id": summary.run_id,
        "agent": summary.agent,
        "model": summary.model,
        "caller_id": summary.caller_id,
        "parent_run_id": summary.parent_run_id,
        "status": summary.status,
        "started_at": summary.started_at.isoformat(),
        "finished_at": finished.isoformat() if finished else None,
        "duration": (finished - summary.started_at).total_seconds() if finished else None,
        "steps": summary.steps,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "end_cause": summary.end_cause,
        "last_seq": summary.last_seq,
        "head_hash": summary.head_hash,
    }


@cli.command(short_help="List recorded runs, newest first.")
@db_option
@status_option("Only runs with this status.")
@click.option("--agent", metavar="NAME", help="Only runs of this agent.")
@click.option("--caller", metavar="ID", help="Only runs for this caller.")
@time_options("Only runs")
@limit_option(50, "At most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@click.pass_obj
def runs(
    settings: Settings,
    statuses: tuple[str, ...],
    agent: str | None,
    caller: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List recorded runs, newest first."""
    now = settings.now()
    query = RunQuery(
        agent=agent,
        caller_id=caller,
        since=parse_when("--since", since, now) if since else None,
        until=parse_when("--until", until, now) if until else None,
        limit=limit,
    )
    output = Output()
    if "pending" in statuses:  # queued runs have no log yet: they are listed apart
        with opened(settings, read_only=True) as event_store:
            print_pending(output, pending_rows(event_store, limit), as_json)
        statuses = tuple(status for status in statuses if status != "pending")
        if not statuses:
            return
    with opened(settings, read_only=True) as event_store:
        summaries, more = select_runs(event_store, query, statuses)
        where = event_store.display_url
        gone = owners_gone(event_store, summaries, now)
    if as_json:
        output.json(
            [{**summary_json(summary), "owner_gone": gone.get(summary.run_id)} for summary in summaries]
        )
        return
    if not summaries:
        output.line(f"No runs match in {where}. Record some with: executus demo")
        return
    output.table(RUN_COLUMNS, run_table_rows(summaries, now, output.width, gone))
    if more:
        output.line(
            f"(the newest {limit} shown; more runs match: raise --limit or narrow the filters)", "quiet"
        )


# -- show --------------------------------------------------------------------------------------


def _print_header(output: Output, summary: RunSummary) -> None:
    output.cells([Cell(f"run {summary.run_id}", "accent"), Cell(summary.agent), status_cell(summary.status)])
    caller = f"caller {summary.caller_id} · " if summary.caller_id else ""
    parent = f" · child of {summary.parent_run_id}" if summary.parent_run_id else ""
    output.line(
        f"{caller}model {summary.model} · started {format_timestamp(summary.started_at)} UTC{parent}", "quiet"
    )
    output.line()


@cli.command(short_help="Show a run's timeline.")
@db_option
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print the events, one JSON object a line.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the run finishes.")
@click.option(
    "--gap",
    type=FiniteFloat(min=0, min_open=True),
    default=DEFAULT_GAP_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Call out idle gaps at least this long.",
)
@click.option("--interval", type=FiniteFloat(min=0.05), default=0.5, show_default=True, hidden=True)
@click.pass_context
def show(ctx: click.Context, run: str, as_json: bool, follow: bool, gap: float, interval: float) -> None:
    """Show a run's timeline: time since start, event kind, and what happened.

    RUN is a run id, or a prefix of one that no other run shares.
    """
    settings = ctx.ensure_object(Settings)
    output = Output()
    with opened(settings, read_only=True) as event_store:
        run_id = resolve_run_id(event_store, run)
        if not as_json:
            _print_header(output, event_store.get_run(run_id))
        try:
            finished = _print_events(event_store, run_id, output, as_json, gap, follow, settings, interval)
        except KeyboardInterrupt:  # Ctrl-C is how a user stops following
            ctx.exit(130)
        gone = None if finished else owner_gone(event_store, run_id, settings.now())
    if gone is not None:
        # Said even with --json (on stderr): the follow stopped because nobody owns the run.
        echo(f"run {run_id}: {gone}", err=as_json)
    elif not finished and not as_json:
        output.line()
        output.line("No run_finished yet: the run is still going or was interrupted (use --follow).", "warn")


def _print_events(
    event_store: BrowsableStore,
    run_id: str,
    output: Output,
    as_json: bool,
    gap: float,
    follow: bool,
    settings: Settings,
    interval: float,
) -> bool:
    """Print a run's events; with ``follow``, poll for more until ``run_finished``, or until the
    run's owner is gone (nobody writes more until a worker takes it over). True if finished."""
    events = event_store.read_run(run_id)
    started_at, previous_at, last_seq = events[0].at, None, 0
    kind_width = KIND_WIDTH
    while True:
        if as_json:
            for event in events:
                output.json(encode_event(event), indent=None)
        else:
            kind_width = max(kind_width, *(len(event.kind) for event in events), 0)
            for item in timeline(events, started_at, previous_at, gap):
                output.timeline_item(item, kind_width)
        if events:
            previous_at, last_seq = events[-1].at, events[-1].seq
            if isinstance(events[-1], RunFinished):
                return True
        if not follow:
            return False
        settings.sleep(interval)
        events = event_store.read_run(run_id, after_seq=last_seq)
        if not events and owner_gone(event_store, run_id, settings.now()) is not None:
            return False


# -- why ---------------------------------------------------------------------------------------


@cli.command(short_help="Explain how and why a run ended.")
@db_option
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print the statements as JSON.")
@click.pass_obj
def why(settings: Settings, run: str, as_json: bool) -> None:
    """Explain how and why a run ended, citing the events (seq N) each statement rests on.

    RUN is a run id, or a prefix of one that no other run shares.
    """
    with opened(settings, read_only=True) as event_store:
        run_id = resolve_run_id(event_store, run)
        explanation = explain(event_store.read_run(run_id), now=settings.now())
        running = explanation.status == "running"
        gone, working = run_owner(event_store, run_id, settings.now()) if running else (None, None)
    output = Output()
    if as_json:
        output.json(
            {
                "run_id": explanation.run_id,
                "agent": explanation.agent,
                "status": explanation.status,
                "headline": explanation.headline,
                "statements": [
                    {"section": s.section, "text": s.text, "seqs": list(s.seqs)}
                    for s in explanation.statements
                ],
                "owner_gone": gone,
                "owner_working": working,
            }
        )
    else:
        output.explanation(explanation)
        if gone is not None:
            output.line()
            output.line(f"The run is not going on: {gone}.", "warn")
        elif working is not None:
            output.line()
            output.line(f"The run is going on: {working}.", "accent")


cli.add_command(export_command)
cli.add_command(report_command)
cli.add_command(otel_group)
cli.add_command(import_command)
cli.add_command(db_group)
cli.add_command(verify_command)
cli.add_command(checkpoint_command)

cli.add_command(replay_command)
cli.add_command(run_command)
cli.add_command(worker_command)
cli.add_command(submit_command)
cli.add_command(cancel_command)
cli.add_command(resume_command)


def main() -> None:
    """The ``executus`` console script."""
    cli(prog_name="executus")
