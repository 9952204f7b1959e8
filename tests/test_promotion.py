"""Candidates, promotion through the arbiter, the hook, rollback and the fossil record.

A tiny model with a relaxed policy keeps this fast; the gate's honesty on the real tiny model is
proven in test_gate_honesty.py. Here the point is what may move the protected branch. The store
has no signers until the hub is made (a hub needs them): from then on the store's configured key
is its approver's, and promotions carry the arbiter's verdict (signed by conftest's sign_verdict).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import add_signers, clone_store, lineage, relaxed_tiny, sh, sign_verdict, trained_g000

pytestmark = pytest.mark.slow

TINY = relaxed_tiny(30, 20)


def tip(store: Path, ref: str = "main") -> str:
    return sh(["git", "rev-parse", ref], store).stdout.strip()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = clone_store(trained_g000(tmp_path_factory, TINY), tmp_path_factory.mktemp("promotion") / "luna")
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
    sh(["git", "checkout", "candidates/G001-a", "--", "data/deltas/.gitignore", "data/deltas/d001-era1.jsonl.dvc"],
       store)


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
    assert ("Rollback-From: G002" in message and "Rollback-To: G000" in message
            and "Reason: answers regressed" in message)
    assert sh(["git", "rev-parse", "main~1"], store).stdout.strip() == candidate  # forward, never a rewrite
    g000 = sh(["git", "show", "lineage/gen/G000:reports/train/hashes.csv"], store).stdout
    assert (store / "reports" / "train" / "hashes.csv").read_text() == g000
    from lineage.core.hashes import check_against, parse_hashes_csv

    check_against(store / "models" / "child", parse_hashes_csv(g000), "G000")  # weights back in place


def test_lineage_log_lists_every_attempt_pass_or_fail(store):
    rows = json.loads(lineage(store, "--json", "log").stdout)
    by_gen = {r["generation"]: r for r in rows}
    assert by_gen["G000"]["verdict"] == "PASS" and by_gen["G000"]["promoted"]
    assert by_gen["G001"]["verdict"] == "FAIL" and not by_gen["G001"]["promoted"]


# --- the record -------------------------------------------------------------------------------

def test_evolution_log_holds_every_event_in_order(store):
    events = [json.loads(line) for line in lineage(store, "log", "--format", "jsonl").stdout.splitlines()]
    kinds = [(e["event"], e["generation"]) for e in events]
    assert ("PROPOSE", "G001") in kinds and ("BUDGET_EXCEEDED", "G001") in kinds and ("REJECT", "G001") in kinds
    assert ("COMMIT", "G000") in kinds and ("ROLLBACK", "G000") in kinds
    refused = [e for e in events if e["event"] == "ARBITER_VERIFY" and e["data"]["verdict"] == "REFUSED"]
    assert refused and refused[0]["generation"] == "G001"  # refused promotions leave a trace too
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)


def test_lineage_csv_has_one_row_per_candidate_with_its_columns(store):
    rows = lineage(store, "log", "--format", "csv").stdout.splitlines()
    assert rows[0].split(",")[:5] == ["gen", "parent", "weights_sha256", "tokenizer_sha256", "data_delta_sha256"]
    assert {"G000", "G001", "G002"} <= {r.split(",")[0] for r in rows[1:]}


def test_show_status_and_diff_read_the_record(store):
    shown = json.loads(lineage(store, "--json", "show", "G000").stdout)
    assert shown["verdict"] == "PASS" and shown["manifest"]["parent"]["kind"] == "scratch"
    st = json.loads(lineage(store, "--json", "status").stdout)
    # G001-a failed: it is not open (awaiting a decision) but listed, with its verdict, as not promoted
    assert st["head_generation"] == "G000" and "candidates/G001-a" not in st["open_candidates"]
    assert "candidates/G001-a (FAIL)" in st["not_promoted"]
    d = json.loads(lineage(store, "--json", "diff", "G000", "G002").stdout)
    assert d["data"]["only_in_b"] == ["d001-era1"]
    assert 0 < d["weights"]["params_changed_pct"] <= 100


def test_verify_passes_then_catches_a_corrupted_read_only_cache_file(store, tmp_path):
    assert lineage(store, "verify").returncode == 0
    work = tmp_path / "copy"
    shutil.copytree(store, work, symlinks=True)
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/child")
    listing = json.loads((work / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).read_text())
    weights = next(e["md5"] for e in listing if e["relpath"].endswith(".safetensors"))
    victim = work / ".dvc/cache/files/md5" / weights[:2] / weights[2:]
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte off
    victim.write_bytes(bytes(data))
    victim.chmod(0o444)
    proc = lineage(work, "verify", check=False)
    assert proc.returncode == 1
    assert "MISMATCH G000" in proc.stdout and "model.safetensors" in proc.stdout


# --- the hub ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keys(store, tmp_path_factory):
    """An approver (the store's configured key), a proposer and an arbiter, listed by an approved change."""
    return add_signers(store, tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def hub(store, keys, tmp_path_factory):
    path = tmp_path_factory.mktemp("hub") / "luna.git"
    lineage(store, "hub", "init", str(path))
    lineage(store, "push")
    # a failed candidate on top of the current tip: a fast-forward the gate must still refuse
    failed = lineage(store, "propose", "--name", "c", "-S", "train.max_steps=150", check=False)
    assert failed.returncode == 1
    return path


def hub_tip(hub, ref="refs/heads/main"):
    return sh(["git", "rev-parse", ref], hub).stdout.strip()


def test_first_push_replays_the_whole_history_through_the_arbiter(store, hub):
    assert hub_tip(hub) == tip(store)
    tags = sh(["git", "tag", "-l", "lineage/*"], hub).stdout.split()
    assert "lineage/frozen/G001-a" in tags and "lineage/gen/G000" in tags


@pytest.mark.parametrize("refspec, why", [
    ("candidates/G003-c:refs/heads/main", "refused to move refs/heads/main"),
    ("candidates/G001-a:refs/heads/main", "not a fast-forward"),
    ("main~1:refs/heads/main", "not a fast-forward"),
    (":refs/heads/main", "deleting the protected branch"),
    (":refs/tags/lineage/frozen/G001-a", "never deleted"),
    ("main:refs/tags/lineage/frozen/G001-a", "never moved"),
])
def test_hub_refuses_force_pushes_deletes_and_tag_moves(store, hub, refspec, why):
    before = sh(["git", "for-each-ref"], hub).stdout
    proc = sh(["git", "push", "--force", "hub", refspec], store, check=False)
    assert proc.returncode != 0
    assert why in proc.stderr
    assert sh(["git", "for-each-ref"], hub).stdout == before


def test_hub_refuses_a_commit_made_with_local_hooks_switched_off(store, hub, tmp_path):
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(hub), str(clone)], tmp_path)
    sh(["git", "-c", "core.hooksPath=/dev/null", "commit", "-q", "--allow-empty", "-m", "bypass"], clone)
    proc = sh(["git", "push", "origin", "main"], clone, check=False)
    assert proc.returncode != 0 and "not a lineage generation" in proc.stderr
    assert hub_tip(hub) == tip(store)


def test_hub_refuses_a_main_moved_by_pygit2_and_lineage_push_says_why(store, hub, tmp_path):
    import pygit2

    clone = tmp_path / "clone"
    shutil.copytree(store, clone, symlinks=True)
    repo = pygit2.Repository(str(clone))
    failed = repo.references["refs/heads/candidates/G003-c"].target
    repo.references["refs/heads/main"].set_target(failed)  # libgit2 runs no hooks
    proc = lineage(clone, "push", check=False)
    assert proc.returncode == 1 and "refused to move refs/heads/main" in proc.stderr
    assert hub_tip(hub) == tip(store)


def test_hub_keeps_the_evolution_log_append_only(store, hub, tmp_path):
    clone = tmp_path / "clone"
    shutil.copytree(store, clone, symlinks=True)
    first = sh(["git", "rev-list", "--max-parents=0", "refs/lineage/log"], clone).stdout.strip()
    sh(["git", "update-ref", "refs/lineage/log", first], clone)  # drop every later event
    proc = sh(["git", "push", "--force", "hub", "refs/lineage/log:refs/lineage/log"], clone, check=False)
    assert proc.returncode != 0 and "append-only" in proc.stderr


def test_python_load_returns_the_served_generation(store):
    import lineage

    model, tok = lineage.load(str(store))
    assert model.config.model_type == "llama" and tok.eos_token
    assert lineage.load(str(store), "G002", path_only=True).name == "G002"


def test_two_promoters_racing_from_one_tip_exactly_one_wins(store, keys):
    for name in ("d", "e"):  # G002's recipe, which main rolled back: trained again on purpose
        assert "PASS" in lineage(store, "propose", "--name", name, "--again").stdout
    before = tip(store)
    branches = [b for b in sh(["git", "branch", "--list", "candidates/*"], store).stdout.split()
                if b.endswith(("-d", "-e"))]
    for branch in branches:  # the arbiter's verdicts; each promoter's approver key signs its approval
        sign_verdict(store, branch, keys["arbiter"])
    procs = [subprocess.Popen([sys.executable, "-m", "lineage", "promote", b], cwd=store,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for b in branches]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "re-gate" in loser or "re-run 'lineage propose'" in loser
    assert sh(["git", "rev-parse", "main~1"], store).stdout.strip() == before


def test_policy_changes_only_through_a_persons_approved_change(store):
    sh(["git", "reset", "-q", "--hard", "main"], store)
    params = yaml.safe_load((store / "params.yaml").read_text())
    params["policy"]["max_law_violations"] = 50
    (store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "add", "params.yaml"], store)
    plain = sh(["git", "commit", "-qm", "loosen"], store, check=False)
    assert plain.returncode != 0 and "not a lineage generation" in plain.stderr
    served = json.loads(lineage(store, "--json", "status", "--no-remote").stdout)["head_generation"]
    done = json.loads(lineage(store, "--json", "change", "--reason",
                              "laws are tested elsewhere for tiny models").stdout)
    message = sh(["git", "log", "-1", "--format=%B", "main"], store).stdout
    assert "Approved-Change: 1" in message and "Approved-By: " in message and done["paths"] == ["params.yaml"]
    assert json.loads(lineage(store, "--json", "status", "--no-remote").stdout)["head_generation"] == served
    events = [json.loads(x) for x in lineage(store, "log", "--format", "jsonl").stdout.splitlines()]
    assert events[-1]["event"] == "APPROVE"
    # an approved change may not carry a generation's evidence
    (store / "metrics.json").write_text("{}")
    sh(["git", "add", "metrics.json"], store)
    sneaky = lineage(store, "change", "--reason", "edit metrics", check=False)
    assert sneaky.returncode != 0 and "may not touch metrics.json" in sneaky.stderr
    sh(["git", "reset", "-q", "--hard", "main"], store)


def test_default_rollback_target_is_the_generation_served_just_before(store):
    served = json.loads(lineage(store, "--json", "status", "--no-remote").stdout)["head_generation"]
    assert served not in ("G000", "G002")  # a racer won after G002 was rolled back to G000
    rolled = json.loads(lineage(store, "--json", "rollback", "--reason", "default target").stdout)
    assert rolled["to"] == "G000" and rolled["frm"] == served


def test_git_gc_works_with_the_hook_and_a_delete_of_main_is_still_refused(store):
    before = tip(store)
    sh(["git", "gc", "-q"], store)
    assert tip(store) == before
    assert sh(["git", "update-ref", "-d", "refs/heads/main"], store, check=False).returncode != 0
    assert sh(["git", "update-ref", "-d", "refs/heads/main", before], store, check=False).returncode != 0
    assert tip(store) == before
