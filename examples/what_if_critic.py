"""What-if: would a stricter critic have killed a stuck run sooner?

Records a run whose tool hangs (on a virtual clock: minutes pass in milliseconds), then
replays the recorded run with other critics running live, and prints what each would have
done. The same works on any stored run or cassette:

    executus replay RUN --what-if-critic mymodule:strict_critic

Run it from the repository root: ``python examples/what_if_critic.py``.
"""

from __future__ import annotations

import asyncio

from executus import Agent, Executor, IdleCritic, Ladder, VirtualClock, extend, kill, nudge, tool
from executus.storage import MemoryStore
from executus.testing import ScriptedModel, call
from replay import Replayer


@tool
async def fetch(url: str) -> str:
    """Fetch a web page.

    Args:
        url: the page's address.
    """
    await asyncio.sleep(3600)  # the server never answers
    return "<html>…</html>"


def record_stuck_run() -> tuple[MemoryStore, str]:
    """A scraper whose fetch hangs; the default critic nudges, extends, then kills it."""
    store = MemoryStore()
    agent = Agent(
        name="scraper",
        model=ScriptedModel([call("fetch", url="https://example.com/slow"), "done"]),
        system_prompt="Fetch the page and summarise it.",
        tools=[fetch],
        max_runtime=1800,
        critic=IdleCritic(idle_after=120),
    )
    result = Executor(store, clock=VirtualClock()).run_sync(agent, None, "Summarise example.com/slow")
    return store, result.run_id


CRITICS = {
    "strict (kill after 60 s idle)": IdleCritic(idle_after=60, policy=Ladder([kill("idle for a minute")])),
    "patient (5 min idle periods: nudge, extend, kill)": IdleCritic(
        idle_after=300, policy=Ladder([nudge("Still waiting?"), extend(600), kill("idle for 15 minutes")])
    ),
    "no critic at all": None,
}


def main() -> None:
    store, run_id = record_stuck_run()
    print(f"recorded run {run_id}: {store.get_run(run_id).status}, {store.get_run(run_id).end_cause}\n")
    replayer = Replayer(blobs=store)
    for label, critic in CRITICS.items():
        print(f"## {label}")
        print(replayer.what_if(store.read_run(run_id), critic))
        print()


if __name__ == "__main__":
    main()
