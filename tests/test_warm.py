"""The warm stage server: a stage forked from it does what the stage does in its own process.

The whole suite runs its stages through a warm server (conftest.py); these tests prove the fork is
faithful: same weights as a cold run, the stage's exit code and death by signal passed on, a killed
stage process takes its fork with it, and without a server a stage runs in its own process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import stage

pytestmark = pytest.mark.slow


def weights(store: Path) -> str:
    return json.loads((store / "reports" / "train" / "metrics.json").read_text())["weights_sha256"]


@pytest.fixture
def warm_socket() -> str:
    path = os.environ.get("LINEAGE_WARM")
    if not path:
        pytest.fail("the suite runs without a warm server (LINEAGE_TEST_COLD is set?)")
    return path


def test_a_stage_run_in_the_warm_server_trains_the_same_weights_as_in_its_own_process(prepared_store, warm_socket,
                                                                                      monkeypatch):
    code, _, err = stage(prepared_store, "train")
    assert code == 0, err
    warm = weights(prepared_store)
    (prepared_store / "reports" / "train" / "metrics.json").unlink()
    monkeypatch.delenv("LINEAGE_WARM")
    code, _, err = stage(prepared_store, "train")
    assert code == 0, err
    assert weights(prepared_store) == warm


def test_a_stage_error_in_the_warm_server_is_one_line_and_its_exit_code(store, warm_socket):
    code, out, err = stage(store, "eval")  # nothing trained yet: metrics error, exit 3
    assert code == 3
    assert [line for line in err.splitlines() if line.startswith("error:")] and "Traceback" not in err


def test_killing_a_stage_process_kills_its_fork_in_the_warm_server(prepared_store, warm_socket):
    proc = subprocess.Popen([sys.executable, "stages/train.py"], cwd=prepared_store, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    forks = []
    while time.monotonic() < deadline and not forks:
        forks = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_fork_of(p, prepared_store)]
        time.sleep(0.05)
    assert forks, "the stage never reached the warm server"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(p.exists() and _alive(p) for p in forks):
        time.sleep(0.05)
    assert not any(p.exists() and _alive(p) for p in forks), "the fork outlived its stage"


def _is_fork_of(proc: Path, store: Path) -> bool:
    try:
        return os.readlink(proc / "cwd") == str(store) and b"lineage.adapters.warm" in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def _alive(proc: Path) -> bool:
    try:
        return (proc / "stat").read_text().split(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_without_a_warm_server_a_stage_runs_in_its_own_process(store, monkeypatch, tmp_path):
    monkeypatch.setenv("LINEAGE_WARM", str(tmp_path / "nobody-listens.sock"))
    code, _, err = stage(store, "parent")
    assert code == 0, err
    assert (store / "reports" / "parent.json").is_file()
