"""Candidates, promotion through the arbiter, the hook, rollback and the fossil record.

A tiny model with a relaxed policy keeps this fast; the gate's honesty on the real tiny model is
proven in test_gate_honesty.py. Here the point is what may move the protected branch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

TINY = {
    "scratch": {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4,
                "learning_rate": 0.003, "max_steps": 30},
    "train": {"max_steps": 20, "checkpoint_every": 1000},
    "policy": {"generalize_gain": -1.0, "max_tone_drift": 1.0, "recall_tolerance": 1.0,
               "delta_recall_tolerance": 1.0, "max_law_violations": 100, "first_generation": {"min_recall": 0.0, "min_generalize": 0.0},
               "budget": {"max_steps": 100}},
}


def sh(args, cwd, check=True):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def lineage(cwd, *args, check=True):
    return sh([sys.executable, "-m", "lineage", *args], cwd, check)


def tip(store: Path, ref: str = "main") -> str:
    return sh(["git", "rev-parse", ref], store).stdout.strip()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    base = tmp_path_factory.mktemp("promotion")
    store = base / "luna"
    store.mkdir()
    params = yaml.safe_load((Path(__file__).parents[1] / "lineage" / "template" / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    lineage(base, "init", str(store))
    first = lineage(store, "propose")
    assert "G000" in first.stdout and "PASS" in first.stdout, first.stdout + first.stderr
    lineage(store, "promote", "candidates/G000-a")
    lineage(store, "corpus", "write", "1", str(base / "era1.jsonl"))
    lineage(store, "data", "add", str(base / "era1.jsonl"))
    failed = lineage(store, "propose", "--name", "a", "-S", "train.max_steps=150", check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    return store


def test_propose_freezes_a_failed_run_with_its_reason(store):
    frozen = json.loads(sh(["git", "tag", "-l", "--format=%(contents)", "lineage/frozen/G001-a"], store).stdout)
    assert frozen["verdict"] == "FAIL"
    assert "budget exceeded" in frozen["reason"] and "max_steps" in frozen["reason"]
    message = sh(["git", "log", "-1", "--format=%B", "candidates/G001-a"], store).stdout
    assert "Generation: G001" in message and "Parent: G000" in message and "Verdict: FAIL" in message


def test_git_update_ref_to_a_failed_candidate_is_refused_by_the_hook(store):
    before = tip(store)
    proc = sh(["git", "update-ref", "refs/heads/main", "candidates/G001-a"], store, check=False)
    assert proc.returncode != 0
    assert "lineage: refused to move refs/heads/main" in proc.stderr
    assert tip(store) == before


def test_merge_ff_only_and_commit_no_verify_on_main_are_refused(store):
    before = tip(store)
    assert sh(["git", "merge", "--ff-only", "candidates/G001-a"], store, check=False).returncode != 0
    assert sh(["git", "commit", "--allow-empty", "--no-verify", "-m", "sneak"], store, check=False).returncode != 0
    assert sh(["git", "reset", "--hard", "candidates/G001-a"], store, check=False).returncode != 0
    assert tip(store) == before
    # git rewrote the work tree before the hook refused the ref move: put it back
    sh(["git", "reset", "-q", "--hard", "main"], store)
    sh(["git", "checkout", "candidates/G001-a", "--", "data/deltas/.gitignore", "data/deltas/d001-era1.jsonl.dvc"], store)


def test_lineage_promote_of_a_failed_candidate_says_why_and_moves_nothing(store):
    before = tip(store)
    proc = lineage(store, "promote", "candidates/G001-a", check=False)
    assert proc.returncode == 1
    assert "error: refused to move refs/heads/main" in proc.stderr
    assert tip(store) == before


def test_passing_candidate_is_merged_fast_forward_through_the_hook_then_rolled_back(store):
    passed = lineage(store, "propose", "--name", "b")
    assert "G002" in passed.stdout and "PASS" in passed.stdout
    candidate = tip(store, "candidates/G002-b")
    sh(["git", "merge", "--ff-only", "candidates/G002-b"], store)  # allowed: the arbiter says PASS
    assert tip(store) == candidate  # byte-for-byte the evaluated commit

    refused = lineage(store, "rollback", "--to", "G001", "--reason", "never promoted", check=False)
    assert refused.returncode != 0 and "never promoted" in refused.stderr
    assert tip(store) == candidate

    lineage(store, "rollback", "--to", "G000", "--reason", "answers regressed")
    message = sh(["git", "log", "-1", "--format=%B", "main"], store).stdout
    assert "Rollback-From: G002" in message and "Rollback-To: G000" in message and "Reason: answers regressed" in message
    assert sh(["git", "rev-parse", "main~1"], store).stdout.strip() == candidate  # forward, never a rewrite
    g000 = sh(["git", "show", "lineage/gen/G000:reports/train/hashes.csv"], store).stdout
    assert (store / "reports" / "train" / "hashes.csv").read_text() == g000
    from lineage.pipeline.parent import check_against, parse_hashes_csv

    check_against(store / "models" / "child", parse_hashes_csv(g000), "G000")  # weights back in place


def test_lineage_log_lists_every_attempt_pass_or_fail(store):
    rows = json.loads(lineage(store, "--json", "log").stdout)
    by_gen = {r["generation"]: r for r in rows}
    assert by_gen["G000"]["verdict"] == "PASS" and by_gen["G000"]["promoted"]
    assert by_gen["G001"]["verdict"] == "FAIL" and not by_gen["G001"]["promoted"]
