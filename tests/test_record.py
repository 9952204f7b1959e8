"""The record tells the truth: log, show, status and diff say what happened to each attempt.

One store is built for the module through the real commands: G000 promoted; G001-a over its step
budget (FAIL); a window of two candidates G002-a and G002-b of which only G002-b is promoted; G003-a
failing in its prepare stage (no new data); G004-z killed mid-way and frozen ABORTED; then a
rollback to G000. Each test reads one fact of that record back.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import VENV_BIN, clone_store, lineage, relaxed_tiny, sh, trained_g000

pytestmark = pytest.mark.slow

TINY = relaxed_tiny(30, 20)


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    store = clone_store(trained_g000(tmp_path_factory, TINY), tmp_path_factory.mktemp("record") / "luna")
    assert lineage(store, "propose", "-S", "train.max_steps=150", check=False).returncode == 1  # G001-a: budget
    lineage(store, "evolve", "-k", "2")                                                        # G002-a, G002-b
    lineage(store, "promote", "candidates/G002-b")
    assert lineage(store, "propose", check=False).returncode == 1                              # G003-a: no new data
    killed = lineage(store, "propose", "--name", "z", check=False, fault="propose:logged")     # G004-z
    assert killed.returncode == -signal.SIGKILL
    lineage(store, "repair")
    lineage(store, "rollback", "--to", "G000", "--reason", "G002 regressed in production")
    return store


def candidates(store) -> dict:
    return {r["branch"].split("/", 1)[1]: r for r in json.loads(lineage(store, "--json", "log").stdout)}


def test_log_marks_only_the_promoted_candidate_of_a_window_as_promoted(record):
    rows = candidates(record)
    assert rows["G002-b"]["promoted"] is True
    assert rows["G002-a"]["promoted"] is False
    assert not rows["G004-z"]["promoted"] and not rows["G001-a"]["promoted"]
    assert [name for name, r in rows.items() if r["head"]] == ["G000-a"]  # main serves G000 after the rollback


def test_log_has_a_row_for_a_rollback(record):
    table = lineage(record, "log").stdout
    rollback = [line for line in table.splitlines() if "rollback" in line.split()]
    assert len(rollback) == 1 and "G000" in rollback[0] and "G002" in rollback[0] and "regressed" in rollback[0]


def test_show_of_an_aborted_attempt_shows_its_own_record_not_another_candidates(record):
    shown = json.loads(lineage(record, "--json", "show", "G004-z").stdout)
    assert shown["verdict"] == "ABORTED" and shown["candidate"] == "candidates/G004-z"
    assert shown["commit"] is None and shown["metrics"] is None and shown["gate"] is None
    assert "interrupted" in shown["reason"]
    text = lineage(record, "show", "G004-z").stdout
    assert "verdict ABORTED" in text and "no evidence" in text and "PASS" not in text


def test_a_pipeline_failure_is_recorded_with_the_stages_own_error_line(record):
    reason = candidates(record)["G003-a"]["reason"]
    assert reason.startswith("no new data since parent G002")
    assert "failed to reproduce" not in reason


def test_show_of_a_failed_attempt_prints_its_reason_and_no_metrics(record):
    text = lineage(record, "show", "G003-a").stdout
    assert "verdict FAIL" in text and "reason: no new data since parent G002" in text
    assert "recall None" not in text
    budget = lineage(record, "show", "G001-a").stdout
    assert "reason: budget exceeded: max_steps" in budget


def test_show_of_a_generation_never_promoted_with_several_attempts_names_them(record):
    proc = lineage(record, "show", "G002", check=False)
    assert proc.returncode == 0  # G002 was promoted (as G002-b): shown as that attempt
    assert "G002-b" in proc.stdout and "other attempts at G002: G002-a (PASS)" in proc.stdout


def test_status_tells_passing_candidates_never_chosen_apart_from_failed_and_aborted_ones(record):
    st = json.loads(lineage(record, "--json", "status", "--no-remote").stdout)
    assert st["head_generation"] == "G000" and st["open_candidates"] == []
    assert "candidates/G002-a (PASS)" in st["not_promoted"]
    assert "candidates/G001-a (FAIL)" in st["not_promoted"] and "candidates/G004-z (ABORTED)" in st["not_promoted"]
    assert not any("G002-b" in line for line in st["not_promoted"])


def test_diff_with_a_failed_attempt_says_it_has_no_weights_instead_of_tampering(record):
    proc = lineage(record, "diff", "G000", "G001-a")
    assert "integrity" not in proc.stdout + proc.stderr and "tampering" not in proc.stdout + proc.stderr
    assert "weights: not compared (G001-a has no weights: budget exceeded: max_steps" in proc.stdout


def test_diff_names_each_criterion_against_bs_thresholds_data_params_and_weights(record):
    proc = lineage(record, "diff", "G000", "G002-b")
    out = proc.stdout
    lines = out.splitlines()
    assert lines[0] == "G000 -> G002-b"
    for criterion in ("recall", "generalize", "tone_drift", "law_violations"):
        row = next(line for line in lines if line.startswith(criterion))
        assert ">=" in row or "<=" in row
        assert "✅" in row or "❌" in row or "n.a." in row
    assert "judged on different probe sets" in out
    assert "data added in G002-b: d001-era1 (" in out and "records)" in out
    assert "-> None" not in out
    assert "weights:" in out and "layers" in out and "relative L2 change" in out
    assert "verdict: G000 PASS (promoted) -> G002-b PASS (promoted)" in out
    d = json.loads(lineage(record, "--json", "diff", "G000", "G002-b").stdout)
    assert d["weights"]["available"] and 0 < d["weights"]["params_changed_pct"] <= 100


def test_a_typo_in_an_override_is_refused_before_anything_is_created(record, tmp_path):
    store = clone_store(record, tmp_path / "luna")
    refs = sh(["git", "for-each-ref"], store).stdout
    proc = lineage(store, "propose", "-S", "train.max_stepz=5", check=False)
    assert proc.returncode == 2 and "max_stepz" in proc.stderr and "max_steps" in proc.stderr
    assert sh(["git", "for-each-ref"], store).stdout == refs  # no branch, no tag, no log event, no number spent


def test_a_failed_propose_prints_the_exact_next_command(record, tmp_path):
    store = clone_store(record, tmp_path / "luna")
    sh(["git", "checkout", "-q", "candidates/G002-a", "--", "data/deltas"], store)  # data to train on
    proc = lineage(store, "propose", "--name", "n", "-S", "train.max_steps=150", check=False)
    assert proc.returncode == 1
    assert "next: 'lineage show G005-n' says why; fix that and run 'lineage propose' again" in proc.stdout
    assert "this attempt keeps G005: the next one takes a new number" in proc.stdout
    assert "reason: budget exceeded" in lineage(store, "show", "G005-n").stdout


def test_json_is_accepted_after_the_subcommand_as_before_it(record):
    after = json.loads(lineage(record, "status", "--no-remote", "--json").stdout)
    before = json.loads(lineage(record, "--json", "status", "--no-remote").stdout)
    assert after == before


def test_ctrl_c_exits_130_not_1(record, tmp_path):
    store = clone_store(record, tmp_path / "luna")
    sh(["git", "checkout", "-q", "candidates/G002-a", "--", "data/deltas"], store)  # some data to train on
    proc = subprocess.Popen([sys.executable, "-m", "lineage", "propose", "--name", "i"], cwd=store,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    operations = store / ".git" / "lineage" / "operations"  # kept from earlier commands: wait for this one's
    while time.monotonic() < deadline and not list(operations.glob("*.json")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "error: interrupted" in err


def test_the_wall_budget_projection_warns_early_and_stops_only_when_certain():
    from lineage.adapters.training import wall_projection

    # 10 of 100 steps in 60 s: about 10 min at this pace; the fastest step (3 s) still needs 5.5 min
    average, floor = wall_projection(10, 100, 60.0, 3.0)
    assert round(average, 2) == 10.0 and round(floor, 2) == 5.5
    assert wall_projection(100, 100, 60.0, 3.0) == (1.0, 1.0)


def test_a_git_merge_the_hook_refused_is_seen_by_status_and_repair_puts_mains_files_back(record, tmp_path):
    store = clone_store(record, tmp_path / "luna")
    sh(["git", "checkout", "-q", "candidates/G002-a", "--", "data/deltas"], store)  # data to train on
    assert lineage(store, "propose", "--name", "f", "-S", "train.max_steps=150", check=False).returncode == 1
    main = sh(["git", "rev-parse", "main"], store).stdout.strip()
    refused = sh(["git", "merge", "--ff-only", "candidates/G005-f"], store, check=False)
    assert refused.returncode != 0 and sh(["git", "rev-parse", "main"], store).stdout.strip() == main
    st = json.loads(lineage(store, "--json", "status", "--no-remote").stdout)
    assert "lineage repair" in st["work_tree"]
    blocked = lineage(store, "propose", "--name", "g", check=False)
    assert blocked.returncode == 3 and "lineage repair" in blocked.stderr
    repaired = lineage(store, "repair")
    assert "back" in repaired.stderr
    staged = sh(["git", "diff", "--cached", "--name-only"], store).stdout.split()
    assert all(p.startswith("data/deltas/") for p in staged)
    assert json.loads(lineage(store, "--json", "status", "--no-remote").stdout)["work_tree"] == "clean"
    assert lineage(store, "verify").returncode == 0


def test_propose_takes_the_outputs_of_a_dvc_repro_the_user_ran(record, tmp_path):
    store = clone_store(record, tmp_path / "luna")
    sh(["git", "checkout", "-q", "candidates/G002-a", "--", "data/deltas"], store)
    sh([VENV_BIN / "dvc", "repro"], store)
    reproduced = json.loads((store / "reports" / "train" / "metrics.json").read_text())["weights_sha256"]
    proc = lineage(store, "propose", "--name", "r")
    assert "takes the outputs of the dvc repro you ran" in proc.stderr
    frozen = json.loads(sh(["git", "show", "candidates/G005-r:reports/train/metrics.json"], store).stdout)
    assert frozen["weights_sha256"] == reproduced
