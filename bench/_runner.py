"""``python -m bench``: run the cases, print one table, optionally write it as JSON."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeAlias

from bench import (
    case_append,
    case_audit,
    case_concurrency,
    case_loop_lag,
    case_memory,
    case_models,
    case_rebuild,
    case_replay,
    case_scaling,
    case_steps,
    case_workers,
)
from bench._config import Config
from bench._machine import describe_machine
from bench._pg import Postgres, postgres_server
from bench._report import Report

__all__ = ["CASES", "main", "run_bench"]

Case: TypeAlias = Callable[[Report, Config, "Postgres | None", str], None]
CASES: Final[dict[str, Case]] = {
    "append": case_append.run,
    "steps": case_steps.run,
    "rebuild": case_rebuild.run,
    "replay": case_replay.run,
    "concurrency": case_concurrency.run,
    "loop-lag": case_loop_lag.run,
    "memory": case_memory.run,
    "audit": case_audit.run,
    "models": case_models.run,
    "workers": case_workers.run,
    "scaling": case_scaling.run,
}


def run_bench(
    config: Config,
    cases: Sequence[str] = tuple(CASES),
    *,
    postgres: bool = True,
    command: str = "python -m bench",
    progress: Callable[[str], None] | None = None,
) -> tuple[Report, list[str]]:
    """Run ``cases`` with ``config`` and return the report and the cases that raised.

    A case that raises is reported (its traceback goes to ``progress``) and the others still
    run, so one broken case does not hide every other figure.
    """
    say = progress or (lambda _message: None)
    failed: list[str] = []
    started = time.perf_counter()
    with postgres_server(enabled=postgres, may_install=not config.quick) as (server, reason):
        report = Report(
            machine=describe_machine(server.version if server else None),
            command=command,
            mode="quick" if config.quick else "full",
        )
        for name in cases:
            say(f"bench: {name} ...")
            case_started = time.perf_counter()
            try:
                CASES[name](report, config, server, reason)
            except Exception as error:
                failed.append(name)
                report.notes.append(f"case {name} failed: {type(error).__name__}: {error}")
                say(traceback.format_exc())
            say(f"bench: {name} done in {time.perf_counter() - case_started:.1f}s")
    report.seconds = time.perf_counter() - started
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    report.notes.append(
        f"load average (1, 5, 15 min) at the start: {report.machine['load_average']}; at the end: {load}"
    )
    return report, failed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="executus benchmarks against the raw drivers and the peers (issue 7).",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute (CI)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(CASES),
        metavar="CASE",
        help=f"run only these: {', '.join(CASES)}",
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip every PostgreSQL row")
    parser.add_argument(
        "--workdir", type=Path, help="where the temporary databases go (default: system temp)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench from the command line; exit 1 if a case raised (never because of a figure)."""
    arguments = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="executus-bench-", dir=arguments.workdir) as workdir:
        make = Config.quick_mode if arguments.quick else Config.full
        report, failed = run_bench(
            make(Path(workdir)),
            arguments.only or tuple(CASES),
            postgres=not arguments.no_postgres,
            command=command,
            progress=progress,
        )
    print(report.render())
    print(f"\n{report.mode} bench, {report.seconds:.0f}s, {report.machine['date']}")
    if arguments.json is not None:
        report.write_json(arguments.json)
    return 1 if failed else 0
