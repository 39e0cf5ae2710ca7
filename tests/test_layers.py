"""The layering contract (.importlinter) holds, and fails when a floor imports one above it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=where, capture_output=True, text=True, check=False
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the three packages and the contract, to plant back-edges in."""
    for package in ("executus", "store", "replay"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    return tmp_path


def test_the_floors_hold_in_this_tree(tree: Path) -> None:
    result = _lint_imports(tree)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("module", "planted"),
    [
        ("executus/_events.py", "import executus.cli"),  # the core reaching for the CLI
        ("store/_engine.py", "from executus.cli import cli"),
        ("executus/_state.py", "import asyncio"),  # the core doing IO
        ("store/_schema.py", "import replay"),  # a floor reaching up one
    ],
)
def test_a_back_edge_breaks_the_contract(tree: Path, module: str, planted: str) -> None:
    with (tree / module).open("a") as file:
        file.write(f"\n{planted}  # planted\n")
    result = _lint_imports(tree)
    assert result.returncode == 1
    assert "BROKEN" in result.stdout
