"""Commands that prove what a database holds: ``verify`` and ``checkpoint``.

Keys (see :mod:`executus._notekey`): the signer key is read from ``--key FILE``,
``$EXECUTUS_CHECKPOINT_KEY_FILE`` or ``$EXECUTUS_CHECKPOINT_KEY`` (the key's text), never from
the database; the verifier key from ``--verifier`` or ``$EXECUTUS_CHECKPOINT_VERIFIER`` (the
key's text, or a file holding it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from executus._audit import Finding, VerifyReport
from executus._checkpoint import CheckpointError
from executus._errors import RunNotFoundError
from executus._text import terminal_text
from executus.cli._common import CliError, Settings, db_option, opened, write_atomically
from executus.cli._options import parse_when
from executus.cli._render import Output
from executus.cli._store import BrowsableStore, resolve_run_id

if TYPE_CHECKING:
    from executus._notekey import NoteSigner, NoteVerifier
    from store import SqlStore

__all__ = ["checkpoint_command", "load_signer", "verify_command", "verify_for_export"]

ENV_KEY: Final = "EXECUTUS_CHECKPOINT_KEY"
ENV_KEY_FILE: Final = "EXECUTUS_CHECKPOINT_KEY_FILE"
ENV_VERIFIER: Final = "EXECUTUS_CHECKPOINT_VERIFIER"
EXIT_CHECK_FAILED: Final = 1
_PROGRESS_FROM: Final = 50
"""Show a progress bar when verifying at least this many runs on a terminal."""


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot read {what} {path}: {error.strerror or type(error).__name__}") from None
    except UnicodeDecodeError:
        raise CliError(f"cannot read {what} {path}: not UTF-8 text") from None


def load_signer(key_file: Path | None) -> NoteSigner:
    """The checkpoint signer key: ``--key``, else ``$EXECUTUS_CHECKPOINT_KEY_FILE``, else
    ``$EXECUTUS_CHECKPOINT_KEY``.

    Raises:
        CliError: none is given, or it is not a signer key.
    """
    from executus._notekey import NoteSigner

    if key_file is None and os.environ.get(ENV_KEY_FILE):
        key_file = Path(os.environ[ENV_KEY_FILE])
    if key_file is not None:
        text = _read_text(key_file, "key file")
    elif os.environ.get(ENV_KEY):
        text = os.environ[ENV_KEY]
    else:
        raise CliError(
            f"a signing key is needed: --key FILE, or ${ENV_KEY_FILE} or ${ENV_KEY} "
            "(make one with: executus checkpoint --new-key NAME --key FILE)"
        )
    try:
        return NoteSigner.parse(text)
    except CheckpointError as error:
        raise CliError(f"the signing key is unusable: {error}") from None


def _load_verifier(value: str | None) -> NoteVerifier:
    from executus._notekey import NoteVerifier

    value = value or os.environ.get(ENV_VERIFIER)
    if not value:
        raise CliError(f"the ledger's verifier key is needed: --verifier KEY|FILE or ${ENV_VERIFIER}")
    text = value if "+" in value and not Path(value).exists() else _read_text(Path(value), "verifier key")
    try:
        return NoteVerifier.parse(text)
    except CheckpointError as error:
        raise CliError(f"the verifier key is unusable: {error}") from None


def _sql(event_store: BrowsableStore) -> SqlStore:
    from store import SqlStore

    if not isinstance(event_store, SqlStore):
        raise CliError("verification needs a SQL database")
    return event_store


def verify_for_export(event_store: BrowsableStore, run_id: str) -> VerifyReport | None:
    """The verification of a run about to be exported (None for a store that is not SQL)."""
    from store import SqlStore, verify_run

    return verify_run(event_store, run_id) if isinstance(event_store, SqlStore) else None


def _print_report(output: Output, report: VerifyReport, what: str, *, extra: Sequence[Finding] = ()) -> bool:
    findings = (*extra, *report.findings)
    if not findings:
        verified = f"{_count(report.runs, 'run')}, {_count(report.events, 'event')} verified"
        output.line(f"{what}: intact ({verified})", "good")
        return True
    for finding in findings:
        output.line(terminal_text(str(finding)), "bad")
    runs = {finding.run_id for finding in findings if finding.run_id is not None}
    checked = f"{_count(report.runs, 'run')}, {_count(report.events, 'event')} checked"
    output.line(
        f"{what}: {_count(len(findings), 'problem')} in {_count(len(runs), 'run')} ({checked})", "bad"
    )
    return False


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _report_json(report: VerifyReport, extra: Sequence[Finding] = ()) -> dict[str, Any]:
    findings = (*extra, *report.findings)
    return {
        "ok": not findings,
        "runs": report.runs,
        "events": report.events,
        "findings": [
            {"run_id": f.run_id, "seq": f.seq, "problem": f.problem, "detail": f.detail} for f in findings
        ],
    }


@contextmanager
def _progress(total_hint: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr when it is a terminal, else a callback that does nothing."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("verifying runs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("verify", total=total_hint)

        def advance(done: int, total: int) -> None:
            if total >= _PROGRESS_FROM:
                progress.update(task, completed=done, total=total)

        yield advance


@click.command("verify", short_help="Prove runs were not changed since they were recorded.")
@db_option
@click.argument("run", required=False)
@click.option("--all", "every", is_flag=True, help="Verify every run in the database, and the ledger.")
@click.option(
    "--since", metavar="WHEN", help="With --all: only runs started since WHEN (2026-05-01, 2h, 3d)."
)
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Verify every run, and prove the ledger still holds what this signed checkpoint vouches for.",
)
@click.option(
    "--bundle",
    "bundle_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Check an evidence bundle (export --evidence) offline, with no database.",
)
@click.option("--verifier", metavar="KEY|FILE", help=f"The ledger's verifier key (default: ${ENV_VERIFIER}).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_context
def verify_command(
    ctx: click.Context,
    run: str | None,
    every: bool,
    since: str | None,
    checkpoint_file: Path | None,
    bundle_file: Path | None,
    verifier: str | None,
    as_json: bool,
) -> None:
    """Recompute runs' hash chains from the stored rows, check each runs row against its events,
    and check the runs against the ledger's seals.

    Give one of RUN, --all, --checkpoint FILE or --bundle FILE. Exit 0 when everything is
    intact, 1 naming each run, its first bad seq and what is wrong, 2 for bad input.
    """
    settings = ctx.ensure_object(Settings)
    modes = [
        name
        for name, given in (
            ("RUN", run),
            ("--all", every),
            ("--checkpoint", checkpoint_file),
            ("--bundle", bundle_file),
        )
        if given
    ]
    if len(modes) != 1:
        raise CliError("give exactly one of RUN, --all, --checkpoint FILE or --bundle FILE")
    if since is not None and not (every or checkpoint_file):
        raise CliError("--since goes with --all or --checkpoint")
    output = Output()
    if bundle_file is not None:
        intact = _verify_bundle(output, bundle_file, _load_verifier(verifier), as_json)
    else:
        intact = _verify_database(output, settings, run, since, checkpoint_file, verifier, as_json)
    if not intact:
        ctx.exit(EXIT_CHECK_FAILED)


def _verify_bundle(output: Output, path: Path, verifier: NoteVerifier, as_json: bool) -> bool:
    from replay._bundle import verify_bundle

    report = verify_bundle(_read_text(path, "bundle"), verifier)
    if as_json:
        output.json(_report_json(report))
    else:
        _print_report(output, report, f"bundle {path}")
    return report.ok


def _verify_database(
    output: Output,
    settings: Settings,
    run: str | None,
    since: str | None,
    checkpoint_file: Path | None,
    verifier: str | None,
    as_json: bool,
) -> bool:
    from executus._notekey import open_checkpoint
    from store import verify_all, verify_checkpoint, verify_run

    checkpoint = None
    if checkpoint_file is not None:
        try:
            checkpoint = open_checkpoint(_read_text(checkpoint_file, "checkpoint"), _load_verifier(verifier))
        except CheckpointError as error:
            raise CliError(f"checkpoint {checkpoint_file}: {error}") from None
    since_time = parse_when("--since", since, settings.now()) if since else None
    extra: list[Finding] = []
    with opened(settings) as event_store:
        sql_store = _sql(event_store)
        where = event_store.display_url
        if run is not None:
            try:
                run_id = resolve_run_id(event_store, run)
            except RunNotFoundError:
                run_id = run  # no runs row: its events or its seal may still be there to report
            report, what = verify_run(sql_store, run_id), f"run {run_id}"
        else:
            with _progress(None) as advance:
                report = verify_all(sql_store, since=since_time, progress=advance)
            what = where
            if checkpoint is not None:
                extra = verify_checkpoint(sql_store, checkpoint)
                what = f"{where} against checkpoint {checkpoint_file} (size {checkpoint.size})"
    if as_json:
        output.json(_report_json(report, extra))
        return report.ok and not extra
    return _print_report(output, report, what, extra=extra)


@click.command("checkpoint", short_help="Write a signed checkpoint of the run ledger.")
@db_option
@click.option(
    "-o",
    "--output",
    "path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Write the checkpoint to this file (default: standard output).",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"The signer key file (default: ${ENV_KEY_FILE}, or the key itself in ${ENV_KEY}).",
)
@click.option(
    "--new-key",
    "new_key",
    metavar="NAME",
    help="Instead: make a new signer key named NAME (the ledger's origin, e.g. example.com/ledger), "
    "write it to --key FILE and print its verifier key.",
)
@click.pass_obj
def checkpoint_command(
    settings: Settings, path: Path | None, key_file: Path | None, new_key: str | None
) -> None:
    """Sign the ledger's size and Merkle root (a C2SP signed note) with a key kept outside the
    database. Keep checkpoints elsewhere: `executus verify --checkpoint FILE` later proves nothing
    sealed before one was changed, truncated or deleted.
    """
    if new_key is not None:
        _make_key(new_key, key_file)
        return
    from store import signed_checkpoint

    signer = load_signer(key_file)
    with opened(settings) as event_store:
        note = signed_checkpoint(_sql(event_store), signer)
    if path is None or str(path) == "-":
        click.echo(note, nl=False)
        return
    write_atomically(path, note)
    size = note.split("\n")[1]
    click.echo(f"wrote a checkpoint of {size} seals signed by {signer.name} to {path}", err=True)


def _make_key(name: str, key_file: Path | None) -> None:
    from executus._notekey import generate_key

    if key_file is None:
        raise CliError("--new-key needs --key FILE to write the new signer key to")
    try:
        signer = generate_key(name)
    except CheckpointError as error:
        raise CliError(str(error)) from None
    try:
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{key_file} already exists; not overwriting a key") from None
    except OSError as error:
        raise CliError(f"cannot write {key_file}: {error.strerror or type(error).__name__}") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(signer.format() + "\n")
    click.echo(signer.verifier().format())
    click.echo(
        f"wrote the signer key to {key_file} (keep it secret); the line above is its verifier key", err=True
    )
