"""``executus replay``: replay a stored run or a cassette and report the first divergence.

Exit codes: 0 the replay is identical (or a what-if report was made), 1 it diverged (the
report says where), 2 bad input: no such run or file, a malformed cassette, an agent or critic
that cannot be imported. Errors are one line on stderr.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from executus import Agent, Critic, ExecutusError
from executus.cli._common import (
    EXIT_INTERRUPTED,
    CliError,
    Settings,
    db_option,
    load_object,
    one_line,
    opened,
)
from executus.cli._options import (
    FiniteFloat,
    limit_option,
    parse_when,
    select_runs,
    status_option,
    time_options,
)
from executus.cli._render import Cell, Output, status_cell
from executus.cli._report import divergence_view, write_report
from executus.cli._store import resolve_run_id
from executus.cli._terminal import echo
from executus.report import DivergenceView
from executus.storage import RunQuery
from replay._diff import FieldDifference
from replay._replayer import Replayer
from replay._result import ReplayResult, WhatIfReport
from replay.cassette import load_cassette

__all__ = ["load_object", "replay_command"]  # load_object: still importable from here (executus run)


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


NO_CRITIC: Final = "none"
"""``--what-if-critic none``: replay with no critic at all."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """What each replay does: the agent to use, and the critic to try instead (if any)."""

    replayer: Callable[[Any], Replayer]
    agent: Agent | None
    critic: Critic | None
    no_critic: bool

    @property
    def what_if(self) -> bool:
        return self.critic is not None or self.no_critic

    def run(self, blobs: Any, events: Any) -> ReplayResult | WhatIfReport:
        replayer = self.replayer(blobs)
        if self.no_critic:
            return replayer.what_if(events, None)
        return replayer.replay_run(events, agent=self.agent, what_if_critic=self.critic)


def _document(outcome: ReplayResult | WhatIfReport) -> dict[str, Any]:
    """The JSON of a replay; a what-if without any critic has only its ``what_if`` part."""
    return {"what_if": _what_if_json(outcome)} if isinstance(outcome, WhatIfReport) else result_json(outcome)


def _report(outcome: ReplayResult | WhatIfReport) -> str:
    return str(outcome) if isinstance(outcome, WhatIfReport) else outcome.report()


def _verdict(outcome: ReplayResult | WhatIfReport) -> str:
    """One cell of ``replay --all``'s table: identical, or what changed."""
    what_if = outcome if isinstance(outcome, WhatIfReport) else outcome.what_if
    if what_if is not None:
        return str(what_if).splitlines()[-1].removeprefix("  => ") if what_if.changed else "identical"
    divergence = outcome.divergence if isinstance(outcome, ReplayResult) else None
    if divergence is None:
        return "identical"
    kinds = f"{divergence.expected_kind or '-'} / {divergence.actual_kind or '-'}"
    return f"diverged at seq {divergence.seq} ({kinds})"


def _replay(
    settings: Settings, target: str, plan: _Plan, report: Path | None = None
) -> ReplayResult | WhatIfReport:
    """Replay one run or cassette; with ``report``, also write the recorded run's HTML report,
    with the first divergence side by side."""
    path = Path(target)
    if path.suffix == ".jsonl" or path.is_file():
        if not path.is_file():
            raise CliError(f"no cassette file {target}")
        cassette = load_cassette(path)
        outcome = plan.run(None, cassette)
        if report is not None:
            write_report(report, list(cassette.events), divergence=_divergence(outcome))
        return outcome
    with opened(settings, read_only=True) as event_store:
        run_id = resolve_run_id(event_store, target)
        events = event_store.read_run(run_id)
        outcome = plan.run(event_store, events)
        if report is not None:
            write_report(report, events, event_store=event_store, divergence=_divergence(outcome))
        return outcome


def _divergence(outcome: ReplayResult | WhatIfReport) -> DivergenceView | None:
    return divergence_view(outcome) if isinstance(outcome, ReplayResult) else None


def _replay_all(
    settings: Settings, plan: _Plan, query: RunQuery, statuses: tuple[str, ...], as_json: bool
) -> int:
    """Replay every stored run ``query`` selects and print a summary.

    With ``--agent``, only that agent's runs (the others are counted as skipped). Ctrl-C stops
    early and still prints what was replayed.

    Returns:
        The exit code: 130 if interrupted, 1 if a run diverged (and no critic was tried), else 0.
    """
    rows: list[list[Cell]] = []
    documents: list[dict[str, Any]] = []
    failed, interrupted = 0, False
    with opened(settings, read_only=True) as event_store:
        limit, query = query.limit, dataclasses.replace(query, limit=None)
        summaries, _ = select_runs(event_store, query, statuses)
        selected = [s for s in summaries if plan.agent is None or s.agent == plan.agent.name][:limit]
        skipped = sum(1 for s in summaries if plan.agent is not None and s.agent != plan.agent.name)
        try:
            with click.progressbar(
                selected,
                label="replaying",
                file=sys.stderr,
                hidden=as_json or not selected or not sys.stderr.isatty(),
            ) as progress:
                for summary in progress:
                    try:
                        outcome = plan.run(event_store, event_store.read_run(summary.run_id))
                    except ExecutusError as error:
                        verdict, document = (
                            f"error: {one_line(error)}",
                            {"run_id": summary.run_id, "error": one_line(error)},
                        )
                    else:
                        verdict, document = _verdict(outcome), _document(outcome)
                    failed += verdict != "identical"
                    rows.append(
                        [
                            Cell(summary.run_id),
                            Cell(summary.agent),
                            status_cell(summary.status),
                            Cell(verdict),
                        ]
                    )
                    documents.append(document)
        except KeyboardInterrupt:  # Ctrl-C: keep what was replayed so far
            interrupted = True
    output = Output()
    if as_json:
        output.json(documents)
    else:
        if rows:
            output.table(_COLUMNS, rows)
        ended = f"interrupted: {len(rows)} of {len(selected)}" if interrupted else str(len(rows))
        summary_line = f"{ended} runs replayed: {len(rows) - failed} identical, {failed} not"
        if skipped and plan.agent is not None:
            summary_line += f"; skipped {skipped} runs of agents other than {plan.agent.name}"
        output.line(summary_line)
    if interrupted:
        return EXIT_INTERRUPTED
    return 1 if failed and not plan.what_if else 0


_COLUMNS = ("RUN", "AGENT", "STATUS", "REPLAY")


@click.command("replay", short_help="Replay a run or a cassette; report the first divergence.")
@db_option
@click.argument("target", metavar="RUN|CASSETTE", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every stored run (see --status, --limit).")
@status_option("With --all: only runs that ended so.")
@time_options("With --all: only runs")
@limit_option(None, "With --all: at most this many runs, newest first.")
@click.option(
    "--agent",
    "agent_spec",
    metavar="MODULE:ATTR",
    help="Replay this (current) agent definition; with --all, only the runs of an agent of its name.",
)
@click.option(
    "--what-if-critic",
    "critic_spec",
    metavar="MODULE:ATTR|none",
    help="Run this critic (or none) live instead and report whether and when it would have acted.",
)
@click.option(
    "--time-tolerance",
    type=FiniteFloat(min=0),
    default=0.01,
    show_default=True,
    help="Seconds by which replayed times may differ from recorded ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the run's HTML report, with the first divergence side by side.",
)
@click.pass_context
def replay_command(
    ctx: click.Context,
    target: str | None,
    replay_all: bool,
    statuses: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int | None,
    agent_spec: str | None,
    critic_spec: str | None,
    time_tolerance: float,
    as_json: bool,
    report_path: Path | None,
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
    if not replay_all and (statuses or since is not None or until is not None or limit is not None):
        raise CliError("--status, --since, --until and --limit go with --all")
    if replay_all and report_path is not None:
        raise CliError("--report goes with one RUN or CASSETTE (for every run: executus report --all)")
    no_critic = critic_spec is not None and critic_spec.strip().lower() == NO_CRITIC
    if no_critic and agent_spec is not None:
        raise CliError("--what-if-critic none replays the recorded agent: leave out --agent")
    try:
        plan = _Plan(
            lambda blobs: Replayer(blobs=blobs, time_tolerance=time_tolerance),
            load_object(agent_spec, Agent, "an Agent") if agent_spec else None,
            load_object(critic_spec, Critic, "a Critic") if critic_spec and not no_critic else None,
            no_critic,
        )
        if replay_all:
            query = RunQuery(
                since=parse_when("--since", since, settings.now()) if since else None,
                until=parse_when("--until", until, settings.now()) if until else None,
                limit=limit,
            )
            ctx.exit(_replay_all(settings, plan, query, statuses, as_json))
        assert target is not None
        outcome = _replay(settings, target, plan, report_path)
    except ExecutusError as error:
        raise CliError(one_line(error)) from None
    output = Output()
    if as_json:
        output.json(_document(outcome))
    else:
        echo(_report(outcome))
    if isinstance(outcome, ReplayResult) and outcome.divergence is not None and not plan.what_if:
        ctx.exit(1)
