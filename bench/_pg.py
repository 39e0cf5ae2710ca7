"""PostgreSQL for the bench: a throwaway durable server, fresh databases, psycopg connection strings.

The server is :class:`tests._pgserver.ThrowawayPostgres` with ``durable=True`` (fsync and
synchronous commit on: server defaults, as the issue's anchors were measured), or the server
at ``$EXECUTUS_TEST_PG_URL`` when that is set. The quick mode never installs PostgreSQL: it
uses the server binaries only if they are already there, and otherwise skips the PostgreSQL
rows, saying why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from tests._pgserver import ENV_URL, PostgresUnavailable, ThrowawayPostgres

__all__ = ["Postgres", "conninfo", "postgres_server"]


def conninfo(url: str) -> str:
    """A libpq connection string for a SQLAlchemy ``postgresql+psycopg://`` URL."""
    parsed = make_url(url)
    parts = {
        "host": parsed.host or "127.0.0.1",
        "port": str(parsed.port or 5432),
        "user": parsed.username or "postgres",
        "dbname": parsed.database or "postgres",
    }
    if parsed.password:
        parts["password"] = str(parsed.password)
    return " ".join(f"{key}={value}" for key, value in parts.items())


@dataclass(frozen=True, slots=True)
class Postgres:
    """A running server the bench may create and drop its own databases on."""

    url: str
    """SQLAlchemy URL of the server's maintenance database."""
    version: str
    throwaway: ThrowawayPostgres | None = None
    """The server itself when the bench started it (then it may be frozen); None for an external one."""

    def fresh_database(self, name: str) -> str:
        """Drop and create database ``name``; return its SQLAlchemy URL."""
        with psycopg.connect(conninfo(self.url), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def cpu_seconds(self) -> float | None:
        """CPU seconds the server's processes have used so far (backends that exited count
        through the postmaster), or None for a server the bench did not start."""
        if self.throwaway is None:
            return None
        ticks = 0
        for pid in self.throwaway.processes():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # utime, stime, cutime, cstime: fields 14-17 of "pid (comm) state ...".
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += sum(int(value) for value in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists."""
        with psycopg.connect(conninfo(self.url), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _binaries_present() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb") is not None


def _version(url: str) -> str:
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


@contextmanager
def postgres_server(*, enabled: bool, may_install: bool) -> Iterator[tuple[Postgres | None, str]]:
    """Yield ``(server, "")``, or ``(None, why)`` when PostgreSQL cannot be used here.

    Args:
        enabled: False when the user turned PostgreSQL off (``--no-postgres``).
        may_install: let :class:`ThrowawayPostgres` install Debian's package when root (full mode).
    """
    if not enabled:
        yield None, "PostgreSQL off (--no-postgres)"
        return
    external = os.environ.get(ENV_URL)
    if external:
        yield Postgres(external, _version(external)), ""
        return
    if not may_install and not _binaries_present():
        yield None, "PostgreSQL server binaries not installed"
        return
    server = ThrowawayPostgres(durable=True)
    try:
        url = server.start()
    except PostgresUnavailable as error:
        yield None, f"PostgreSQL unavailable: {error}"
        return
    try:
        yield Postgres(url, _version(url), server), ""
    finally:
        server.stop()
