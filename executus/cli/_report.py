"""``executus report``: a run as one self-contained HTML file, or every run and an index page.

Also what ``replay --report`` writes: the recorded run's report with the first divergence.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import click

from executus._audit import VerifyReport
from executus._errors import BlobNotFoundError
from executus._events import Event
from executus._store import GENESIS_HASH, Blob, EventStore, RunQuery, chain_hash, event_json
from executus.cli._common import CliError, Settings, db_option, opened, write_atomically
from executus.cli._options import limit_option, parse_when, select_runs, status_option, time_options
from executus.cli._store import resolve_run_id
from executus.cli._terminal import echo
from executus.report import DivergenceView, FieldChange, Integrity, blob_hashes, render_index, render_report
from replay._diff import FieldDifference
from replay._result import ReplayResult

__all__ = ["divergence_view", "report_command", "write_report"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def report_filename(run_id: str) -> str:
    """A file name for a run's report that is safe on every file system and in an ``href``."""
    safe = _UNSAFE.sub("_", run_id).lstrip(".") or "run"
    if safe != run_id:  # two ids that sanitise alike must not share a file
        safe += "-" + hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{safe}.html"


def _blobs(event_store: EventStore, events: list[Event]) -> dict[str, Blob]:
    found = {}
    for sha256 in blob_hashes(events):
        try:
            found[sha256] = event_store.get_blob(sha256)
        except BlobNotFoundError:
            continue  # the report names what is missing
    return found


def integrity_of(event_store: EventStore, run_id: str, events: list[Event]) -> Integrity:
    """The report's integrity verdict on a run.

    On a SQL database it is ``verify``'s (the same checks as ``executus verify RUN``: each
    row's hash, the runs row against the events, the ledger's seals). Any other store cannot
    be verified so; there the page says that only the events' chain was checked against the
    head recorded for the run.
    """
    from store import SqlStore, verify_run

    if isinstance(event_store, SqlStore):
        return _verdict(verify_run(event_store, run_id))
    return _chain_only(event_store, run_id, events)


def _verdict(report: VerifyReport) -> Integrity:
    events = f"{report.events} event{'s' if report.events != 1 else ''}"
    if report.ok:
        return Integrity(
            True,
            f"executus verify found nothing wrong: the hash chain over its {events}, "
            "its runs row and its ledger seals check out.",
        )
    findings = tuple(str(finding) for finding in report.findings)
    count = f"{len(findings)} problem{'s' if len(findings) != 1 else ''}"
    return Integrity(False, f"executus verify found {count}; the first: {findings[0]}", findings)


def _chain_only(event_store: EventStore, run_id: str, events: list[Event]) -> Integrity:
    caveat = (
        " Only the hash chain was checked: this store is not a SQL database, so "
        "executus verify (runs row, ledger seals) cannot run on it."
    )
    head = GENESIS_HASH
    for event in events:
        head = chain_hash(head, event_json(event))
    recorded = event_store.get_run(run_id).head_hash
    if head == recorded:
        return Integrity(
            True,
            f"The hash chain over its {len(events)} events ends at the recorded head {head[:16]}…." + caveat,
        )
    return Integrity(
        False,
        "The events do not hash to the head recorded for the run." + caveat,
        (f"Recomputed head {head[:16]}…, recorded head {recorded[:16]}….",),
    )


def _changes(differences: tuple[FieldDifference, ...]) -> tuple[FieldChange, ...]:
    return tuple(FieldChange(d.path, d.expected, d.actual) for d in differences)


def divergence_view(result: ReplayResult) -> DivergenceView | None:
    """The report's view of a replay's first divergence (None when the replay was identical)."""
    divergence = result.divergence
    if divergence is None:
        return None
    return DivergenceView(
        seq=divergence.seq,
        expected=divergence.expected.model_dump(mode="json") if divergence.expected else None,
        actual=divergence.actual.model_dump(mode="json") if divergence.actual else None,
        differences=_changes(divergence.differences),
        request_differences=_changes(divergence.request_differences),
    )


def write_report(
    path: Path,
    events: list[Event],
    *,
    event_store: EventStore | None = None,
    divergence: DivergenceView | None = None,
    linked: frozenset[str] = frozenset(),
) -> None:
    """Render one run's report into ``path``.

    Args:
        path: the HTML file to write.
        events: the run's log.
        event_store: where its blobs and summary are (None for a cassette: no images, no
            integrity check); a SQL store's run is checked by ``verify``.
        divergence: a replay's first divergence to show.
        linked: the runs whose reports sit beside it (``report --all``), to link to.
    """
    blobs = _blobs(event_store, events) if event_store is not None else {}
    integrity = integrity_of(event_store, events[0].run_id, events) if event_store is not None else None
    html = render_report(
        events,
        blobs=blobs,
        integrity=integrity,
        divergence=divergence,
        run_href=lambda run_id: report_filename(run_id) if run_id in linked else None,
    )
    write_atomically(path, html)


@click.command("report", short_help="Write a run's self-contained HTML report.")
@db_option
@click.argument("run", required=False)
@click.option(
    "--all", "all_runs", is_flag=True, help="Every run (see --status, --since, --limit), and an index."
)
@status_option("With --all: only runs that ended so.")
@time_options("With --all: only runs")
@limit_option(None, "With --all: at most this many runs, newest first.")
@click.option(
    "-o",
    "--output",
    "path",
    type=click.Path(path_type=Path),
    required=True,
    help="The HTML file to write (with --all: the directory).",
)
@click.pass_obj
def report_command(
    settings: Settings,
    run: str | None,
    all_runs: bool,
    statuses: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int | None,
    path: Path,
) -> None:
    """Write a run's report: one HTML file, readable offline, that loads nothing and runs no script.

    It shows why the run ended, a timeline of model steps and tool calls, the images and
    artifacts, and every event's payload. RUN is a run id or a unique prefix. With --all, -o
    names a directory that receives one report per run and an index.html linking them.
    """
    if all_runs == (run is not None):
        raise CliError("give one RUN, or --all")
    if not all_runs and (statuses or since is not None or until is not None or limit is not None):
        raise CliError("--status, --since, --until and --limit go with --all")
    query = RunQuery(
        since=parse_when("--since", since, settings.now()) if since else None,
        until=parse_when("--until", until, settings.now()) if until else None,
        limit=limit,
    )
    if not all_runs:
        if path.is_dir():
            raise CliError(f"{path} is a directory: give the HTML file to write")
        with opened(settings, read_only=True) as event_store:
            run_id = resolve_run_id(event_store, run or "")
            write_report(path, event_store.read_run(run_id), event_store=event_store)
        echo(f"wrote the report of run {run_id} to {path}", err=True)
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CliError(f"cannot create {path}: {error.strerror or type(error).__name__}") from None
    with opened(settings, read_only=True) as event_store:
        summaries, _ = select_runs(event_store, query, statuses)
        written = frozenset(summary.run_id for summary in summaries)
        for summary in summaries:
            events = event_store.read_run(summary.run_id)
            target = path / report_filename(summary.run_id)
            write_report(target, events, event_store=event_store, linked=written)
    hrefs = {summary.run_id: report_filename(summary.run_id) for summary in summaries}
    write_atomically(path / "index.html", render_index(summaries, hrefs))
    reports = f"{len(summaries)} report{'s' if len(summaries) != 1 else ''}"
    echo(f"wrote {reports} and index.html to {path}", err=True)
