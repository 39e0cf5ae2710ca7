"""pytest plugin: run a test's agent against a cassette beside the test, VCR.py style.

Enable it with the ``pytest11`` entry point (installed with executus) or ``-p
replay.pytest_plugin``. A test asks for the ``executus_cassette`` fixture and runs its agent
through it::

    def test_librarian(executus_cassette):
        result = executus_cassette.run(librarian, "Any books about otters?")
        assert result.output == "There are 3 books about otters."

The cassette is ``cassettes/<test module>/<test name>.jsonl`` beside the test file (a second
``run`` in the same test adds ``-2``, ``-3``…), or the path given by
``@pytest.mark.executus_cassette("path.jsonl")`` (relative to the test file).

Record modes (``--executus-record-mode``, or the ``executus_record_mode`` ini option):

* ``none`` (default, for CI): replay only. A missing cassette, a step the cassette does not
  hold, or any divergence fails the test; the agent's real model is never called.
* ``once``: record (the real model, real tools) when the cassette is missing, else replay.
* ``new``: run live, but serve the recorded replies while the requests still match the
  cassette, so only newly needed model steps reach the real model; then save the cassette.
* ``all``: always record afresh.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Literal, TypeAlias, cast

import pytest

from executus import (
    Agent,
    Clock,
    Executor,
    Invocation,
    Model,
    ModelRegistry,
    ModelRequest,
    ModelResolver,
    ModelResponse,
    Result,
    SystemClock,
)
from executus.events import Event, ModelFailed, ModelRequested, ModelResponded, rebuild
from executus.storage import MemoryStore
from replay._diff import canonical_request
from replay._replayer import Replayer
from replay._result import ReplayResult
from replay.cassette import load_cassette, save_cassette

__all__ = ["RECORD_MODES", "AgentCassette", "RecordMode"]

RecordMode: TypeAlias = Literal["none", "once", "new", "all"]
RECORD_MODES: Final = ("none", "once", "new", "all")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("executus", "executus cassettes")
    group.addoption(
        "--executus-record-mode",
        choices=RECORD_MODES,
        default=None,
        help="none: replay only, fail on any miss (default); once: record missing cassettes; "
        "new: reuse recorded steps and record new ones; all: re-record every cassette",
    )
    parser.addini("executus_record_mode", "default record mode for executus cassettes", default="none")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "executus_cassette(path): the cassette file for this test, relative to the test file"
    )


def _record_mode(config: pytest.Config) -> RecordMode:
    mode = config.getoption("--executus-record-mode") or config.getini("executus_record_mode")
    if mode not in RECORD_MODES:
        raise pytest.UsageError(
            f"executus_record_mode must be one of {', '.join(RECORD_MODES)}, not {mode!r}"
        )
    return cast(RecordMode, mode)


class _ReuseThenLive:
    """Serves recorded replies while each request equals the recorded one, then the live model."""

    def __init__(self, recorded: Sequence[Event], live: Model) -> None:
        self._recorded = list(recorded)
        self._live = live
        self._diverged = False
        self.reused = 0
        """How many steps were served from the cassette."""

    @property
    def name(self) -> str:
        return self._live.name

    def _recorded_reply(self, request: ModelRequest) -> ModelResponse | None:
        asked = next(
            (e for e in self._recorded if isinstance(e, ModelRequested) and e.step == request.step), None
        )
        reply = next(
            (e for e in self._recorded if isinstance(e, ModelResponded) and e.step == request.step), None
        )
        if asked is None or reply is None:
            return None
        expected = canonical_request(rebuild(self._recorded[: asked.seq - 1]))
        actual = {
            "model": self.name,
            "tools": [tool.model_dump(mode="json") for tool in request.tools],
            "messages": [message.model_dump(mode="json") for message in request.messages],
        }
        if expected != actual:
            return None
        return ModelResponse(text=reply.text, tool_calls=reply.tool_calls, usage=reply.usage)

    async def request(self, request: ModelRequest) -> ModelResponse:
        if not self._diverged:
            reply = self._recorded_reply(request)
            if reply is not None:
                self.reused += 1
                return reply
            self._diverged = True
        return await self._live.request(request)


class AgentCassette:
    """Runs agents against the cassettes of one test (the ``executus_cassette`` fixture).

    Attributes:
        path: the cassette of the next :meth:`run`.
        mode: the record mode in force.
        last: the replay of the last run that was replayed (None after a recording).
    """

    def __init__(self, path: Path, mode: RecordMode) -> None:
        self._first_path = path
        self.path = path
        self.mode: RecordMode = mode
        self.last: ReplayResult | None = None
        self._runs = 0

    def run(
        self,
        agent: Agent,
        input: str,
        invocation: Invocation | None = None,
        *,
        models: ModelResolver | Mapping[str, Model] | None = None,
        clock: Clock | None = None,
    ) -> Result:
        """Replay ``agent`` on ``input`` from the cassette, or record it, as the mode says.

        Args:
            agent: the agent under test (its current prompt, tools, limits and critic).
            input: the run's input.
            invocation: used when recording (caller id, extra tools, session); when
                replaying, only its extra tools are used (a session's tools are not).
            models: resolves the agent's model name when recording.
            clock: the clock to record on (default the wall clock).

        Returns:
            The run's result: replayed, or live when recording.
        """
        self._runs += 1
        if self._runs > 1:
            self.path = self._first_path.with_name(f"{self._first_path.stem}-{self._runs}.jsonl")
        exists = self.path.exists()
        if self.mode == "all" or (self.mode == "once" and not exists) or (self.mode == "new" and not exists):
            return self._record(agent, input, invocation, models, clock, reuse=None)
        if not exists:
            pytest.fail(
                f"executus: cassette {self.path} does not exist and the record mode is {self.mode!r}; "
                "record it with --executus-record-mode=once",
                pytrace=False,
            )
        cassette = load_cassette(self.path)
        if self.mode == "new":
            return self._record(agent, input, invocation, models, clock, reuse=cassette.events)
        if invocation is not None and invocation.tools:
            # Extra tools of the invocation were offered to the model too: replay them as well.
            agent = dataclasses.replace(agent, tools=[*agent.tools, *invocation.tools])
        replay = Replayer().replay_run(cassette, agent=agent)
        self.last = replay
        if replay.divergence is not None:
            miss = next((e for e in replay.replayed if isinstance(e, ModelFailed)), None)
            hint = ""
            if miss is not None and miss.error.type == "RecordingMissError":
                hint = (
                    f"\nthe run needs a model step the cassette does not hold ({miss.error.message}); "
                    "the real model is not called in record mode 'none': re-record with "
                    "--executus-record-mode=new (or all)"
                )
            pytest.fail(f"executus: {self.path.name}: {replay.report()}{hint}", pytrace=False)
        assert replay.result is not None
        return replay.result

    def _record(
        self,
        agent: Agent,
        input: str,
        invocation: Invocation | None,
        models: ModelResolver | Mapping[str, Model] | None,
        clock: Clock | None,
        reuse: Sequence[Event] | None,
    ) -> Result:
        resolver: ModelResolver = (
            ModelRegistry(models) if isinstance(models, Mapping) else models or ModelRegistry()
        )
        live = agent.model if not isinstance(agent.model, str) else resolver(agent.model)
        if reuse is not None:
            agent = dataclasses.replace(agent, model=_ReuseThenLive(reuse, live))
        store = MemoryStore()
        base = invocation or Invocation()
        if reuse and base.run_id is None:
            base = dataclasses.replace(base, run_id=reuse[0].run_id)
        result = Executor(store, models=resolver, clock=clock or SystemClock()).run_sync(agent, base, input)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_cassette(store, result.run_id, self.path)
        self.last = None
        return result


def _default_path(request: pytest.FixtureRequest) -> Path:
    test_file = Path(str(request.node.path))
    marker = request.node.get_closest_marker("executus_cassette")
    if marker is not None and marker.args:
        return test_file.parent / str(marker.args[0])
    name = re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")
    return test_file.parent / "cassettes" / test_file.stem / f"{name}.jsonl"


@pytest.fixture
def executus_cassette(request: pytest.FixtureRequest) -> AgentCassette:
    """Run the test's agent against its cassette (see the module docs for record modes)."""
    return AgentCassette(_default_path(request), _record_mode(request.config))
