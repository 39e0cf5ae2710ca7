"""The SIGKILL harness's workload, and the process that runs it so the parent can kill it.

The workload is a function of a seed: :func:`run_ids` names a cycle's runs and a
:class:`Workload` builds each run's agent and invocation from ``(seed, run id)`` alone, so a
fresh process can resume any run, child runs included, knowing only the seed. Each run has its
own random plan: a few model steps, each with one to three tool calls (run in parallel or one
after another), tools that sleep a little on a thread or on the loop, attach an image (a steer
message) or start a child run through :meth:`ToolContext.start_child`; some runs have an idle
critic, a runtime limit or a session with a post-run artifact. The model is a :class:`FunctionModel`
that follows the plan from the transcript, so a resumed run carries on where its log stops.

Every side effect first appends a line to the cycle's marker file (``model RUN STEP`` when the
model is called, ``tool RUN CALL_ID`` when a tool starts) and fsyncs it: the parent compares
the markers with the log to prove no side effect started before its start event was durable.

Run as a script, ``python tests/sigkill_children.py serve`` imports everything once and then
forks one worker per request it reads on stdin (one JSON object a line), so the parent pays for
the imports once per lane, not once per kill:

- ``{"op": "start", "job": "work" | "resume", "url", "seed", "cycle_dir", "run_ids"}`` forks a
  worker that runs (or resumes) those runs concurrently on the system clock and answers
  ``{"pid": PID, "ready": true}`` once the worker is connected to the database and about to
  start them (``false``: it died before); the parent may SIGKILL that pid at any moment.
- ``{"op": "wait", "pid", "timeout"}`` reaps the worker and answers ``{"exit": CODE}`` or
  ``{"signal": NUMBER}`` (a worker still alive after ``timeout`` seconds is killed and reported
  with ``"timed_out": true``).

A worker that ends by itself writes ``outcomes-PID.json`` (run id to final status, or the
exception ``run``/``resume`` raised) into the cycle directory; its output goes to ``worker-PID.log``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from executus import (
    Agent,
    Artifact,
    Executor,
    IdleCritic,
    Image,
    Invocation,
    Message,
    ModelRequest,
    ModelResponse,
    PostRun,
    Session,
    SessionContext,
    SystemClock,
    ToolCall,
    ToolContext,
    ToolMessage,
    VirtualClock,
    tool,
)
from executus.events import ErrorInfo
from executus.storage import MemoryStore, RunQuery
from executus.testing import FunctionModel
from store import SqlStore

INPUT = "Work through the plan."
MARKERS = "markers"
CHILD_SEPARATOR = "~"
"""Joins a parent run id and a call id into the id of the child run that call starts."""


# -- markers -----------------------------------------------------------------------------------


def mark(cycle_dir: Path, kind: str, run_id: str, key: str) -> None:
    """Append one side-effect marker and make it durable before the side effect goes on."""
    descriptor = os.open(cycle_dir / MARKERS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, f"{kind} {run_id} {key}\n".encode())  # one write: appends never interleave
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_markers(cycle_dir: Path) -> list[tuple[str, str, str]]:
    """Every marker written so far, as (kind, run id, call id or step), in write order."""
    path = cycle_dir / MARKERS
    if not path.exists():
        return []
    markers = []
    for line in path.read_text().splitlines():
        kind, run_id, key = line.split(" ")
        markers.append((kind, run_id, key))
    return markers


# -- the workload ------------------------------------------------------------------------------


def cycle_caller(cycle: int) -> str:
    """The caller id of every run of one cycle (child runs inherit it), to list them by."""
    return f"c{cycle:04d}"


def _caller_of(run_id: str) -> str:
    return run_id.split("-", 1)[0]


def run_ids(cycle: int, count: int) -> list[str]:
    """The top-level runs of one cycle (child runs get ids from their parent's)."""
    return [f"{cycle_caller(cycle)}-r{number}" for number in range(count)]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run does: each step's tool calls (then a final answer), and its limits."""

    steps: tuple[tuple[ToolCall, ...], ...]
    model_delays: tuple[float, ...]
    parallel: bool
    critic_idle_after: float | None
    max_runtime: float | None
    session: bool


def plan_for(seed: int, run_id: str) -> Plan:
    """The plan of ``run_id``: random, but the same in every process that asks."""
    rng = random.Random(f"{seed}/{run_id}")
    is_child = CHILD_SEPARATOR in run_id
    steps = []
    for step in range(1, rng.randint(1, 2 if is_child else 4) + 1):
        calls = []
        for number in range(1, rng.randint(1, 3) + 1):
            roll = rng.random()
            slow = rng.random() < 0.08
            milliseconds = rng.randint(60, 160) if slow else rng.randint(0, 12)
            arguments: dict[str, JsonValue]
            if roll < 0.1 and not is_child:
                name, arguments = "delegate", {"task": f"subtask {step}.{number}"}
            elif roll < 0.25:
                name, arguments = "glance", {"milliseconds": milliseconds}
            elif roll < 0.6:
                name, arguments = "pause", {"milliseconds": milliseconds}
            else:
                name, arguments = "wait", {"milliseconds": milliseconds}
            calls.append(ToolCall(id=f"s{step}c{number}", name=name, arguments=arguments))
        steps.append(tuple(calls))
    return Plan(
        steps=tuple(steps),
        model_delays=tuple(rng.uniform(0, 0.008) for _ in range(len(steps) + 1)),
        parallel=rng.random() < 0.5,
        critic_idle_after=rng.choice([None, 0.05, 0.08]),
        max_runtime=rng.choice([None, None, None, 0.25, 0.6]),
        session=rng.random() < 0.3,
    )


class _Reporter(Session):
    """A session whose post-run hook stores an artifact (a blob the log then names)."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id

    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        summary = f"{self._run_id}: {len(transcript)} messages, output {output!r}".encode()
        return PostRun(artifacts=[Artifact("summary.txt", "text/plain", summary)], metadata={"size": 1})


class Workload:
    """The agents and invocations of one seed's runs, marking side effects in ``cycle_dir``.

    Everything is a function of the seed and the run id, so any process can resume any run.
    The tools are made once: they learn their run from their :class:`ToolContext`.
    """

    def __init__(self, seed: int, cycle_dir: Path) -> None:
        self.seed, self.cycle_dir = seed, cycle_dir
        self.tools = [tool(self.pause), tool(self.wait), tool(self.glance), tool(self.delegate)]

    def invocation(self, run_id: str) -> Invocation:
        """How ``run_id`` is invoked (its session, if its plan has one); the same for a resume."""
        if not plan_for(self.seed, run_id).session:
            return Invocation(run_id=run_id, caller_id=_caller_of(run_id))

        def session(context: SessionContext) -> Session:
            return _Reporter(context.run_id)

        return Invocation(run_id=run_id, caller_id=_caller_of(run_id), session=session)

    def agent(self, run_id: str) -> Agent:
        """The agent of ``run_id``: a model that follows the run's plan, and the workload's tools."""
        plan = plan_for(self.seed, run_id)
        cycle_dir = self.cycle_dir

        async def decide(request: ModelRequest) -> ModelResponse | str:
            mark(cycle_dir, "model", run_id, str(request.step))
            answered = sum(1 for message in request.messages if message.role == "assistant")
            await asyncio.sleep(plan.model_delays[min(answered, len(plan.model_delays) - 1)])
            if answered < len(plan.steps):
                return ModelResponse(tool_calls=plan.steps[answered])
            results = [message for message in request.messages if isinstance(message, ToolMessage)]
            failed = sum(1 for result in results if result.is_error)
            return f"done after {answered} steps, {len(results)} results, {failed} failed"

        return Agent(
            name="harness-child" if CHILD_SEPARATOR in run_id else "harness",
            model=FunctionModel(decide, name="planner"),
            tools=self.tools,
            max_iterations=10,
            max_runtime=plan.max_runtime,
            critic=IdleCritic(plan.critic_idle_after) if plan.critic_idle_after is not None else None,
            parallel_tool_calls=plan.parallel,
        )

    def pause(self, milliseconds: int, context: ToolContext) -> str:
        """Block a thread for a while.

        Args:
            milliseconds: how long.
        """
        mark(self.cycle_dir, "tool", context.run_id, context.call_id)
        time.sleep(milliseconds / 1000)
        return f"paused {milliseconds} ms"

    async def wait(self, milliseconds: int, context: ToolContext) -> str:
        """Wait on the event loop for a while.

        Args:
            milliseconds: how long.
        """
        mark(self.cycle_dir, "tool", context.run_id, context.call_id)
        await asyncio.sleep(milliseconds / 1000)
        return f"waited {milliseconds} ms"

    async def glance(self, milliseconds: int, context: ToolContext) -> str:
        """Look at something and show it to the model at its next step.

        Args:
            milliseconds: how long looking takes.
        """
        mark(self.cycle_dir, "tool", context.run_id, context.call_id)
        picture = Image(f"{context.run_id}/{context.call_id}".encode(), "image/png")
        context.attach_images(f"what {context.call_id} saw", picture)
        await asyncio.sleep(milliseconds / 1000)
        return "looked"

    async def delegate(self, task: str, context: ToolContext) -> str:
        """Hand a task to a child run and wait for it.

        Args:
            task: what the child should do.
        """
        mark(self.cycle_dir, "tool", context.run_id, context.call_id)
        child_id = f"{context.run_id}{CHILD_SEPARATOR}{context.call_id}"
        child = await context.start_child(self.agent(child_id), task, self.invocation(child_id))
        return f"child {child.run_id} ended {child.status}"


# -- the worker --------------------------------------------------------------------------------


async def _drive(
    job: str, url: str, seed: int, cycle_dir: Path, ids: Sequence[str], ready: int
) -> dict[str, str]:
    workload = Workload(seed, cycle_dir)
    with SqlStore(url) as store:
        store.list_runs(RunQuery(limit=1))  # connected: the parent's kill delay starts now
        os.write(ready, b"r")
        os.close(ready)
        executor = Executor(store, clock=SystemClock())
        if job == "work":
            calls = [executor.run(workload.agent(run), workload.invocation(run), INPUT) for run in ids]
        else:
            # The worker that ran them was SIGKILLed: its leases are live, and surely orphaned.
            calls = [
                executor.resume(run, workload.agent(run), workload.invocation(run), force=True) for run in ids
            ]
        results = await asyncio.gather(*calls, return_exceptions=True)
    return {
        run_id: result.status if not isinstance(result, BaseException) else f"raised {result!r}"
        for run_id, result in zip(ids, results, strict=True)
    }


def _work(request: dict[str, Any], ready: int) -> None:
    cycle_dir = Path(request["cycle_dir"])
    outcomes = asyncio.run(
        _drive(request["job"], request["url"], request["seed"], cycle_dir, request["run_ids"], ready)
    )
    path = cycle_dir / f"outcomes-{os.getpid()}.json"
    path.with_suffix(".tmp").write_text(json.dumps(outcomes))
    path.with_suffix(".tmp").rename(path)


def _fork_worker(request: dict[str, Any]) -> tuple[int, bool]:
    """Fork a worker for ``request``; return its pid once it is connected to the database, and
    whether it got that far."""
    sys.stdout.flush()
    sys.stderr.flush()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_write)
        with os.fdopen(ready_read, "rb") as ready:
            return pid, ready.read(1) == b"r"  # b"" if the worker died first
    code = 1
    try:
        os.close(ready_read)
        log = os.open(Path(request["cycle_dir"]) / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        _work(request, ready_write)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _reap(pid: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline and not timed_out:
            os.kill(pid, signal.SIGKILL)
            timed_out = True
        time.sleep(0.005)
    ended = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.WEXITSTATUS(status)}
    return {**ended, "timed_out": timed_out, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def _warm_up(url: str) -> None:
    """Do once here what every worker would otherwise do first: import the database driver and
    dialect, build the tools' argument models, run the executor's code paths once."""
    SqlStore(url).close()  # connects to nothing: a worker must open its own connections
    with tempfile.TemporaryDirectory() as scratch:
        workload = Workload(0, Path(scratch))
        executor = Executor(MemoryStore(), clock=VirtualClock())
        for run_id in ("warm-up-1", "warm-up-2", "warm-up-3"):
            executor.run_sync(workload.agent(run_id), workload.invocation(run_id), INPUT)
    gc.collect()
    gc.freeze()  # workers then share these pages instead of copying them as the collector visits


def _serve() -> None:
    """Fork a worker per ``start`` request; reap it on ``wait``; at end of input, kill the rest."""
    alive: set[int] = set()
    warm: set[str] = set()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            if request["url"] not in warm:
                _warm_up(request["url"])
                warm.add(request["url"])
            pid, ready = _fork_worker(request)
            alive.add(pid)
            answer: dict[str, Any] = {"pid": pid, "ready": ready}
        else:
            answer = _reap(request["pid"], request["timeout"])
            alive.discard(request["pid"])
        print(json.dumps(answer), flush=True)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        raise SystemExit("usage: sigkill_children.py serve")
    _serve()
