"""The evolution loop: windows, K candidates, ranking, proposal, approval, autonomy, burn-in, stats.

A tiny model with a relaxed policy keeps this fast; what may move the protected branch is the point.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import clone_store, lineage, relaxed_tiny, sh, trained_g000

pytestmark = pytest.mark.slow

# A tiny G000 pre-trained long enough to know era 0, whose gentle children can honestly beat it on
# the composite score (the window proposes only a candidate above HEAD's); a fraction of the
# template model's cost. Every test here starts from it (one G000 built per run).
TAUGHT = relaxed_tiny(300, 150, budget_steps=None, train={"learning_rate": 0.0003},
                      evolve={"k": 2, "max_concurrent_experiments": 3, "cooldown_cycles": 0, "evo_period_cycles": 2})


def events(store):
    return [json.loads(x) for x in lineage(store, "log", "--format", "jsonl").stdout.splitlines()]


@pytest.fixture
def store(tmp_path_factory, tmp_path):
    return clone_store(trained_g000(tmp_path_factory, TAUGHT), tmp_path / "luna")


@pytest.mark.parametrize("args, message", [
    (["-k", "4"], "outside 1..3"),
    (["-k", "2", "--seeds", "7,7"], "duplicate seeds"),
    (["-k", "1", "--strategies", "freshest"], "does not exist"),
])
def test_bad_window_requests_are_refused_and_nothing_moves(store, args, message):
    before = sh(["git", "for-each-ref"], store).stdout
    proc = lineage(store, "evolve", *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert sh(["git", "for-each-ref"], store).stdout == before


def test_window_runs_k_candidates_freezes_all_and_proposes_the_best(store):
    out = lineage(store, "evolve").stdout
    assert "rank" in out and "G001-a" in out and "G001-b" in out
    tags = sh(["git", "tag", "-l", "lineage/frozen/G001-*"], store).stdout.split()
    assert len(tags) == 2
    manifests = [json.loads(sh(["git", "show", f"{t}:reports/train/manifest.json"], store).stdout) for t in tags]
    assert len({m["seed"] for m in manifests}) == 2
    assert {m["data"]["strategy"] for m in manifests} == {"recent_weighted", "uniform"}
    assert "proposed" in out, out
    proposal = json.loads(lineage(store, "--json", "proposal", "show").stdout)
    assert proposal["status"] == "open" and proposal["risk"] == "low"
    before = sh(["git", "rev-parse", "main"], store).stdout.strip()
    lineage(store, "proposal", "approve")
    assert sh(["git", "rev-parse", "main"], store).stdout.strip() == proposal["commit"] != before
    log = events(store)
    assert any(e["event"] == "APPROVE" and e["generation"] == "G001" for e in log)
    tag = json.loads(sh(["git", "tag", "-l", "--format=%(contents)", "lineage/gen/G001"], store).stdout)
    assert tag["approved_by"]  # the person's approval travels with the generation
    again = lineage(store, "proposal", "approve", check=False)
    assert again.returncode == 2 and "already promoted" in again.stderr
    stats = json.loads(lineage(store, "--json", "stats").stdout)
    assert stats["windows"] == 1 and stats["promoted"] == 2 and stats["proposals"] == 3


def test_window_refuses_without_new_data_and_stays_closed_off_cycle(store):
    closed = lineage(store, "evolve", "--cycle", "7", "-k", "1").stdout
    assert "closed" in closed and "not a window" in closed
    sh(["git", "reset", "-q", "--hard", "main"], store)  # drop the pending era-1 delta
    (store / "data" / "deltas" / "d001-era1.jsonl").unlink(missing_ok=True)
    refused = lineage(store, "evolve", "-k", "1").stdout
    assert "refused" in refused and "not enough new data" in refused
    assert events(store)[-1]["event"] == "WINDOW_REFUSED"


def test_second_evolve_at_once_is_refused(store):
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from lineage.loop.evolve import window_lock

    with window_lock(store):
        proc = lineage(store, "evolve", "-k", "1", check=False)
    assert proc.returncode == 2 and "another 'lineage evolve' is running" in proc.stderr


def test_interrupted_window_is_resumed_and_the_half_done_candidate_frozen_aborted(store):
    state = {"state": "TRAIN", "window": "G001", "cycle": None,
             "candidates": [{"name": "a", "seed": 1, "strategy": "uniform", "status": "running"},
                            {"name": "b", "seed": 2, "strategy": "uniform"}]}
    path = store / ".lineage" / "evolve" / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    lineage(store, "evolve")
    aborted = json.loads(sh(["git", "tag", "-l", "--format=%(contents)", "lineage/frozen/G001-a"], store).stdout)
    assert aborted["verdict"] == "ABORTED"
    assert sh(["git", "tag", "-l", "lineage/frozen/G001-b"], store).stdout.strip()
    assert json.loads(path.read_text())["state"] == "IDLE"


def test_autonomy_auto_promotes_a_data_only_candidate_without_a_person(store):
    params = yaml.safe_load((store / "params.yaml").read_text())
    params["policy"]["autonomy"] = "auto"
    (store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "add", "params.yaml"], store)
    lineage(store, "change", "--reason", "let the loop promote low-risk candidates")
    out = lineage(store, "evolve", "-k", "1").stdout
    assert "promoted" in out, out
    assert sh(["git", "log", "-1", "--format=%B", "main"], store).stdout.startswith("G001-a")


def test_candidate_that_edits_the_policy_is_high_risk_and_never_promoted(store):
    lineage(store, "propose", "--name", "p", "-S", "policy.max_law_violations=1000")
    sys.path.insert(0, str(Path(__file__).parents[1]))
    import pygit2

    from lineage.loop.risk import classify_risk

    repo = pygit2.Repository(str(store))
    level, reasons = classify_risk(repo, str(repo.references["refs/heads/main"].target),
                                   str(repo.references["refs/heads/candidates/G001-p"].target))
    assert level == "high" and "policy" in reasons[0]
    refused = lineage(store, "promote", "candidates/G001-p", check=False)
    assert refused.returncode == 1 and "edits the policy" in refused.stderr


def test_planted_burn_in_failure_rolls_back_by_itself(store):
    smoke = store.parent / "smoke.jsonl"  # a smoke probe no answer keeps, on main's exam
    smoke.write_text(json.dumps({"kind": "burnin", "prompt": "Q: What does the keeper say?\nA:",
                                 "rule": {"must_match": "XYZZY-NEVER-SAID"}}) + "\n")
    lineage(store, "exam", "add", str(smoke))
    lineage(store, "change", "--reason", "smoke probe for burn-in")
    lineage(store, "propose", "--name", "z")
    served_before = json.loads(lineage(store, "--json", "status", "--no-remote").stdout)["head_generation"]
    lineage(store, "promote", "candidates/G001-z")
    message = sh(["git", "log", "-1", "--format=%B", "main"], store).stdout
    assert "Rollback-To: " + served_before in message and "burn-in failed" in message
    burn = [e for e in events(store) if e["event"] == "BURN_IN"]
    assert burn and burn[-1]["data"]["passed"] is False


def test_distill_learns_from_teacher_logits_with_the_parent_as_critic_when_no_grandparent(store):
    out = lineage(store, "propose", "--name", "d", "-S", "train.method=distill", check=False)
    assert "G001" in out.stdout, out.stderr
    manifest = json.loads(sh(["git", "show", "candidates/G001-d:reports/train/manifest.json"], store).stdout)
    assert manifest["method"] == "distill" and manifest["critic"]["kind"] == "teacher"
    train = json.loads(sh(["git", "show", "candidates/G001-d:reports/train/metrics.json"], store).stdout)
    assert train["status"] == "COMPLETE" and train["steps"] == 150
