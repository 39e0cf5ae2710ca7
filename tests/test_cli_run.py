"""``executus run`` as a real subprocess against a loopback model server: live output, the
recorded run, exit codes, Ctrl-C, ``show --follow`` while the reply streams, and bad inputs."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from _loopback import (
    MODEL_NAMES,
    Call,
    Scripted,
    anthropic_stream,
    executus_command,
    openai_error,
    openai_stream,
    provider_environment,
    serving_in_thread,
    sse_reply,
    write_agent_module,
)

from store import SqlStore

KEY = "sk-loopback-secret-0123456789"
STREAMS = {"openai": openai_stream, "anthropic": anthropic_stream}


@pytest.fixture
def workdir(tmp_path: Path, sqlite_template: Path) -> Path:
    shutil.copyfile(sqlite_template, tmp_path / "runs.db")
    write_agent_module(tmp_path, "openai")
    return tmp_path


def db_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'runs.db'}"


def executus_run(
    workdir: Path, env: dict[str, str], *arguments: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*executus_command(), "run", *arguments, "--db", db_url(workdir)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("provider", sorted(STREAMS))
def test_a_run_streams_live_records_and_exits_0(provider: str, workdir: Path) -> None:
    write_agent_module(workdir, provider)
    stream = STREAMS[provider]
    replies = [
        sse_reply(stream(Scripted(calls=(Call("call_a", "add", {"a": 1, "b": 2}),)))),
        sse_reply(stream(Scripted(text="1 + 2 = 3.\nDone \x1b]52;c;cGF5bG9hZA==\x07here."))),
    ]
    with serving_in_thread(*replies) as server:
        done = executus_run(
            workdir,
            provider_environment(provider, server.url, KEY),
            "calc_agent:agent",
            "1+2?",
            "--caller",
            "ana",
        )

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    run_id = lines[-1].removeprefix("run id: ")
    assert lines[0].startswith(f"run {run_id}: calc on {MODEL_NAMES[provider]}, recorded in sqlite:///")
    assert "step 1: asking the model" in lines
    assert "  → add(a=1, b=2) [call_a]" in lines
    assert "  ← add [call_a]: 3" in lines
    assert "  1 + 2 = 3." in lines
    assert "  Done \\x1b]52;c;cGF5bG9hZA==\\x07here." in lines  # the payload made inert
    assert "\x1b" not in done.stdout
    assert lines[-4].startswith("ok  2 steps · 36 tokens · ")
    with SqlStore(db_url(workdir)) as store:
        summary = store.get_run(run_id)
        kinds = [event.kind for event in store.read_run(run_id)]
    assert (summary.status, summary.caller_id) == ("ok", "ana")
    assert kinds.count("model_chunk") == 2


def test_json_prints_the_result_only(workdir: Path) -> None:
    with serving_in_thread(sse_reply(openai_stream(Scripted(text="It is 3.")))) as server:
        done = executus_run(
            workdir, provider_environment("openai", server.url, KEY), "calc_agent:agent", "1+2?", "--json"
        )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["status"], result["output"], result["steps"]) == ("ok", "It is 3.", 1)
    assert result["usage"]["output_tokens"] == 7


def test_a_run_that_ends_in_error_exits_1_with_its_run_id(workdir: Path) -> None:
    with serving_in_thread(openai_error(400, "No such model.", "model_not_found")) as server:
        done = executus_run(
            workdir, provider_environment("openai", server.url, KEY), "calc_agent:agent", "1+2?"
        )

    assert done.returncode == 1
    assert "model failed: ModelCallError: openai gpt-4.1-mini: HTTP 400 model_not_found" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("run id: ")
    assert KEY not in done.stdout + done.stderr


def test_ctrl_c_cancels_the_run_while_show_follow_displays_the_streamed_text(workdir: Path) -> None:
    events = openai_stream(Scripted(text="Thinking about it slowly, then more."))
    with serving_in_thread(sse_reply(events, hang_after=5)) as server:
        env = provider_environment("openai", server.url, KEY)
        run = popen(workdir, env, "run", "calc_agent:agent", "1+2?")
        try:
            seen = read_until(run, "Thinking")  # printed while the reply is still streaming
            run_id = seen.splitlines()[0].split()[1].rstrip(":")
            follow = popen(workdir, env, "show", run_id[:8], "--follow")
            try:
                followed = read_until(follow, "model_chunk")
                assert "step 1: streaming “Thinking" in followed
            finally:
                follow.send_signal(signal.SIGINT)
                follow.communicate(timeout=60)
            run.send_signal(signal.SIGINT)
            rest, errors = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
    assert run.returncode == 1, errors
    assert errors == ""
    assert "cancelled (caller): interrupted from the terminal (Ctrl-C)" in rest
    assert rest.splitlines()[-1] == f"run id: {run_id}"
    with SqlStore(db_url(workdir)) as store:
        logged = store.read_run(run_id)
    assert [event.kind for event in logged][-3:] == ["model_chunk", "run_cancelled", "run_finished"]
    cancelled = next(event for event in logged if event.kind == "run_cancelled")
    assert cancelled.cause == "caller"
    assert "".join(event.text for event in logged if event.kind == "model_chunk").startswith("Thinking")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "no_such_module:agent",
            "error: cannot load an agent no_such_module:agent: No module named 'no_such_module'",
        ),
        (
            "calc_agent:nothing",
            "error: cannot load an agent calc_agent:nothing: module 'calc_agent' has no attribute 'nothing'",
        ),
        ("calc_agent", "error: an agent must be given as module:attribute, not 'calc_agent'"),
        ("calc_agent:add", "error: calc_agent:add is a Tool, not an agent"),
    ],
)
def test_a_bad_agent_is_one_line_and_exit_2(workdir: Path, spec: str, message: str) -> None:
    done = executus_run(workdir, provider_environment("openai", "http://127.0.0.1:9", KEY), spec, "1+2?")

    assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n")


def test_a_missing_api_key_is_one_line_exit_2_and_nothing_recorded(workdir: Path) -> None:
    done = executus_run(
        workdir, provider_environment("openai", "http://127.0.0.1:9", None), "calc_agent:agent", "hi"
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: no openai API key: set OPENAI_API_KEY")
    assert done.stderr.count("\n") == 1
    with SqlStore(db_url(workdir)) as store:
        assert store.list_runs() == []


def test_an_unreachable_endpoint_is_one_line_exit_2_and_nothing_recorded(workdir: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    done = executus_run(
        workdir, provider_environment("openai", f"http://127.0.0.1:{port}", KEY), "calc_agent:agent", "hi"
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: cannot reach openai:gpt-4.1-mini at http://127.0.0.1:{port}/v1")
    assert done.stderr.count("\n") == 1
    with SqlStore(db_url(workdir)) as store:
        assert store.list_runs() == []


def popen(workdir: Path, env: dict[str, str], *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*executus_command(), *arguments, "--db", db_url(workdir)],
        cwd=workdir,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(process: subprocess.Popen[str], wanted: str, timeout: float = 60) -> str:
    """What ``process`` printed until ``wanted`` appeared (it keeps running)."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    descriptor = process.stdout.fileno()
    while wanted not in seen:
        assert time.monotonic() < deadline, f"no {wanted!r} in {seen!r}"
        ready, _, _ = select.select([descriptor], [], [], 0.1)
        if ready:
            data = os.read(descriptor, 65536).decode()
            assert data, f"the process ended before printing {wanted!r}: {seen!r}"
            seen += data
    return seen


def test_a_retried_attempt_is_shown_and_the_run_goes_on(workdir: Path) -> None:
    replies = [openai_error(503, "Busy.", "overloaded"), sse_reply(openai_stream(Scripted(text="It is 3.")))]
    with serving_in_thread(*replies) as server:
        done = executus_run(
            workdir, provider_environment("openai", server.url, KEY), "calc_agent:agent", "1+2?"
        )

    assert done.returncode == 0, done.stderr
    assert (
        "  attempt 1 failed: ModelCallError: openai gpt-4.1-mini: HTTP 503 overloaded: Busy." in done.stdout
    )
    assert "; retrying in " in done.stdout
    assert "  It is 3." in done.stdout.splitlines()
