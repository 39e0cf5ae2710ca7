"""Throwaway local PostgreSQL server for tests and benchmarks (a test helper: it never ships).

It can `apt-get install` Debian's postgresql when run as root, which is why it lives under tests/
and not in a package an application installs.

The SQL store must be tested against a real PostgreSQL (SQLite hides dialect and locking
differences), yet tests must not depend on a shared long-lived server. This module builds a
private cluster in a temporary directory, listening only on 127.0.0.1 on a free port, and
deletes it afterwards. Set ``EXECUTUS_TEST_PG_URL`` to use an existing server instead.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

__all__ = ["ENV_URL", "PostgresUnavailable", "ThrowawayPostgres", "postgres_url_for_tests"]

logger = logging.getLogger(__name__)

ENV_URL = "EXECUTUS_TEST_PG_URL"
_OS_USER = "postgres"  # initdb refuses to run as root; Debian's package creates this user.
_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_HINT = f"install Debian's 'postgresql' package or set {ENV_URL} to an existing server's URL"


class PostgresUnavailable(Exception):
    """No throwaway PostgreSQL can be started here; the message says what to do."""


def _run(cmd: list[str], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` quietly; a timeout becomes a failed result so that callers still clean up."""
    logger.debug("running %s", cmd)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, -1, "", f"timed out after {timeout:.0f}s")


def _tail(text: str, lines: int = 6) -> str:
    """Squash the last non-blank lines of ``text`` into one line, to keep errors one-line."""
    return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])


def _version(bindir: Path) -> list[int]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``; odd names sort last."""
    return [int(part) for part in bindir.parent.name.split(".") if part.isdigit()]


def _find_binaries() -> tuple[str, str] | None:
    """Return ``(initdb, pg_ctl)``, Debian's newest first: Debian does not put them on PATH."""
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True):
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return str(bindir / "initdb"), str(bindir / "pg_ctl")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return (initdb, pg_ctl) if initdb and pg_ctl else None


def _binaries() -> tuple[str, str]:
    """Find initdb and pg_ctl, installing Debian's package when root so fresh machines just work."""
    found = _find_binaries()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "postgresql"]
        logger.info("PostgreSQL binaries not found; running %s", " ".join(install))
        proc = _run(install, timeout=900)
        if proc.returncode != 0:  # Usually stale or missing package lists: refresh once and retry.
            _run(["apt-get", "update"], timeout=900)
            proc = _run(install, timeout=900)
        if proc.returncode != 0:
            logger.warning("apt-get install postgresql failed: %s", _tail(proc.stdout + proc.stderr))
        found = _find_binaries()
    if found is None:
        raise PostgresUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {_HINT}")
    return found


def _free_port() -> int:
    """Ask the kernel for an unused port; another process may still take it first (start retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayPostgres:
    """A private PostgreSQL cluster in a temporary directory, gone after :meth:`stop`.

    ``with ThrowawayPostgres() as url:`` yields the SQLAlchemy URL. As root, the server runs
    as the ``postgres`` OS user, because PostgreSQL refuses to run as root.

    Args:
        durable: Keep PostgreSQL's crash-safety settings. They are off by default because the
            data is thrown away anyway and fsyncs would dominate test run time.
    """

    def __init__(self, *, durable: bool = False) -> None:
        self._durable = durable
        self._tmpdir: Path | None = None
        self._pg_ctl = "pg_ctl"
        self._prefix: list[str] = []
        self._url: str | None = None
        self._port: int | None = None
        self._owner_pid = os.getpid()

    @property
    def url(self) -> str:
        """The running server's SQLAlchemy URL; raises RuntimeError if it is not running."""
        if self._url is None:
            raise RuntimeError("ThrowawayPostgres is not running: call start() first")
        return self._url

    def start(self) -> str:
        """Create and start the cluster and its ``executus_test`` database.

        Returns:
            A URL like ``postgresql+psycopg://postgres@127.0.0.1:PORT/executus_test``; the same
            one again if already running.

        Raises:
            PostgresUnavailable: The binaries cannot be found or installed, or the server does
                not start (the message then carries the server log's last lines).
        """
        if self._url is not None:
            return self._url
        initdb, self._pg_ctl = _binaries()
        owner = self._switch_user()
        started = time.monotonic()
        self._tmpdir = tmpdir = Path(tempfile.mkdtemp(prefix="executus-pg-"))
        self._owner_pid = os.getpid()
        atexit.register(self._stop_at_exit)  # A crashed session must not leave a server behind.
        try:
            if owner is not None:
                os.chown(tmpdir, owner.pw_uid, owner.pw_gid)
            port = self._port = self._create_and_start(initdb, tmpdir)
            dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10"
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE DATABASE executus_test")
        except BaseException:
            self.stop()
            raise
        self._url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/executus_test"
        logger.info("throwaway PostgreSQL at %s ready in %.1fs", self._url, time.monotonic() - started)
        return self._url

    def stop(self) -> None:
        """Stop the server and delete its directory; safe to call again or if never started."""
        tmpdir, self._tmpdir, self._url = self._tmpdir, None, None
        if tmpdir is None:
            return
        atexit.unregister(self._stop_at_exit)
        data = tmpdir / "data"
        for mode in ("fast", "immediate") if (data / "postmaster.pid").exists() else ():
            proc = self._pg(tmpdir, self._pg_ctl, "-D", str(data), "-m", mode, "-w", "-t", "30", "stop")
            if proc.returncode == 0:
                break  # "immediate" is only the fallback for a fast shutdown that failed.
            logger.warning("pg_ctl -m %s stop failed: %s", mode, _tail(proc.stdout + proc.stderr))
        shutil.rmtree(tmpdir, ignore_errors=True)
        logger.info("throwaway PostgreSQL in %s stopped and removed", tmpdir)

    def processes(self) -> list[int]:
        """The pids of the running server: the postmaster, then its children (backends and all)."""
        if self._tmpdir is None:
            raise RuntimeError("ThrowawayPostgres is not running: call start() first")
        postmaster = int((self._tmpdir / "data" / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def pause(self) -> None:
        """Freeze the whole server (SIGSTOP): connections stay open and nothing answers."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause` (SIGCONT)."""
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)

    def stop_server(self) -> None:
        """Shut the server down (``pg_ctl stop -m fast``: connections are closed) keeping its data."""
        if self._tmpdir is None:
            raise RuntimeError("ThrowawayPostgres is not running: call start() first")
        data = self._tmpdir / "data"
        proc = self._pg(self._tmpdir, self._pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop")
        if proc.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl stop failed: {_tail(proc.stdout + proc.stderr)}")

    def start_server(self) -> None:
        """Start again, on the same port, a server :meth:`stop_server` stopped."""
        if self._tmpdir is None or self._port is None:
            raise RuntimeError("ThrowawayPostgres is not running: call start() first")
        data, log = self._tmpdir / "data", self._tmpdir / "server.log"
        opts = ["-o", f"-p {self._port}", "-w", "-t", "30", "-l", str(log)]
        proc = self._pg(self._tmpdir, self._pg_ctl, "-D", str(data), *opts, "start")
        if proc.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl start failed: {_tail(proc.stdout + proc.stderr)}")

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _stop_at_exit(self) -> None:
        """atexit hook; a forked child that exits must not stop its parent's server."""
        if os.getpid() == self._owner_pid:
            self.stop()

    def _switch_user(self) -> pwd.struct_passwd | None:
        """When root, make PostgreSQL tools run as the ``postgres`` user and return that user."""
        self._prefix = []
        if os.geteuid() != 0:
            return None
        runuser = shutil.which("runuser")
        owner = None
        with contextlib.suppress(KeyError):
            owner = pwd.getpwnam(_OS_USER)
        if runuser is None or owner is None:
            raise PostgresUnavailable(f"as root, PostgreSQL needs a '{_OS_USER}' user and runuser: {_HINT}")
        self._prefix = [runuser, "-u", _OS_USER, "--"]
        return owner

    def _pg(self, tmpdir: Path, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool as the server's user, from a directory that user may enter."""
        return _run([*self._prefix, *cmd], timeout=timeout, cwd=tmpdir)

    def _create_and_start(self, initdb: str, tmpdir: Path) -> int:
        """Create, configure and start the cluster in ``tmpdir``; return its TCP port."""
        data, log = tmpdir / "data", tmpdir / "server.log"
        # --locale=C: the caller's locale may not be installed, and initdb would then fail.
        flags = ["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]
        proc = self._pg(tmpdir, initdb, "-D", str(data), *flags, timeout=120)
        if proc.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({_tail(proc.stdout + proc.stderr)}): {_HINT}")
        sockdir = str(tmpdir).replace("\\", "\\\\").replace("'", "''")
        settings = {"listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{sockdir}'"}
        settings |= {"max_connections": "100", **({} if self._durable else _FAST)}
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# executus throwaway server (later settings win)\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        server_log = ""
        for _attempt in range(3):
            port = _free_port()
            opts = ["-o", f"-p {port}", "-w", "-t", "30", "-l", str(log)]
            proc = self._pg(tmpdir, self._pg_ctl, "-D", str(data), *opts, "start")
            if proc.returncode == 0:
                return port
            server_log = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            if "could not bind" not in server_log.rsplit("starting PostgreSQL", 1)[-1]:
                break  # Only losing the race for the port is worth a retry.
        raise PostgresUnavailable(
            f"PostgreSQL did not start ({_tail(proc.stdout + proc.stderr, 2)}; server log: "
            f"{_tail(server_log)}): fix that or set {ENV_URL} to an existing server's URL"
        )


def postgres_url_for_tests() -> contextlib.AbstractContextManager[str]:
    """Give tests a PostgreSQL URL without making every test module manage a server.

    Returns:
        A context manager yielding ``$EXECUTUS_TEST_PG_URL`` if it is set and non-empty (that
        server is left alone), else the URL of a ThrowawayPostgres that is stopped on exit.
    """
    external = os.environ.get(ENV_URL)
    return contextlib.nullcontext(external) if external else ThrowawayPostgres()
