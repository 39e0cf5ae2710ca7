"""Run leases, the work queue and cancel requests in SQL (:class:`executus.storage.RunLeases`).

Each operation here is one short transaction on a pooled connection. The executor's acquires
and releases go through the store's writer instead, in its group commits, with the same
statements (:func:`lease_statements`), and its fenced appends check the epoch inside the
writer's transaction (``store._batch``). Time is
the database's: PostgreSQL's ``now()`` (the transaction's start), read once per transaction;
SQLite has no server, so its clock is the host's, which the processes sharing the file share.

Why no two callers ever claim one run:

- PostgreSQL: :meth:`SqlLeases.claim` locks the lease rows it picks ``FOR UPDATE SKIP LOCKED``,
  so a concurrent claimer skips them rather than waiting, and takes the next ones.
- SQLite: every writing transaction begins ``BEGIN IMMEDIATE``, so claims take turns; each
  claim's UPDATE is conditional on the rows it read (epoch unchanged), inside that transaction.

:meth:`SqlLeases.enqueue` ``NOTIFY``s ``executus_work`` in its transaction on PostgreSQL, which
:meth:`SqlLeases.wait_for_work` ``LISTEN``s for on a connection of its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Interval,
    and_,
    bindparam,
    exc,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import PoolProxiedConnection

from executus import (
    DatabaseUnavailableError,
    LeaseHeldError,
    LeaseLostError,
    RunExistsError,
    RunNotFoundError,
)
from executus.storage import Claim, Lease, LeaseInfo, QueuedRun, Renewal
from store._engine import WRITE_OPTION, connect, raw_connect
from store._schema import UtcDateTime, leases, queue, runs

__all__ = ["WORK_CHANNEL", "LeaseStatements", "SqlLeases", "lease_clock", "lease_statements"]

WORK_CHANNEL: Final = "executus_work"
"""The PostgreSQL notification channel an enqueue notifies and idle workers listen on."""


@dataclass(frozen=True, slots=True)
class LeaseStatements:
    """Acquire's, renew's and release's statements for one dialect, built once: each is one
    round trip with the database's clock read inside it, and building a statement costs more
    than running it. The store's writer compiles the same ones for its group commits
    (``store._hot``), so an acquire means one thing whichever path it takes.

    Parameters: ``key_run_id``; ``owner`` and ``force`` (acquire); ``key_epoch`` (renew,
    release); and the clock's, from :func:`lease_clock`.
    """

    acquire: Any
    """Takes the run's lease (a new run's row is made with epoch 1; an existing one is taken,
    epoch + 1, only if it is free, ours, expired or forced) and returns its epoch and expiry;
    no row back means another owner holds it."""
    renew: Any
    """Extends the lease while its epoch is current; returns the pending cancel reason and the expiry."""
    release: Any
    """Ends the lease now while its epoch is current, marking it finished if the run is."""
    holder: Any
    """The owner and expiry of the run's lease (why an acquire was refused)."""


def lease_statements(dialect: str) -> LeaseStatements:
    """The lease statements for ``dialect`` ("postgresql" or "sqlite")."""
    if dialect == "postgresql":
        # Server-side, so that no round trip reads the database's time first.
        now: Any = func.now(type_=UtcDateTime())
        expiry: Any = now + bindparam("ttl", type_=Interval())
        upsert: Any = postgresql.insert(leases)
    else:
        now = bindparam("now", type_=UtcDateTime())
        expiry = bindparam("expires_at", type_=UtcDateTime())
        upsert = sqlite.insert(leases)
    run_id: Any = bindparam("key_run_id")
    owner: Any = bindparam("owner")
    ours = and_(leases.c.run_id == run_id, leases.c.epoch == bindparam("key_epoch"))
    free = or_(leases.c.owner.is_(None), leases.c.owner == owner, leases.c.expires_at <= now)
    finished = exists().where(and_(runs.c.run_id == run_id, runs.c.status != "running"))
    return LeaseStatements(
        acquire=upsert.values(run_id=run_id, owner=owner, epoch=1, expires_at=expiry, finished=False)
        .on_conflict_do_update(
            index_elements=[leases.c.run_id],
            set_={"owner": owner, "epoch": leases.c.epoch + 1, "expires_at": expiry},
            where=or_(bindparam("force", type_=Boolean()), free),
        )
        .returning(leases.c.epoch, leases.c.expires_at),
        renew=update(leases)
        .where(ours)
        .values(expires_at=expiry)
        .returning(leases.c.cancel_reason, leases.c.expires_at),
        release=update(leases).where(ours).values(expires_at=now, finished=finished),
        holder=select(leases.c.owner, leases.c.expires_at).where(leases.c.run_id == run_id),
    )


def lease_clock(dialect: str, ttl: float) -> dict[str, Any]:
    """The clock's parameters of :func:`lease_statements`' statements for a lease of ``ttl`` s:
    PostgreSQL reads its own clock; SQLite has none, so the host's is sent."""
    if dialect == "postgresql":
        return {"ttl": timedelta(seconds=ttl)}
    now = datetime.now(UTC)
    return {"now": now, "expires_at": now + timedelta(seconds=ttl)}


class SqlLeases:
    """:class:`executus.storage.RunLeases` on a SQL store's engine (see the module docstring).

    Args:
        engine: the store's engine (pooled connections).
        url: the database as the user gave it, for messages.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self._url = url
        self._postgres = engine.dialect.name == "postgresql"
        self._listener: PoolProxiedConnection | None = None
        self._listening = threading.Lock()
        self._closed = False
        self._sql = lease_statements(engine.dialect.name)

    def _clock(self, ttl: float) -> dict[str, Any]:
        return lease_clock(self._engine.dialect.name, ttl)

    @contextmanager
    def _writing(self, doing: str) -> Iterator[Connection]:
        """A write transaction."""
        with connect(self._engine, self._url, doing) as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                yield connection

    @contextmanager
    def _one_statement(self, doing: str) -> Iterator[Connection]:
        """A connection for one writing statement, atomic by itself. PostgreSQL commits it as it
        runs (autocommit: no BEGIN and COMMIT round trips); SQLite takes the write lock first,
        as every writer there does."""
        if not self._postgres:
            with self._writing(doing) as connection:
                yield connection
            return
        with connect(self._engine, self._url, doing) as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def _writing_at(self, doing: str) -> Iterator[tuple[Connection, datetime]]:
        """A write transaction, and the database's time at its start."""
        with self._writing(doing) as connection:
            yield connection, self._now(connection)

    def _now(self, connection: Connection) -> datetime:
        if not self._postgres:
            return datetime.now(UTC)
        now: datetime = connection.execute(select(func.now())).scalar_one()
        return now.astimezone(UTC)

    def acquire(self, run_id: str, owner: str, ttl: float, *, force: bool = False) -> Lease:
        parameters = {"key_run_id": run_id, "owner": owner, "force": force, **self._clock(ttl)}
        with self._one_statement(f"acquiring run {run_id}") as connection:
            taken = connection.execute(self._sql.acquire, parameters).one_or_none()
            if taken is None:
                held = connection.execute(self._sql.holder, {"key_run_id": run_id}).one()
                raise LeaseHeldError(run_id, held.owner, held.expires_at)
        return Lease(run_id, owner, taken.epoch, taken.expires_at)

    def renew(self, lease: Lease, ttl: float) -> Renewal:
        parameters = {"key_run_id": lease.run_id, "key_epoch": lease.epoch, **self._clock(ttl)}
        with self._one_statement(f"renewing the lease of run {lease.run_id}") as connection:
            renewed = connection.execute(self._sql.renew, parameters).one_or_none()
            if renewed is None:
                raise LeaseLostError(lease.run_id, lease.epoch, self._owner(connection, lease.run_id))
        return Renewal(
            Lease(lease.run_id, lease.owner, lease.epoch, renewed.expires_at), renewed.cancel_reason
        )

    @staticmethod
    def _owner(connection: Connection, run_id: str) -> str | None:
        owner: str | None = connection.execute(
            select(leases.c.owner).where(leases.c.run_id == run_id)
        ).scalar_one_or_none()
        return owner

    def release(self, lease: Lease) -> None:
        parameters = {"key_run_id": lease.run_id, "key_epoch": lease.epoch, **self._clock(0)}
        with self._one_statement(f"releasing run {lease.run_id}") as connection:
            connection.execute(self._sql.release, parameters)

    def claim(self, owner: str, ttl: float, limit: int, agents: Collection[str] | None = None) -> list[Claim]:
        if limit < 1:
            return []
        run_agent = func.coalesce(queue.c.agent, runs.c.agent)
        with self._writing_at("claiming runs") as (connection, now):
            due = (
                select(
                    leases.c.run_id,
                    leases.c.owner,
                    leases.c.epoch,
                    leases.c.expires_at,
                    queue.c.agent,
                    queue.c.input,
                    queue.c.caller_id,
                    queue.c.submitted_at,
                    leases.c.cancel_reason,
                    run_agent.label("run_agent"),
                )
                .select_from(
                    leases.outerjoin(queue, queue.c.run_id == leases.c.run_id).outerjoin(
                        runs, runs.c.run_id == leases.c.run_id
                    )
                )
                .where(
                    leases.c.finished.is_(False),
                    leases.c.expires_at <= now,
                    # queued and not started yet, or started and not finished
                    or_(queue.c.run_id.is_not(None), runs.c.status == "running"),
                )
                .order_by(leases.c.expires_at, leases.c.run_id)
                .limit(limit)
                .with_for_update(of=leases, skip_locked=True)
            )
            if agents is not None:
                due = due.where(run_agent.in_(list(agents)))
            rows = connection.execute(due).all()
            expires_at = now + timedelta(seconds=ttl)
            take = (
                update(leases)
                .where(and_(leases.c.run_id == bindparam("key_run_id"), leases.c.epoch == bindparam("old")))
                .values(owner=owner, epoch=bindparam("new"), expires_at=expires_at)
            )
            if rows:
                connection.execute(
                    take, [{"key_run_id": row.run_id, "old": row.epoch, "new": row.epoch + 1} for row in rows]
                )
        return [
            Claim(
                Lease(row.run_id, owner, row.epoch + 1, expires_at),
                None
                if row.agent is None
                else QueuedRun(row.run_id, row.agent, row.input, row.caller_id, row.submitted_at),
                row.owner,
                None if row.owner is None else row.expires_at,
                row.run_agent,
                row.cancel_reason,
            )
            for row in rows
        ]

    def enqueue(self, agent: str, input: str, *, run_id: str, caller_id: str | None = None) -> QueuedRun:
        with self._writing_at(f"submitting run {run_id}") as (connection, now):
            if connection.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is not None:
                raise RunExistsError(run_id)
            try:
                connection.execute(
                    insert(queue).values(
                        run_id=run_id, agent=agent, input=input, caller_id=caller_id, submitted_at=now
                    )
                )
                # Due at once: a queued run's lease has no owner and runs out when submitted.
                connection.execute(
                    insert(leases).values(run_id=run_id, owner=None, epoch=0, expires_at=now, finished=False)
                )
            except exc.IntegrityError:
                raise RunExistsError(run_id) from None
            if self._postgres:
                connection.execute(select(func.pg_notify(WORK_CHANNEL, run_id)))
        return QueuedRun(run_id, agent, input, caller_id, now)

    def request_cancel(self, run_id: str, reason: str | None) -> None:
        with self._writing_at(f"asking run {run_id} to cancel") as (connection, now):
            asked = connection.execute(
                update(leases)
                .where(leases.c.run_id == run_id)
                .values(cancel_reason=reason or "", cancel_requested_at=now)
            )
            if asked.rowcount:
                return
            status = connection.execute(
                select(runs.c.status).where(runs.c.run_id == run_id)
            ).scalar_one_or_none()
            if status is None:
                raise RunNotFoundError(run_id)
            # A run recorded without a lease: the request waits for whoever acquires it.
            connection.execute(
                insert(leases).values(
                    run_id=run_id,
                    owner=None,
                    epoch=0,
                    expires_at=now,
                    finished=status != "running",
                    cancel_reason=reason or "",
                    cancel_requested_at=now,
                )
            )

    def lease_of(self, run_id: str) -> LeaseInfo | None:
        doing = f"reading the lease of run {run_id}"
        with connect(self._engine, self._url, doing) as connection, connection.begin():
            now = self._now(connection)
            row = connection.execute(select(leases).where(leases.c.run_id == run_id)).one_or_none()
        if row is None:
            return None
        held = row.owner is not None
        return LeaseInfo(
            run_id,
            row.owner,
            row.epoch,
            row.expires_at if held else None,
            held and row.expires_at > now,
            row.cancel_reason,
        )

    def queued_runs(self, limit: int | None = 50) -> list[QueuedRun]:
        statement = select(queue).order_by(queue.c.submitted_at, queue.c.run_id)
        if limit is not None:
            statement = statement.limit(limit)
        with connect(self._engine, self._url, "listing queued runs") as connection, connection.begin():
            return [
                QueuedRun(row.run_id, row.agent, row.input, row.caller_id, row.submitted_at)
                for row in connection.execute(statement)
            ]

    def wait_for_work(self, timeout: float) -> None:
        """PostgreSQL: until an enqueue's notification arrives (one that came since the last call
        counts) or ``timeout`` passes. SQLite has no notifications: it sleeps ``timeout``.

        Never raises for a database that cannot be reached: it waits out ``timeout`` instead, and
        the caller's next claim reports the failure."""
        if not self._postgres:
            time.sleep(max(timeout, 0.0))
            return
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._listening:
            try:
                connection = self._listen()
                for _ in connection.notifies(timeout=max(timeout, 0.0), stop_after=1):
                    pass
                # Notifications that arrived meanwhile all mean the same: work may be there.
                for _ in connection.notifies(timeout=0):
                    pass
                return
            except (DatabaseUnavailableError, self._engine.dialect.loaded_dbapi.Error):
                self._stop_listening()
        if not self._closed:
            time.sleep(max(deadline - time.monotonic(), 0.0))

    def _listen(self) -> Any:
        held = self._listener
        if held is None or held.dbapi_connection is None:
            held = raw_connect(self._engine, self._url)
            connection: Any = held.dbapi_connection
            connection.autocommit = True
            connection.execute(f"LISTEN {WORK_CHANNEL}")
            self._listener = held
        return held.dbapi_connection

    def _stop_listening(self) -> None:
        held, self._listener = self._listener, None
        if held is not None:
            with contextlib.suppress(Exception):
                held.invalidate()

    def close(self) -> None:
        """Close the listening connection, if there is one (a wait in progress returns)."""
        self._closed = True
        self._stop_listening()
