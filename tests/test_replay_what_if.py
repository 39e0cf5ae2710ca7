"""What-if replay: try another critic on a recorded run and see whether and when it acts."""

from __future__ import annotations

from test_replay_scenarios import GOLDEN

from executus import IdleCritic, Ladder, extend, kill, nudge
from replay import Replayer, load_cassette


def test_a_stricter_critic_would_have_killed_earlier() -> None:
    killed = load_cassette(GOLDEN / "killed.jsonl")
    report = Replayer().what_if(killed, IdleCritic(idle_after=20, policy=Ladder([kill("idle for 20s")])))
    assert (report.recorded_status, report.replayed_status) == ("killed", "killed")
    assert report.killed_at == 20.0
    assert [(a.decision, a.offset) for a in report.recorded_decisions] == [
        ("nudge", 60.0),
        ("extend", 120.0),
        ("kill", 180.0),
    ]
    assert str(report).splitlines() == [
        "what-if critic: IdleCritic (check_interval=5.0, idle_after=20, policy=['kill'])",
        "  recorded: killed at +3m00.0s (nudge at +1m00.0s, extend at +2m00.0s, kill at +3m00.0s)",
        "  what-if:  killed at +20s (kill at +20s)",
        "  => would still have been killed, 2m40.0s earlier",
    ]


def test_without_a_critic_the_stuck_run_would_have_timed_out() -> None:
    report = Replayer().what_if(load_cassette(GOLDEN / "killed.jsonl"), None)
    assert (report.replayed_status, report.replayed_duration, report.killed_at) == ("timeout", 300.0, None)
    assert str(report).endswith("=> would not have been killed (ends timeout)")


def test_a_critic_that_extends_forever_leaves_the_run_unfinished_at_the_horizon() -> None:
    patient = IdleCritic(idle_after=60, policy=Ladder([nudge("Anything?"), extend(600)]))
    report = Replayer(horizon=600).what_if(load_cassette(GOLDEN / "killed.jsonl"), patient)
    assert (report.replayed_status, report.replayed_duration) == ("unfinished", 780.0)
    assert [a.decision for a in report.replayed_decisions][:3] == ["nudge", "extend", "extend"]
    assert report.changed
    assert str(report).splitlines()[2:] == [
        "  what-if:  still running at the replay horizon at +13m00.0s (nudge at +1m00.0s, extend at "
        "+2m00.0s, extend at +3m00.0s, extend at +4m00.0s, extend at +5m00.0s, … 7 more)",
        "  => would not have been killed (ends unfinished)",
    ]


def test_a_critic_that_never_fires_on_a_healthy_run_changes_nothing() -> None:
    ok = load_cassette(GOLDEN / "ok.jsonl")
    result = Replayer().replay_run(ok, what_if_critic=IdleCritic(idle_after=5, policy=Ladder([kill()])))
    assert result.what_if is not None
    assert not result.what_if.changed
    assert result.what_if.replayed_status == "ok"
    assert result.identical, result.report()


def test_external_inputs_still_arrive_in_a_what_if_replay() -> None:
    cancelled = load_cassette(GOLDEN / "cancelled.jsonl")
    report = Replayer().what_if(cancelled, IdleCritic(idle_after=10, policy=Ladder([nudge("hurry up")])))
    assert report.replayed_status == "cancelled"
    assert report.replayed_duration == 25.5
    assert [(a.decision, a.offset) for a in report.replayed_decisions] == [("nudge", 10.0), ("nudge", 20.0)]
