"""``executus otel export``: send recorded runs to an OpenTelemetry backend, or to a file.

The spans are generated from the log (see :mod:`executus.otel`), with ids derived from run ids
and seqs: exporting a run again, or a run that was replayed or resumed, adds no duplicate.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import click

from executus._errors import ExecutusError
from executus._store import RunQuery
from executus.cli._common import CliError, Settings, db_option, one_line, opened
from executus.cli._options import parse_when, select_runs, status_option, time_options
from executus.cli._store import resolve_run_id
from executus.cli._terminal import echo

__all__ = ["otel_group"]


@contextlib.contextmanager
def _sdk_complaints() -> Iterator[list[str]]:
    """Collect what the OpenTelemetry SDK logs (its retries, its failures) instead of printing it:
    the command reports one line, with the last complaint as the reason."""
    complaints: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            complaints.append(one_line(Exception(record.getMessage()))[:240])

    sdk = logging.getLogger("opentelemetry")
    handler, propagate = Collect(logging.WARNING), sdk.propagate
    sdk.addHandler(handler)
    sdk.propagate = False
    try:
        yield complaints
    finally:
        sdk.removeHandler(handler)
        sdk.propagate = propagate


@click.group("otel", short_help="OpenTelemetry export of recorded runs.")
def otel_group() -> None:
    """OpenTelemetry export of recorded runs (needs the executus[otel] extra)."""


@otel_group.command("export", short_help="Send runs' spans to an OTLP endpoint or a file.")
@db_option
@click.argument("run", required=False)
@status_option("With --since: only runs that ended so.")
@time_options("Every run")
@click.option(
    "--endpoint",
    metavar="URL",
    help="OTLP/HTTP traces endpoint, e.g. http://localhost:4318/v1/traces "
    "(default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4318).",
)
@click.option(
    "-o",
    "--output",
    "path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write OTLP/JSON lines to this file instead of sending them.",
)
@click.pass_obj
def export_spans(
    settings: Settings,
    run: str | None,
    statuses: tuple[str, ...],
    since: str | None,
    until: str | None,
    endpoint: str | None,
    path: Path | None,
) -> None:
    """Export a run (RUN id or unique prefix), or every run started --since WHEN, as OpenTelemetry spans.

    Spans follow the GenAI semantic conventions (invoke_agent, chat, execute_tool). Message
    content is left out unless OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.
    """
    if (run is None) == (since is None):
        raise CliError("give one RUN, or --since WHEN")
    if run is not None and (statuses or until is not None):
        raise CliError("--status and --until go with --since")
    if endpoint is not None and path is not None:
        raise CliError("give --endpoint or -o, not both")
    try:
        from opentelemetry.sdk.trace.export import SpanExporter

        from executus.otel import OtlpJsonFileExporter, export_runs
    except ImportError:
        raise CliError("OpenTelemetry export needs the SDK: pip install 'executus[otel]'") from None
    query = RunQuery(
        since=parse_when("--since", since, settings.now()) if since else None,
        until=parse_when("--until", until, settings.now()) if until else None,
        limit=None,
    )
    with opened(settings, read_only=True) as event_store:
        if run is not None:
            run_ids = [resolve_run_id(event_store, run)]
        else:
            run_ids = [summary.run_id for summary in select_runs(event_store, query, statuses)[0]]
        exporter: SpanExporter
        if path is not None:
            try:
                exporter = OtlpJsonFileExporter.open(path)
            except OSError as error:
                raise CliError(f"cannot write {path}: {error.strerror or type(error).__name__}") from None
            where = str(path)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint, timeout=10)
            # The URL it resolved from the environment, to say where the spans went.
            where = str(getattr(exporter, "_endpoint", endpoint or "the OTLP endpoint"))
        with _sdk_complaints() as complaints:
            try:
                count = export_runs(event_store, run_ids, exporter)
            except ExecutusError as error:
                why = f": {complaints[0]}" if complaints else ""  # the first says why; the rest retry
                raise CliError(f"{one_line(error)}, sending to {where}{why}") from None
            finally:
                exporter.shutdown()
    runs = f"{len(run_ids)} run{'s' if len(run_ids) != 1 else ''}"
    echo(f"exported {count} spans of {runs} to {where}", err=True)
