"""`executus verify`, `checkpoint` and `export --force|--evidence` as an auditor uses them."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

import store as sql_store
from executus import SequentialIds, VirtualClock
from executus.cli import cli
from executus.cli._common import Settings
from executus.cli._demo import record_demo
from store._engine import create_store_engine

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RUN = "demo-0001"


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "demo.db"
    with sql_store.open_store(f"sqlite:///{path}") as opened:
        record_demo(opened, VirtualClock(START), SequentialIds("demo-"))
    return path


@pytest.fixture
def db(demo_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "demo.db"
    shutil.copyfile(demo_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, str]:
    """A signer key file and its verifier key, made the way the README says."""
    key_file = tmp_path / "ledger.key"
    made = invoke("checkpoint", "--new-key", "example.com/ledger", "--key", str(key_file))
    assert made.exit_code == 0, made.output
    assert key_file.stat().st_mode & 0o077 == 0  # readable by its owner only
    return key_file, made.stdout.strip()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    settings = Settings(now=lambda: START + timedelta(hours=1))
    return CliRunner().invoke(cli, list(args), obj=settings, env=env)


def tamper(url: str, statement: str) -> None:
    engine = create_store_engine(url)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


EDIT_PAYLOAD = (
    f"UPDATE events SET payload = replace(payload, 'Everest', 'K2') WHERE run_id = '{RUN}' AND seq = 3"
)


def test_verify_all_exits_0_when_intact_and_1_naming_run_and_seq(db: str) -> None:
    intact = invoke("--db", db, "verify", "--all")
    assert intact.exit_code == 0, intact.output
    assert "intact (7 runs, 71 events verified)" in intact.stdout
    tamper(db, EDIT_PAYLOAD)
    broken = invoke("--db", db, "verify", "--all")
    assert broken.exit_code == 1
    assert broken.stdout.splitlines()[0].startswith(f"run {RUN} seq 3: payload changed: ")
    assert invoke("--db", db, "verify", RUN[:8] + "1").exit_code == 1
    assert invoke("--db", db, "verify", "demo-0002").exit_code == 0
    as_json = json.loads(invoke("--db", db, "verify", "--all", "--json").stdout)
    assert as_json["ok"] is False
    assert as_json["findings"][0] == {
        "run_id": RUN,
        "seq": 3,
        "problem": "payload_changed",
        "detail": "the row's hash does not cover its content and the previous event's hash",
    }


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "give exactly one of RUN, --all"),
        (("demo-0001", "--all"), "give exactly one of RUN, --all"),
        (("demo-0001", "--since", "2h"), "--since goes with --all"),
        (("nope-0001",), "no run 'nope-0001'"),
        (("--bundle", "missing.jsonl", "--verifier", "a+00000000+AA=="), "verifier key is unusable"),
        (("--checkpoint", "missing.txt"), "cannot read checkpoint missing.txt"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db: str, args: tuple[str, ...], fragment: str) -> None:
    result = invoke("--db", db, "verify", *args, env={"EXECUTUS_CHECKPOINT_VERIFIER": ""})
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr


def test_verify_names_a_deleted_run_by_its_full_id(db: str) -> None:
    tamper(db, "DELETE FROM events WHERE run_id = 'demo-0002'")
    tamper(db, "DELETE FROM runs WHERE run_id = 'demo-0002'")
    result = invoke("--db", db, "verify", "demo-0002")
    assert result.exit_code == 1
    assert result.stdout.startswith(
        "run demo-0002 seq 9: run deleted: ledger entry 1 sealed it at seq 9 (killed)"
    )
    unknown = invoke("--db", db, "verify", "nope-0002")
    assert unknown.exit_code == 2
    assert "no run 'nope-0002'" in unknown.stderr


def test_export_refuses_a_tampered_run_and_force_records_why(db: str, tmp_path: Path) -> None:
    tamper(db, EDIT_PAYLOAD)
    refused = invoke("--db", db, "export", RUN, "-o", str(tmp_path / "x.jsonl"))
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: refusing to export run {RUN}: run {RUN} seq 3: payload changed")
    assert not (tmp_path / "x.jsonl").exists()
    forced = invoke("--db", db, "export", RUN, "--force", "-o", str(tmp_path / "x.jsonl"))
    assert forced.exit_code == 0, forced.output
    header = json.loads((tmp_path / "x.jsonl").read_text().splitlines()[0])
    assert header["verification_failures"][0].startswith(f"run {RUN} seq 3: payload changed")
    other = tmp_path / "other.db"
    imported = invoke("--db", f"sqlite:///{other}", "import", str(tmp_path / "x.jsonl"))
    assert imported.exit_code == 2
    assert "failed verification when it was exported" in imported.stderr


def test_checkpoint_then_verify_against_it(db: str, tmp_path: Path, keys: tuple[Path, str]) -> None:
    key_file, verifier = keys
    checkpoint = tmp_path / "checkpoint.txt"
    signed = invoke("--db", db, "checkpoint", "--key", str(key_file), "-o", str(checkpoint))
    assert signed.exit_code == 0, signed.output
    assert checkpoint.read_text().split("\n")[:2] == ["example.com/ledger", "7"]
    ok = invoke("--db", db, "verify", "--checkpoint", str(checkpoint), "--verifier", verifier)
    assert ok.exit_code == 0, ok.output
    for table in ("events", "runs", "ledger"):
        tamper(db, f"DELETE FROM {table} WHERE run_id = 'demo-0002'")
    broken = invoke("--db", db, "verify", "--checkpoint", str(checkpoint), "--verifier", verifier)
    assert broken.exit_code == 1
    assert (
        "ledger: ledger changed: the checkpoint vouches for 7 seals but the ledger holds 6" in broken.stdout
    )
    impostor = tmp_path / "impostor.key"
    made = invoke("checkpoint", "--new-key", "example.com/ledger", "--key", str(impostor))
    forged = invoke("--db", db, "verify", "--checkpoint", str(checkpoint), "--verifier", made.stdout.strip())
    assert forged.exit_code == 2
    assert "is not signed by example.com/ledger" in forged.stderr


def test_the_signer_key_comes_from_the_environment_too(db: str, keys: tuple[Path, str]) -> None:
    key_file, _ = keys
    by_file = invoke("--db", db, "checkpoint", env={"EXECUTUS_CHECKPOINT_KEY_FILE": str(key_file)})
    by_text = invoke("--db", db, "checkpoint", env={"EXECUTUS_CHECKPOINT_KEY": key_file.read_text()})
    assert by_file.exit_code == by_text.exit_code == 0
    assert by_file.stdout.split("\n")[:3] == by_text.stdout.split("\n")[:3]
    missing = invoke(
        "--db", db, "checkpoint", env={"EXECUTUS_CHECKPOINT_KEY": "", "EXECUTUS_CHECKPOINT_KEY_FILE": ""}
    )
    assert missing.exit_code == 2
    assert "a signing key is needed" in missing.stderr


def test_an_evidence_bundle_verifies_offline_and_refuses_forgeries(
    db: str, tmp_path: Path, keys: tuple[Path, str]
) -> None:
    key_file, verifier = keys
    bundle = tmp_path / "bundle.jsonl"
    exported = invoke("--db", db, "export", RUN, "--evidence", "--key", str(key_file), "-o", str(bundle))
    assert exported.exit_code == 0, exported.output
    good = invoke(
        "verify", "--bundle", str(bundle), "--verifier", verifier, env={"EXECUTUS_DB": "sqlite:///"}
    )
    assert good.exit_code == 0, good.output
    assert f"bundle {bundle}: intact" in good.stdout
    lines = bundle.read_text().splitlines(keepends=True)

    def forged(name: str, new_lines: list[str]) -> Result:
        path = tmp_path / name
        path.write_text("".join(new_lines))
        return invoke("verify", "--bundle", str(path), "--verifier", verifier)

    edited_event = [*lines[:3], lines[3].replace("Everest", "K2"), *lines[4:]]
    result = forged("edited.jsonl", edited_event)
    assert result.exit_code == 1
    assert f"run {RUN} seq 12: seal differs" in result.stdout

    header = json.loads(lines[0])
    header["evidence"]["inclusion"][0] = header["evidence"]["inclusion"][1]
    result = forged(
        "proof.jsonl", [json.dumps(header, sort_keys=True, separators=(",", ":")) + "\n", *lines[1:]]
    )
    assert result.exit_code == 1
    assert "proof invalid" in result.stdout

    impostor = tmp_path / "impostor.key"
    other = invoke("checkpoint", "--new-key", "example.com/ledger", "--key", str(impostor)).stdout.strip()
    result = invoke("verify", "--bundle", str(bundle), "--verifier", other)
    assert result.exit_code == 1
    assert "checkpoint invalid: the checkpoint is not signed by example.com/ledger" in result.stdout
