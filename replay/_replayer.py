"""The replayer: re-run a recorded run through the executor's core and name the first divergence.

A replay feeds the core (:func:`executus._core.decide`, the same one every live run uses) the
inputs the recorded run received, in recorded order, each at its recorded instant: model
replies, tool results, the post-run hook's outcome, caller cancels, shutdowns, session steer
messages, process deaths and resumes, and the watchdog's firings (see :mod:`replay._play`).
No model is called, no tool runs, nothing waits, and no timing is re-created: the events it
records are compared with the log.

* **The critic**, with no ``agent=``, is a stand-in re-issuing the recorded decisions where
  the log shows the watchdog fired; with ``agent=`` the agent's own critic decides live on the
  watchdog the core arms; with ``what_if_critic=`` that critic does instead.
* **Process deaths**: at each recorded crash point the replayed "process" keeps only what the
  recorded one committed, and a new core, folded from that log, is resumed at the recorded
  ``run_resumed`` instant, as the recorded new process did.
* **A horizon** (recorded duration plus ``horizon`` seconds) cancels a replay that would
  otherwise never end, e.g. a what-if critic that never kills a stuck run.

Times are compared within ``time_tolerance`` (see :mod:`replay._diff`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Literal, Protocol

from executus import Agent, Critic, CriticDecision, ExecutusError
from executus._state import check_order
from executus.events import AgentSpec, CriticSpec, ErrorInfo, EventLogError, RunFinished, RunState
from executus.events import Event as _Event
from executus.storage import Blob
from replay._compare import compare
from replay._errors import ReplayError
from replay._play import Playback, RecordedCritic
from replay._recording import Recording
from replay._result import ReplayResult, ReplayRunsResult, WhatIfReport
from replay.cassette import Cassette, referenced_blobs

__all__ = ["BlobSource", "Replayer"]


class BlobSource(Protocol):
    """Anything blobs can be read from by hash: an event store, a cassette."""

    def get_blob(self, sha256: str) -> Blob: ...


class Replayer:
    """Replays recorded runs and compares the new events with the recorded ones.

    Args:
        blobs: where the images and artifacts of a recorded run are read from (the store the
            events came from); not needed for cassettes, which carry their blobs.
        time_tolerance: seconds by which a replayed instant or duration may differ from the
            recorded one and still count as equal (see :mod:`replay._diff`).
        horizon: virtual seconds past the recorded end after which a replay is cancelled.
    """

    def __init__(
        self, *, blobs: BlobSource | None = None, time_tolerance: float = 0.01, horizon: float = 3600.0
    ) -> None:
        self._blobs = blobs
        self.time_tolerance = time_tolerance
        self.horizon = horizon

    def replay_run(
        self,
        recorded: Sequence[_Event] | Cassette,
        *,
        agent: Agent | None = None,
        what_if_critic: Critic | None = None,
    ) -> ReplayResult:
        """Replay one recorded run.

        Args:
            recorded: the run's events in seq order, or a cassette.
            agent: the current agent definition to replay (its prompt, tool schemas, limits
                and critic); None rebuilds the agent recorded in ``run_started``.
            what_if_critic: run this critic live instead of the agent's (see ``what_if``).

        Returns:
            The comparison; a log without ``run_finished`` (its process died) replays up to
            where it ends, and a resumed run replays each process death and resume.

        Raises:
            ReplayError: the log cannot be replayed (empty or out of order), or a blob it
                references is missing.
        """
        blobs = recorded if isinstance(recorded, Cassette) else self._blobs
        events = tuple(recorded.events if isinstance(recorded, Cassette) else recorded)
        recording = _recording(events)
        _check_blobs(events, blobs)
        spec, tool_names, critic = self._agent(recording, agent, what_if_critic)
        horizon = recording.end + timedelta(seconds=self.horizon)
        playback = Playback(
            recording,
            spec,
            tool_names,
            critic,
            horizon,
            _blob_reader(blobs),
            strict=agent is None and what_if_critic is None,
        )
        with _no_cyclic_gc():
            playback.play(_setup_error(recording))
        replayed = _shared(playback.events, events)
        outcome = playback.result
        what_if: CriticSpec | Literal[False] | None = False
        if what_if_critic is not None:
            what_if = None if isinstance(what_if_critic, _NoCritic) else what_if_critic.spec()
        result = compare(
            recording,
            replayed,
            agent_under_test=agent is not None or what_if_critic is not None,
            what_if_critic=what_if,
            tolerance=self.time_tolerance,
        )
        return dataclasses.replace(result, result=outcome)

    def what_if(self, recorded: Sequence[_Event] | Cassette, critic: Critic | None) -> WhatIfReport:
        """Replay with ``critic`` running live and report whether and when it would have acted."""
        result = self.replay_run(recorded, what_if_critic=critic or _NoCritic())
        assert result.what_if is not None
        return result.what_if

    def replay_runs(
        self,
        runs: Iterable[Sequence[_Event] | Cassette],
        *,
        agent: Agent | None = None,
        what_if_critic: Critic | None = None,
        raise_on_divergence: bool = False,
    ) -> ReplayRunsResult:
        """Replay many runs; collect every run's result (and the runs that could not be replayed).

        Raises:
            DivergenceError: with ``raise_on_divergence``, at the first run that diverged.
        """
        results: dict[str, ReplayResult] = {}
        errors: dict[str, str] = {}
        for run in runs:
            run_id = run.run_id if isinstance(run, Cassette) else (run[0].run_id if run else "?")
            try:
                result = self.replay_run(run, agent=agent, what_if_critic=what_if_critic)
            except ReplayError as error:
                errors[run_id] = str(error)
                continue
            if raise_on_divergence:
                result.raise_on_divergence()
            results[run_id] = result
        return ReplayRunsResult(results=results, errors=errors)

    # -- building the replay ----------------------------------------------------------------

    def _agent(
        self, recording: Recording, agent: Agent | None, what_if_critic: Critic | None
    ) -> tuple[AgentSpec, frozenset[str], Critic | None]:
        """The spec the replay starts with, the tools it has, and the critic it consults."""
        recorded = recording.started.agent
        critic: Critic | None
        if agent is None:
            spec = recorded
            critic = RecordedCritic(recorded.critic, recording.decisions) if recorded.critic else None
        else:
            spec = AgentSpec(
                name=agent.name,
                model=agent.model_name,
                system_prompt=agent.system_prompt,
                tools=tuple(sorted((tool.spec() for tool in agent.tools), key=lambda tool: tool.name)),
                max_iterations=agent.max_iterations,
                max_runtime=agent.max_runtime,
                parallel_tool_calls=agent.parallel_tool_calls,
                critic=agent.critic.spec() if agent.critic else None,
                model_settings=agent.model_settings,
                retry=agent.retry,
            )
            critic = agent.critic
        if what_if_critic is not None:
            critic = None if isinstance(what_if_critic, _NoCritic) else what_if_critic
            spec = spec.model_copy(update={"critic": critic.spec() if critic is not None else None})
        return spec, frozenset(tool.name for tool in spec.tools), critic


class _NoCritic:
    """Marks "what if the run had no critic at all" (it is never consulted)."""

    check_interval = 1.0

    def spec(self) -> CriticSpec:  # pragma: no cover
        return CriticSpec(name="none")

    def decide(self, state: RunState, now: datetime) -> CriticDecision | None:  # pragma: no cover
        return None


def _recording(events: tuple[_Event, ...]) -> Recording:
    if not events:
        raise ReplayError("nothing to replay: the run has no events")
    try:
        check_order(events)
    except EventLogError as error:
        raise ReplayError(f"the recorded log cannot be folded: {error}") from error
    return Recording.of(events)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a replay allocates a run's events.

    A replay makes objects in bulk and no reference cycles; the collector's passes over the
    growing heap would cost more than the replay itself on a long run.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _setup_error(recording: Recording) -> ErrorInfo | None:
    """The error of a run that failed while being set up (unknown model, failing session)."""
    kinds = [event.kind for event in recording.events]
    finished = recording.events[-1]
    if kinds == ["run_started", "run_finished"] and isinstance(finished, RunFinished):
        return finished.error
    return None


def _shared(replayed: Sequence[_Event], recorded: Sequence[_Event]) -> tuple[_Event, ...]:
    """The replayed log, holding the recorded object wherever the replay made an equal event, so
    that an identical replay of a long run holds its log once, not twice.

    Equal is the same class and the same field values: what pydantic's ``==`` compares for an
    event (no extra fields, no private attributes), without its generic-model bookkeeping,
    which was a twentieth of a replay.
    """
    shared = []
    for index, event in enumerate(replayed):
        if index < len(recorded):
            original = recorded[index]
            if type(original) is type(event) and original.__dict__ == event.__dict__:
                event = original
        shared.append(event)
    return tuple(shared)


def _check_blobs(events: Sequence[_Event], source: BlobSource | None) -> None:
    for sha256 in referenced_blobs(events):
        if source is None:
            raise ReplayError(
                f"run {events[0].run_id} references blob {sha256[:12]} (an image or artifact) "
                "but the replayer was given no blob source: pass blobs=store, or replay a cassette"
            )
        try:
            source.get_blob(sha256)
        except ExecutusError as error:
            raise ReplayError(f"run {events[0].run_id} references a blob that is missing: {error}") from None


def _blob_reader(source: BlobSource | None) -> Callable[[str], Blob]:
    def read(sha256: str) -> Blob:
        if source is None:
            raise ReplayError(f"blob {sha256} is needed but the replayer was given no blob source")
        return source.get_blob(sha256)

    return read
