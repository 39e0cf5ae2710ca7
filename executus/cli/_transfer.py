"""Commands that move runs and manage the database: ``export``, ``import``, ``db upgrade|current``."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import click

from executus._errors import RunNotFoundError
from executus.cli._common import CliError, Settings, db_option, opened, write_atomically
from executus.cli._render import Cell, Output
from executus.cli._store import resolve_run_id
from executus.cli._terminal import echo

__all__ = ["db_group", "export_command", "import_command"]


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


@click.command("export", short_help="Export a run as a cassette (JSON Lines).")
@db_option
@click.argument("run")
@click.option(
    "-o",
    "--output",
    "path",
    type=click.Path(path_type=Path, allow_dash=True),
    help="Write the cassette to this file (default: standard output).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Export a run that fails verification, with the failures recorded in the cassette's header.",
)
@click.option(
    "--evidence",
    is_flag=True,
    help="Add the run's ledger seal, its inclusion proof and a signed checkpoint (needs a signer key).",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --evidence: the signer key file (default: $EXECUTUS_CHECKPOINT_KEY_FILE or _KEY).",
)
@click.pass_context
def export_command(
    ctx: click.Context, run: str, path: Path | None, force: bool, evidence: bool, key_file: Path | None
) -> None:
    """Export a run as a cassette: JSON Lines with a header, its events and its blobs.

    RUN is a run id, or a prefix of one that no other run shares. The run is verified first and
    a run that fails is refused (exit 1) unless --force. The cassette imports into any database
    with `executus import`, and is byte-for-byte the same each time.
    """
    from executus.cli._audit import load_signer, verify_for_export
    from replay._evidence import Evidence
    from replay.cassette import write_cassette

    settings = ctx.ensure_object(Settings)
    signer = load_signer(key_file) if evidence else None
    to_stdout = path is None or str(path) == "-"
    if to_stdout and sys.stdout.isatty():
        # A cassette is data holding untrusted text as it was recorded: not for a terminal.
        raise CliError("a cassette is not for a terminal: write it to a file with -o FILE, or pipe it")
    buffer = io.StringIO()
    with opened(settings, read_only=True) as event_store:
        run_id = resolve_run_id(event_store, run)
        report = verify_for_export(event_store, run_id)
        failures = [str(finding) for finding in report.findings] if report is not None else []
        if failures and not force:
            echo(f"error: refusing to export run {run_id}: {failures[0]}", err=True)
            echo(
                f"({len(failures)} found; `executus verify {run_id}` lists them, "
                "--force exports the run with them recorded in the header)",
                err=True,
            )
            ctx.exit(1)
        proof = None
        if signer is not None:
            from store import SqlStore, run_evidence

            if not isinstance(event_store, SqlStore):
                raise CliError("--evidence needs a SQL database")
            found = run_evidence(event_store, run_id, signer)
            proof = Evidence(
                leaf_index=found.seal.index,
                last_seq=found.seal.last_seq,
                head_hash=found.seal.head_hash,
                status=found.seal.status,
                inclusion=[base64.b64encode(node).decode() for node in found.inclusion],
                checkpoint=found.checkpoint,
            )
        write_cassette(event_store, run_id, buffer, evidence=proof, verification_failures=failures)
    text = buffer.getvalue()
    if path is None or to_stdout:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_atomically(path, text)
    lines = text.count("\n")
    note = f", with {len(failures)} verification failures recorded" if failures else ""
    echo(f"exported run {run_id} ({lines} lines{note}) to {path}", err=True)


@click.command("import", short_help="Import a run from a cassette.")
@db_option
@click.argument("file", type=click.Path(path_type=Path, allow_dash=True))
@click.pass_obj
def import_command(settings: Settings, file: Path) -> None:
    """Import a run from a cassette made by `executus export` (FILE may be - for stdin).

    The run keeps its id, events and hashes. A run that already exists is left alone if it is
    identical and refused if it differs.
    """
    from replay.cassette import import_cassette, read_cassette

    try:
        # Bytes, decoded here: line ends reach read_cassette as written, as `replay` reads them.
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        text = data.decode("utf-8")
    except OSError as error:
        raise CliError(f"cannot read {file}: {_reason(error)}") from None
    except UnicodeDecodeError as error:
        raise CliError(f"cannot read {file}: not UTF-8 text (byte {error.start})") from None
    cassette = read_cassette(io.StringIO(text, newline=""))
    with opened(settings) as event_store:
        try:
            existed = event_store.get_run(cassette.run_id).run_id == cassette.run_id
        except RunNotFoundError:
            existed = False
        run_id = import_cassette(event_store, cassette)
        where = event_store.display_url
    if existed:
        echo(f"run {run_id} is already in {where}, identical; nothing to do")
    else:
        echo(f"imported run {run_id} ({len(cassette.events)} events, {cassette.header.status}) into {where}")


@click.group("db", short_help="Show or upgrade the database schema.")
@db_option
def db_group() -> None:
    """Manage the database schema (Alembic migrations) of the configured database."""


def _url(settings: Settings) -> str:
    import store as sql_store

    return settings.db_url or sql_store.default_url()


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL, None for other databases and in-memory SQLite."""
    if not url.startswith("sqlite") or "///" not in url or ":memory:" in url:
        return None
    return Path(url.split("///", 1)[1].split("?", 1)[0])


@db_group.command(short_help="Migrate the database to the newest schema.")
@db_option
@click.pass_obj
def upgrade(settings: Settings) -> None:
    """Migrate the database to the newest schema (creating it if it is new)."""
    import store as sql_store

    url = _url(settings)
    path = _sqlite_file(url)
    if path is not None and url == sql_store.default_url():
        sql_store.make_default_directory()  # the default file's directory may be new
    before = sql_store.current_revision(url)
    head = sql_store.head_revision()
    if before == head:
        echo(f"{sql_store.display_url(url)} is already at the newest schema revision {head}")
        return
    sql_store.upgrade(url)
    echo(f"{sql_store.display_url(url)}: schema revision {before or 'none'} → {head}")


@db_group.command(short_help="Show the database, its file and schema revision.")
@db_option
@click.pass_obj
def current(settings: Settings) -> None:
    """Show which database is configured, where its file is, and its schema revision."""
    import store as sql_store

    url = _url(settings)
    output = Output()
    path = _sqlite_file(url)
    exists = path is None or path.exists()
    revision = sql_store.current_revision(url) if exists else None  # reading would create the file
    head = sql_store.head_revision()
    output.cells([Cell("database", "quiet"), Cell(sql_store.display_url(url), "accent")])
    if path is not None:
        note = "" if exists else " (not created yet: any command creates it)"
        output.cells([Cell("file    ", "quiet"), Cell(f"{path}{note}")])
    if revision == head:
        state = Cell(f"{revision} (newest)", "good")
    elif revision is None:
        state = Cell("none: a new database, created on first use", "warn")
    elif not sql_store.is_known_revision(revision):
        state = Cell(
            f"{revision}, newer than this executus (which knows up to {head}): upgrade executus", "bad"
        )
    else:
        state = Cell(f"{revision}, behind {head}: run `executus db upgrade`", "bad")
    output.cells([Cell("revision", "quiet"), state])
