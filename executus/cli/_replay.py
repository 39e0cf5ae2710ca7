"""``executus replay``: replay a stored run or a cassette and report the first divergence.

Exit codes: 0 the replay is identical (or a what-if report was made), 1 it diverged (the
report says where), 2 bad input: no such run or file, a malformed cassette, an agent or critic
that cannot be imported. Errors are one line on stderr.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from executus import Agent, Critic, ExecutusError, RunQuery
from executus.cli._common import CliError, Settings, db_option, one_line, opened, parse_since
from executus.cli._store import resolve_run_id
from replay._diff import FieldDifference
from replay._replayer import Replayer
from replay._result import ReplayResult, WhatIfReport
from replay.cassette import load_cassette

__all__ = ["replay_command"]

STATUSES = ("ok", "error", "timeout", "cancelled", "killed", "running")

T = TypeVar("T")


def load_object(spec: str, expected: type[T] | tuple[type, ...], what: str) -> T:
    """Import ``module:attr`` (the current directory is importable); call it if it is a factory.

    Raises:
        CliError: it cannot be imported, or is not what the option needs.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CliError(f"{what} must be given as module:attribute, not {spec!r}")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except Exception as error:
        raise CliError(f"cannot load {what} {spec}: {one_line(error)}") from None
    if not isinstance(value, expected) and callable(value):
        try:
            value = value()
        except Exception as error:
            raise CliError(f"cannot make {what} from {spec}: {one_line(error)}") from None
    if not isinstance(value, expected):
        kind = type(value).__name__
        raise CliError(f"{spec} is {'an' if kind[0].lower() in 'aeiou' else 'a'} {kind}, not {what}")
    return value  # type: ignore[return-value]


def _differences(differences: tuple[FieldDifference, ...]) -> list[dict[str, Any]]:
    return [{"path": d.path, "expected": d.expected, "actual": d.actual} for d in differences]


def _what_if_json(report: WhatIfReport) -> dict[str, Any]:
    def actions(report_actions: Any) -> list[dict[str, Any]]:
        return [{"decision": a.decision, "offset": a.offset, "reason": a.reason} for a in report_actions]

    return {
        "critic": report.critic.model_dump(mode="json") if report.critic else None,
        "recorded": {
            "status": report.recorded_status,
            "duration": report.recorded_duration,
            "decisions": actions(report.recorded_decisions),
        },
        "what_if": {
            "status": report.replayed_status,
            "duration": report.replayed_duration,
            "decisions": actions(report.replayed_decisions),
        },
        "killed_at": report.killed_at,
        "changed": report.changed,
    }


def result_json(result: ReplayResult) -> dict[str, Any]:
    """A replay result as a JSON document (what ``--json`` prints)."""
    divergence = result.divergence
    return {
        "run_id": result.run_id,
        "identical": result.identical,
        "events": {"recorded": len(result.recorded), "replayed": len(result.replayed)},
        "divergence": None
        if divergence is None
        else {
            "seq": divergence.seq,
            "expected_kind": divergence.expected_kind,
            "actual_kind": divergence.actual_kind,
            "differences": _differences(divergence.differences),
            "request_differences": _differences(divergence.request_differences),
        },
        "agent_changes": _differences(result.agent_changes),
        "notes": list(result.notes),
        "what_if": _what_if_json(result.what_if) if result.what_if else None,
        "report": result.report(),
    }


def _replay(
    settings: Settings, target: str, replayer_for: Callable[[Any], Replayer], **options: Any
) -> ReplayResult:
    path = Path(target)
    if path.suffix == ".jsonl" or path.is_file():
        if not path.is_file():
            raise CliError(f"no cassette file {target}")
        return replayer_for(None).replay_run(load_cassette(path), **options)
    with opened(settings) as event_store:
        run_id = resolve_run_id(event_store, target)
        return replayer_for(event_store).replay_run(event_store.read_run(run_id), **options)


def _replay_all(
    settings: Settings,
    replayer_for: Callable[[Any], Replayer],
    query: RunQuery,
    as_json: bool,
    **options: Any,
) -> bool:
    """Replay every stored run ``query`` selects; print a summary; True if all were identical."""
    rows: list[tuple[str, str, str, str]] = []
    documents: list[dict[str, Any]] = []
    with opened(settings) as event_store:
        summaries = event_store.list_runs(query)
        replayer = replayer_for(event_store)
        with click.progressbar(
            summaries, label="replaying", file=sys.stderr, hidden=as_json or not summaries
        ) as progress:
            for summary in progress:
                try:
                    result = replayer.replay_run(event_store.read_run(summary.run_id), **options)
                except ExecutusError as error:
                    rows.append((summary.run_id, summary.agent, summary.status, f"error: {one_line(error)}"))
                    documents.append({"run_id": summary.run_id, "error": one_line(error)})
                    continue
                outcome = "identical"
                if result.what_if is not None:
                    outcome = str(result.what_if).splitlines()[-1].removeprefix("  => ")
                    outcome = "identical" if not result.what_if.changed else outcome
                elif result.divergence is not None:
                    divergence = result.divergence
                    outcome = (
                        f"diverged at seq {divergence.seq} "
                        f"({divergence.expected_kind or '-'} / {divergence.actual_kind or '-'})"
                    )
                rows.append((summary.run_id, summary.agent, summary.status, outcome))
                documents.append(result_json(result))
    failed = sum(1 for row in rows if row[3] != "identical")
    if as_json:
        click.echo(json.dumps(documents, indent=2, ensure_ascii=False))
        return failed == 0
    widths = [max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(_COLUMNS)]
    for line in (_COLUMNS, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    click.echo(f"{len(rows)} runs replayed: {len(rows) - failed} identical, {failed} not")
    return failed == 0


_COLUMNS = ("RUN", "AGENT", "STATUS", "REPLAY")


@click.command("replay", short_help="Replay a run or a cassette; report the first divergence.")
@db_option
@click.argument("target", metavar="RUN|CASSETTE", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every stored run (see --status, --limit).")
@click.option("--status", type=click.Choice(STATUSES), help="With --all: only runs that ended so.")
@click.option(
    "--since", metavar="WHEN", help="With --all: only runs started since WHEN (2026-05-01, 2h, 3d)."
)
@click.option("--limit", type=click.IntRange(min=1), help="With --all: at most this many runs, newest first.")
@click.option("--agent", "agent_spec", metavar="MODULE:ATTR", help="Replay this (current) agent definition.")
@click.option(
    "--what-if-critic",
    "critic_spec",
    metavar="MODULE:ATTR",
    help="Run this critic live instead and report whether and when it would have acted.",
)
@click.option(
    "--time-tolerance",
    type=click.FloatRange(min=0),
    default=0.01,
    show_default=True,
    help="Seconds by which replayed times may differ from recorded ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def replay_command(
    ctx: click.Context,
    target: str | None,
    replay_all: bool,
    status: str | None,
    since: str | None,
    limit: int | None,
    agent_spec: str | None,
    critic_spec: str | None,
    time_tolerance: float,
    as_json: bool,
) -> None:
    """Replay a recorded run (RUN id or prefix, or a CASSETTE file) and report the first divergence.

    The recorded model replies and tool results are served on a virtual clock (no model or
    tool is called), the recorded cancels and steer messages are re-applied, and the new
    events are compared with the recorded ones. Exit 0: identical; 1: diverged; 2: bad input.
    With --all, every stored run is replayed and a summary table printed.
    """
    settings = ctx.ensure_object(Settings)
    if replay_all == (target is not None):
        raise CliError("give one RUN or CASSETTE, or --all")
    if not replay_all and (status is not None or since is not None or limit is not None):
        raise CliError("--status, --since and --limit go with --all")
    try:
        agent = load_object(agent_spec, Agent, "an Agent") if agent_spec else None
        critic = load_object(critic_spec, Critic, "a Critic") if critic_spec else None
        if replay_all:
            try:
                started = parse_since(since, settings.now()) if since else None
            except click.BadParameter as error:
                raise CliError(f"--since: {error.message}") from None
            query = RunQuery(status=status, since=started, limit=limit)  # type: ignore[arg-type]
            identical = _replay_all(
                settings,
                lambda blobs: Replayer(blobs=blobs, time_tolerance=time_tolerance),
                query,
                as_json,
                agent=agent,
                what_if_critic=critic,
            )
            if not identical and critic is None:
                ctx.exit(1)
            return
        assert target is not None
        result = _replay(
            settings,
            target,
            lambda blobs: Replayer(blobs=blobs, time_tolerance=time_tolerance),
            agent=agent,
            what_if_critic=critic,
        )
    except ExecutusError as error:
        raise CliError(one_line(error)) from None
    if as_json:
        click.echo(json.dumps(result_json(result), indent=2, ensure_ascii=False))
    else:
        click.echo(result.report())
    if result.divergence is not None and critic is None:
        ctx.exit(1)
