"""The what-if example under examples/ runs and says what each critic would have done."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_the_what_if_example(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "what_if_critic.py"), run_name="__main__")
    output = capsys.readouterr().out
    assert "critic_kill: the run stayed idle after nudges and an extension" in output
    assert "  => would still have been killed, 5m00.0s earlier" in output
    assert "  => would still have been killed, 9m00.0s later" in output
    assert "  what-if:  timeout at +30m00.0s (no critic decisions)" in output
