"""Faults: SIGKILL at every step of propose, promote, rollback and push leaves a store that converges.

Each case copies a store (and its DVC remote), kills one `lineage` command at one named fault
point (lineage/faults.py), checks what the kill left — the protected branch moved together with
its tag and its log event, or not at all; no ref points at data the DVC remote lacks — and then
re-runs the same command, which finishes the work instead of doing it twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import add_signers, clone_store, lineage, relaxed_tiny, sh, trained_g000

from lineage.core import faults

TINY = relaxed_tiny(30, 20)
KILLED = -signal.SIGKILL


def rev(store: Path, name: str) -> str | None:
    proc = sh(["git", "rev-parse", "-q", "--verify", name + "^{commit}"], store, check=False)
    return proc.stdout.strip() or None


def events(store: Path) -> list[dict]:
    from lineage import api

    return [e.to_dict() for e in api.events(store)]


def missing_from_remote(store: Path) -> list[str]:
    """Refs whose weights (dvc.lock's models/child) are not all in the store's DVC remote."""
    remote = Path(str(store) + ".dvc-remote") / "files" / "md5"
    refs = sh(["git", "for-each-ref", "--format=%(refname)", "refs/heads", "refs/tags"], store).stdout.split()
    missing = []
    for ref in refs:
        lock = sh(["git", "show", f"{ref}:dvc.lock"], store, check=False).stdout
        outs = (yaml.safe_load(lock or "{}") or {}).get("stages", {}).get("train", {}).get("outs", [])
        md5 = next((o["md5"] for o in outs if o["path"] == "models/child"), None)
        if md5 is None:
            continue
        listing = remote / md5[:2] / md5[2:]
        if not listing.is_file() or any(not (remote / e["md5"][:2] / e["md5"][2:]).is_file()
                                        for e in json.loads(listing.read_text())):
            missing.append(ref)
    return missing


def journals(store: Path) -> list[str]:
    folder = store / ".git" / "lineage" / "operations"
    return sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []


def dirty(store: Path) -> list[str]:
    """Changed or untracked paths, registered data waiting for its candidate excepted."""
    lines = sh(["git", "status", "--porcelain", "--untracked-files=all"], store).stdout.splitlines()
    return [ln for ln in lines if not ln[3:].startswith("data/deltas/")]


def waiting(store: Path) -> list[str]:
    """The registered deltas waiting for a candidate, as status names them."""
    return json.loads(lineage(store, "--json", "status", "--no-remote").stdout)["pending_data"]


def assert_settled(store: Path) -> None:
    """What every converged store looks like: home, clean, no journal, verify passes."""
    assert sh(["git", "symbolic-ref", "--short", "HEAD"], store).stdout.strip() == "main"
    assert dirty(store) == []
    assert journals(store) == []
    assert missing_from_remote(store) == []
    assert lineage(store, "verify", check=False).returncode == 0


def served_weights_are(store: Path, generation: str) -> None:
    from lineage.core.hashes import check_against, parse_hashes_csv

    recorded = sh(["git", "show", f"lineage/gen/{generation}:reports/train/hashes.csv"], store).stdout
    check_against(store / "models" / "child", parse_hashes_csv(recorded), generation)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """G000 served, era 1 registered, candidate G001-b (PASS) frozen and not promoted."""
    store = clone_store(trained_g000(tmp_path_factory, TINY), tmp_path_factory.mktemp("faults") / "luna")
    assert "PASS" in lineage(store, "propose", "--name", "b").stdout
    return store


@pytest.fixture(scope="module")
def promoted(base, tmp_path_factory):
    """base with G001-b promoted: main serves G001, G000 is the rollback target."""
    store = clone_store(base, tmp_path_factory.mktemp("promoted") / "luna")
    lineage(store, "promote", "candidates/G001-b")
    return store


# --- the fault points themselves ----------------------------------------------------------------

def test_every_fault_point_is_in_the_code_once_and_listed():
    source = "".join(p.read_text() for p in (Path(__file__).parents[1] / "lineage").rglob("*.py"))
    called = re.findall(r'faults\.point\("([^"]+)"\)', source)
    assert sorted(called) == sorted(faults.POINTS)
    assert len(set(called)) == len(called)


def test_tests_below_kill_at_every_listed_point():
    covered = set(PROPOSE_EARLY) | set(PROPOSE_LATE) | set(PROMOTE) | set(ROLLBACK) | set(PUSH)
    assert covered == set(faults.POINTS)


def test_an_unarmed_fault_point_costs_nothing():
    start = time.perf_counter()
    for _ in range(100_000):
        faults.point("promote:moved")
    assert time.perf_counter() - start < 0.5


# --- promote ----------------------------------------------------------------------------------

PROMOTE = ["promote:journaled", "promote:verified", "promote:moved", "promote:checked-out", "promote:burned-in"]


@pytest.mark.slow
@pytest.mark.parametrize("point", PROMOTE)
def test_promote_killed_at_each_step_moves_branch_tag_and_log_together_and_a_rerun_finishes(base, tmp_path, point):
    store = clone_store(base, tmp_path / "luna")
    old, new = rev(store, "main"), rev(store, "candidates/G001-b")
    before = len(events(store))

    assert lineage(store, "promote", "candidates/G001-b", check=False, fault=point).returncode == KILLED
    moved = rev(store, "main") == new
    assert rev(store, "main") in (old, new)
    commits = [e for e in events(store)[before:] if e["event"] == "COMMIT"]
    assert (rev(store, "lineage/gen/G001") == new) is moved  # tag iff the branch moved
    assert len(commits) == (1 if moved else 0) and all(e["data"]["new"] == new for e in commits)
    assert missing_from_remote(store) == []

    rerun = lineage(store, "promote", "candidates/G001-b", check=False)  # the same command again
    assert rerun.returncode == 0, rerun.stderr
    assert rev(store, "main") == new and rev(store, "main~1") == old and rev(store, "lineage/gen/G001") == new
    after = events(store)[before:]
    assert [e["event"] for e in after].count("COMMIT") == 1
    assert [e["event"] for e in after].count("BURN_IN") == 1
    assert_settled(store)
    served_weights_are(store, "G001")


# --- rollback ---------------------------------------------------------------------------------

ROLLBACK = ["rollback:journaled", "rollback:built", "rollback:moved", "rollback:checked-out"]


@pytest.mark.slow
@pytest.mark.parametrize("point", ROLLBACK)
def test_rollback_killed_at_each_step_is_whole_or_absent_and_a_rerun_does_not_roll_back_twice(
        promoted, tmp_path, point):
    store = clone_store(promoted, tmp_path / "luna")
    old = rev(store, "main")
    before = len(events(store))
    args = ("rollback", "--reason", "answers regressed")  # default target: the generation served before

    assert lineage(store, *args, check=False, fault=point).returncode == KILLED
    tip = rev(store, "main")
    rollbacks = [e for e in events(store)[before:] if e["event"] == "ROLLBACK"]
    if tip == old:
        assert rollbacks == []
    else:
        assert rev(store, "main~1") == old and [e["data"]["commit"] for e in rollbacks] == [tip]

    rerun = lineage(store, "--json", *args, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["to"] == "G000"
    assert rev(store, "main~1") == old  # exactly one rollback commit, whatever the kill left
    assert "Rollback-To: G000" in sh(["git", "log", "-1", "--format=%B", "main"], store).stdout
    assert [e["event"] for e in events(store)[before:]].count("ROLLBACK") == 1
    assert_settled(store)
    from lineage.core.hashes import check_against, parse_hashes_csv

    check_against(store / "models" / "child", parse_hashes_csv(
        sh(["git", "show", "lineage/gen/G000:reports/train/hashes.csv"], store).stdout), "G000")


# --- propose ----------------------------------------------------------------------------------

PROPOSE_EARLY = ["propose:branched", "propose:logged"]
PROPOSE_LATE = ["propose:reproduced", "propose:pushed", "propose:committed", "propose:frozen"]


def _frozen(store: Path, candidate: str) -> dict | None:
    text = sh(["git", "tag", "-l", "--format=%(contents)", f"lineage/frozen/{candidate}"], store).stdout.strip()
    return json.loads(text) if text else None


@pytest.mark.slow
@pytest.mark.parametrize("point", PROPOSE_EARLY)
def test_propose_killed_before_its_run_finished_is_frozen_aborted_and_data_stays_pending(base, tmp_path, point):
    store = clone_store(base, tmp_path / "luna")
    main = rev(store, "main")
    assert waiting(store) == ["d001-era1"]  # era 1 is registered, waiting for a candidate

    assert lineage(store, "propose", "--name", "c", check=False, fault=point).returncode == KILLED
    assert rev(store, "main") == main and _frozen(store, "G002-c") is None

    repaired = lineage(store, "repair")
    assert "G002-c: interrupted before its commit; frozen as ABORTED" in repaired.stderr
    frozen = _frozen(store, "G002-c")
    assert frozen["verdict"] == "ABORTED" and frozen["commit"] == main
    assert events(store)[-1]["event"] == "REJECT"
    assert waiting(store) == ["d001-era1"]
    assert rev(store, "main") == main
    assert_settled(store)


@pytest.fixture(scope="module")
def killed_after_run(base, tmp_path_factory):
    """A propose killed right after its pipeline run completed (the one training these cases pay)."""
    store = clone_store(base, tmp_path_factory.mktemp("killed-after-run") / "luna")
    assert lineage(store, "propose", "--name", "c", check=False, fault="propose:reproduced").returncode == KILLED
    return store


@pytest.mark.slow
@pytest.mark.parametrize("point", PROPOSE_LATE)
def test_propose_killed_after_its_run_is_finished_by_the_rerun_without_training_again(
        killed_after_run, tmp_path, point):
    """The later points sit in the finishing code that propose and its re-run share; the re-run is
    killed there in turn (a training saved per case), then run once more to convergence."""
    store = clone_store(killed_after_run, tmp_path / "luna")
    main = rev(store, "main")
    trained = [e for e in events(store) if e["event"] == "TRAIN_COMPLETE"]
    if point != "propose:reproduced":
        assert lineage(store, "propose", "--name", "c", check=False, fault=point).returncode == KILLED
    assert rev(store, "main") == main
    assert missing_from_remote(store) == []  # the candidate branch never points at unpushed data
    tip = rev(store, "candidates/G002-c")
    assert tip == main or _frozen(store, "G002-c") is not None or point == "propose:committed"

    rerun = lineage(store, "--json", "propose", "--name", "c", check=False)
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)
    assert result["generation"] == "G002" and result["verdict"] == "PASS" and result["criteria"]
    frozen = _frozen(store, "G002-c")
    assert frozen["verdict"] == "PASS" and frozen["commit"] == rev(store, "candidates/G002-c") == result["commit"]
    assert [e for e in events(store) if e["event"] == "TRAIN_COMPLETE"] == trained  # nothing trained twice
    assert rev(store, "candidates/G003-c") is None
    assert_settled(store)
    assert lineage(store, "promote", "candidates/G002-c", check=False).returncode == 0


@pytest.mark.slow
def test_data_registered_before_an_interrupted_candidate_stays_pending_whoever_went_home(killed_after_run, tmp_path):
    store = clone_store(killed_after_run, tmp_path / "luna")
    assert lineage(store, "propose", "--name", "c", check=False, fault="propose:frozen").returncode == KILLED
    sh(["git", "checkout", "-q", "-f", "main"], store)  # as evolve's own resume does: staged data is dropped
    sh(["git", "clean", "-fdq", "--", "reports", "data"], store)
    assert sh(["git", "diff", "--cached", "--name-only"], store).stdout == ""
    lineage(store, "repair")
    assert waiting(store) == ["d001-era1"]  # it waits outside the index: nothing a checkout could drop
    assert sh(["git", "diff", "--cached", "--name-only"], store).stdout == ""
    assert_settled(store)


# --- push to the hub --------------------------------------------------------------------------

PUSH = ["push:data-pushed", "push:refs-pushed"]


def hub_refs(hub: Path) -> str:
    return sh(["git", "for-each-ref"], hub).stdout


@pytest.mark.slow
@pytest.mark.parametrize("point", PUSH)
def test_push_killed_between_data_and_refs_never_publishes_a_ref_without_its_data(promoted, tmp_path, point):
    store = clone_store(promoted, tmp_path / "luna")
    add_signers(store)  # a hub needs signers
    hub = tmp_path / "luna.git"
    lineage(store, "hub", "init", str(hub))
    remote = Path(str(store) + ".dvc-remote")
    shutil.rmtree(remote)
    remote.mkdir()  # an empty archive: the push has everything to send

    assert lineage(store, "push", check=False, fault=point).returncode == KILLED
    assert missing_from_remote(store) == []  # data went first
    if point == "push:data-pushed":
        assert hub_refs(hub) == ""  # refs had not gone
    assert lineage(store, "push", check=False).returncode == 0
    assert rev(hub, "main") == rev(store, "main")
    assert hub_refs(hub).count("refs/tags/lineage/") == sh(["git", "tag", "-l", "lineage/*"], store).stdout.count("\n")


@pytest.mark.slow
def test_push_refuses_every_ref_while_the_remote_lacks_data_one_points_at(promoted, tmp_path):
    """The reverse order can never happen: data a ref needs that is in neither place stops the refs."""
    store = clone_store(promoted, tmp_path / "luna")
    add_signers(store)  # a hub needs signers
    hub = tmp_path / "luna.git"
    lineage(store, "hub", "init", str(hub))
    remote = Path(str(store) + ".dvc-remote")
    shutil.rmtree(remote)
    remote.mkdir()
    lock = yaml.safe_load(sh(["git", "show", "candidates/G001-b:dvc.lock"], store).stdout)
    md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/child")
    cache = store / ".dvc" / "cache" / "files" / "md5"
    weights = next(e["md5"] for e in json.loads((cache / md5[:2] / md5[2:]).read_text())
                   if e["relpath"].endswith(".safetensors"))
    victim = cache / weights[:2] / weights[2:]
    victim.chmod(0o644)
    victim.unlink()  # G001's weights: gone from the cache, never pushed

    proc = lineage(store, "push", check=False)
    assert proc.returncode == 1
    assert "DVC remote lacks models/child" in proc.stderr and "nothing was pushed to the hub" in proc.stderr
    assert hub_refs(hub) == ""


# --- stale locks --------------------------------------------------------------------------------

def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.slow
def test_a_stale_ref_lock_is_reported_in_one_line_cleared_and_the_promotion_goes_through(base, tmp_path):
    store = clone_store(base, tmp_path / "luna")
    lock = store / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text(rev(store, "main") + "\n")  # what a git killed mid-update leaves behind
    _age(lock, 30)

    proc = lineage(store, "promote", "candidates/G001-b", check=False)
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "main.lock" in ln]
    assert len(notes) == 1 and "removed stale lock .git/refs/heads/main.lock" in notes[0]
    assert "no process held it" in notes[0]
    assert not lock.exists() and rev(store, "main") == rev(store, "candidates/G001-b")


@pytest.mark.slow
def test_a_lock_a_live_git_process_may_hold_is_never_removed(base, tmp_path):
    store = clone_store(base, tmp_path / "luna")
    lock = store / ".git" / "refs" / "lineage" / "log.lock"
    lock.write_text("")
    _age(lock, 30)
    holder = subprocess.Popen(["git", "hash-object", "--stdin"], cwd=store, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)  # a live git working in this store
    try:
        proc = lineage(store, "repair", check=False)
        assert proc.returncode == 3
        assert f".git/refs/lineage/log.lock is held by git (pid {holder.pid})" in proc.stdout
        assert lock.exists()
        refused = lineage(store, "promote", "candidates/G001-b", check=False)
        assert refused.returncode == 3 and "log.lock is held by git" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert rev(store, "main") != rev(store, "candidates/G001-b")
    finally:
        holder.communicate(b"")
    proc = lineage(store, "repair")
    assert "removed stale lock .git/refs/lineage/log.lock" in proc.stderr and not lock.exists()


@pytest.mark.slow
def test_a_plain_git_merge_is_reported_by_repair_and_promoting_it_again_records_it_once(base, tmp_path):
    store = clone_store(base, tmp_path / "luna")
    new = rev(store, "candidates/G001-b")
    sh(["git", "merge", "-q", "--ff-only", "candidates/G001-b"], store)  # the hook's arbiter allows it
    assert rev(store, "main") == new and rev(store, "lineage/gen/G001") is None

    report = lineage(store, "repair").stdout
    assert (f"not recorded: main reached G001 ({new[:12]}) by plain git, with no generation tag and no COMMIT "
            "event; 'lineage promote candidates/G001-b' records them and runs the burn-in") in report

    before = len(events(store))
    lineage(store, "promote", "candidates/G001-b")
    assert rev(store, "main") == new and rev(store, "lineage/gen/G001") == new
    recorded = [e for e in events(store)[before:] if e["event"] in ("COMMIT", "BURN_IN")]
    assert [e["event"] for e in recorded] == ["COMMIT", "BURN_IN"]
    assert recorded[0]["data"]["recorded_after"] == "a plain git move"
    served_weights_are(store, "G001")
    assert "not recorded" not in lineage(store, "repair").stdout
    recorded_count = len(events(store))
    again = lineage(store, "promote", "candidates/G001-b").stdout
    assert "already what the protected branch serves (G001); nothing to do" in again
    assert len(events(store)) == recorded_count  # the re-run appends nothing
    assert_settled(store)


# --- concurrency and durability -------------------------------------------------------------------

@pytest.mark.slow
def test_ten_promoters_racing_from_one_tip_exactly_one_wins(base, tmp_path):
    store = clone_store(base, tmp_path / "luna")
    old, first = rev(store, "main"), rev(store, "candidates/G001-b")
    tree = sh(["git", "rev-parse", "candidates/G001-b^{tree}"], store).stdout.strip()
    message = sh(["git", "log", "-1", "--format=%B", "candidates/G001-b"], store).stdout
    branches = ["candidates/G001-b"]
    for name in "cdefghijk":  # nine more gated candidates of the same window: same evidence, own commits
        commit = sh(["git", "commit-tree", tree, "-p", old, "-m", message.replace("G001-b", f"G001-{name}")],
                    store).stdout.strip()
        sh(["git", "branch", f"candidates/G001-{name}", commit], store)
        branches.append(f"candidates/G001-{name}")
    before = len(events(store))

    procs = [subprocess.Popen([sys.executable, "-m", "lineage", "promote", b], cwd=store, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for b in branches]
    results = [(b, p.wait(timeout=600), p.stderr.read()) for b, p in zip(branches, procs, strict=True)]
    winners = [b for b, code, _ in results if code == 0]
    assert len(winners) == 1, results
    for branch, code, err in results:
        if branch not in winners:
            assert code == 1 and "error: refused to move refs/heads/main" in err, (branch, code, err)
    assert rev(store, "main") == rev(store, winners[0]) and rev(store, "main~1") == old
    assert rev(store, "lineage/gen/G001") == rev(store, winners[0])
    assert [e["event"] for e in events(store)[before:]].count("COMMIT") == 1
    assert first  # the real candidate is one of the ten
    assert_settled(store)


def test_init_and_hub_init_make_git_fsync_objects_and_refs(store, tmp_path):
    assert sh(["git", "config", "core.fsync"], store).stdout.strip() == "objects,reference"
    assert sh(["git", "config", "core.fsyncMethod"], store).stdout.strip() == "fsync"
    hub = tmp_path / "hub.git"
    add_signers(store)  # a hub needs signers
    lineage(store, "hub", "init", str(hub))
    assert set(sh(["git", "config", "core.fsync"], hub).stdout.strip().split(",")) == {"objects", "reference"}
    # this git knows both components (>= 2.36): a ref update says nothing about the setting
    proc = sh(["git", "update-ref", "refs/heads/fsync-probe", "HEAD"], store)
    assert "core.fsync" not in proc.stderr
    sh(["git", "update-ref", "-d", "refs/heads/fsync-probe"], store)
