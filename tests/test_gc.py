"""Safe garbage collection: `lineage gc` frees what nothing refers to and never a generation's data.

The store holds G000 (promoted, served again after a rollback), G001-b (promoted, then rolled
back) and G001-c (frozen, never promoted), plus an object nothing in git refers to. After gc, and
after gc --cloud, a fresh clone restores every one of them from the DVC remote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import clone_store, lineage, relaxed_tiny, sh, trained_g000

pytestmark = pytest.mark.slow

TINY = relaxed_tiny(30, 20)
DVC = str(Path(sys.executable).parent / "dvc")


def weights_objects(store: Path, ref: str) -> list[str]:
    """md5s of a candidate's weights directory object and of every file in it."""
    lock = yaml.safe_load(sh(["git", "show", f"{ref}:dvc.lock"], store).stdout)
    md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/child")
    return [md5] + [e["md5"] for e in json.loads((cache_dir(store) / md5[:2] / md5[2:]).read_text())]


def cache_dir(store: Path) -> Path:
    return store / ".dvc" / "cache" / "files" / "md5"


def remote_dir(store: Path) -> Path:
    return Path(str(store) + ".dvc-remote") / "files" / "md5"


def has(folder: Path, md5: str) -> bool:
    return (folder / md5[:2] / md5[2:]).is_file()


def plant_garbage(store: Path) -> str:
    """An object in the cache and the remote that nothing in git refers to; its md5."""
    junk = store / "scratch.bin"
    junk.write_bytes(os.urandom(300_000))
    sh([DVC, "add", "-q", "scratch.bin"], store)
    md5 = yaml.safe_load((store / "scratch.bin.dvc").read_text())["outs"][0]["md5"]
    sh([DVC, "push", "-q", "scratch.bin"], store)
    sh(["git", "checkout", "-q", "--", ".gitignore"], store)
    for leftover in ("scratch.bin", "scratch.bin.dvc"):
        (store / leftover).unlink()
    assert has(cache_dir(store), md5) and has(remote_dir(store), md5)
    return md5


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = clone_store(trained_g000(tmp_path_factory, TINY), tmp_path_factory.mktemp("gc") / "luna")
    lineage(store, "propose", "--name", "b")
    return store


@pytest.fixture(scope="module")
def collected(store, tmp_path_factory):
    """The store after a second candidate, a promotion, a rollback, planted garbage and `lineage gc`."""
    lineage(store, "propose", "--name", "c", "-S", "seed=7")  # G002-c: frozen, never promoted
    lineage(store, "promote", "candidates/G001-b")
    lineage(store, "rollback", "--to", "G000", "--reason", "served G000 again")
    garbage = plant_garbage(store)
    kept = {ref: weights_objects(store, ref) for ref in ("candidates/G000-a", "candidates/G001-b",
                                                         "candidates/G002-c")}
    assert len({objs[0] for objs in kept.values()}) == 3  # three distinct generations of weights
    result = lineage(store, "--json", "gc")
    return store, garbage, kept, json.loads(result.stdout), result


def test_gc_removes_an_object_nothing_refers_to_and_says_how_many_bytes_it_freed(collected):
    store, garbage, _kept, result, proc = collected
    assert not has(cache_dir(store), garbage)
    assert has(remote_dir(store), garbage)  # the remote is only touched with --cloud
    assert result["cache_objects"] >= 1 and result["cache_bytes"] >= 300_000
    text = lineage(store, "gc").stdout
    assert text.startswith("gc: removed 0 object(s) from the DVC cache, 0 bytes freed")


def test_gc_keeps_every_promoted_rolled_back_and_frozen_generation_in_the_cache(collected):
    store, _garbage, kept, _result, _proc = collected
    for ref, objects in kept.items():
        assert all(has(cache_dir(store), md5) for md5 in objects), ref
    assert lineage(store, "verify").returncode == 0


def _fresh_clone(store: Path, dest: Path) -> Path:
    sh(["git", "clone", "-q", str(store), str(dest)], dest.parent)
    for ref in ("candidates/G000-a", "candidates/G001-b", "candidates/G002-c"):
        sh(["git", "branch", "-q", "--track", ref, f"origin/{ref}"], dest)
    sh([DVC, "remote", "add", "--local", "-f", "-d", "origin", str(remote_dir(store).parents[1])], dest)
    return dest


def _restorable_from_a_fresh_clone(store: Path, clone: Path) -> None:
    from lineage.core.hashes import check_against, parse_hashes_csv

    for generation in ("G000", "G001"):  # promoted generations, through lineage checkout
        out = json.loads(lineage(clone, "--json", "checkout", generation, "--dest", str(clone / generation)).stdout)
        assert Path(out["path"]).name == generation
    sh(["git", "checkout", "-q", "candidates/G002-c"], clone)  # the frozen, never promoted one, through dvc pull
    sh([DVC, "pull", "-q", "models/child"], clone)
    recorded = sh(["git", "show", "candidates/G002-c:reports/train/hashes.csv"], clone).stdout
    check_against(clone / "models" / "child", parse_hashes_csv(recorded), "G002-c")
    proc = sh([DVC, "pull", "--all-branches", "--all-tags"], clone, check=False)
    assert proc.returncode == 0 and "missing" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr


def test_every_generation_is_restorable_from_a_fresh_clone_after_gc(collected, tmp_path):
    store = collected[0]
    _restorable_from_a_fresh_clone(store, _fresh_clone(store, tmp_path / "clone"))


def test_gc_cloud_empties_the_remote_of_garbage_and_a_fresh_clone_still_restores_everything(collected, tmp_path):
    store, garbage, _kept, _result, _proc = collected
    proc = lineage(store, "gc", "--cloud")
    assert "object(s) from the DVC remote" in proc.stdout and "bytes freed" in proc.stdout
    assert not has(remote_dir(store), garbage)
    _restorable_from_a_fresh_clone(store, _fresh_clone(store, tmp_path / "clone"))


# --- refusals -----------------------------------------------------------------------------------

def test_gc_cloud_is_refused_in_a_clone_that_lacks_refs_its_git_remote_has(collected, tmp_path):
    store = collected[0]
    clone = tmp_path / "behind"
    sh(["git", "clone", "-q", str(store), str(clone)], tmp_path)
    sh([DVC, "remote", "add", "--local", "-f", "-d", "origin", str(remote_dir(store).parents[1])], clone)
    # a candidate that reaches the shared remote after the clone was made
    tree = sh(["git", "rev-parse", "candidates/G002-c^{tree}"], store).stdout.strip()
    newer = sh(["git", "commit-tree", tree, "-p", "main", "-m", "G003-d: PASS\n\nGeneration: G003"],
               store).stdout.strip()
    sh(["git", "branch", "candidates/G003-d", newer], store)
    before = sorted(p.name for p in remote_dir(store).rglob("*"))
    try:
        proc = lineage(clone, "gc", "--cloud", check=False)
    finally:
        sh(["git", "branch", "-D", "candidates/G003-d"], store)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stdout + proc.stderr
    assert "gc --cloud would delete data of 1 ref(s) this store lacks, e.g. origin refs/heads/candidates/G003-d" \
        in errors[0]
    assert sorted(p.name for p in remote_dir(store).rglob("*")) == before


def test_gc_cloud_is_refused_in_a_shallow_clone(collected, tmp_path):
    store = collected[0]
    clone = tmp_path / "shallow"
    sh(["git", "clone", "-q", "--depth", "1", f"file://{store}", str(clone)], tmp_path)
    proc = lineage(clone, "gc", "--cloud", check=False)
    assert proc.returncode == 2 and "shallow clone" in proc.stderr


def test_gc_waits_for_no_one_it_is_refused_while_a_lineage_command_runs(collected):
    store = collected[0]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from lineage.store import journal\n"
        "from lineage.store.root import Store\n"
        "with journal.operation(Store.open(sys.argv[1]), 'promote', candidate='x', protected='main', old='0',"
        " new='0'):\n"
        "    print('ready', flush=True); time.sleep(60)\n"), str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        proc = lineage(store, "gc", check=False)
        assert proc.returncode == 2
        assert f"a lineage command is running in this store (promote by pid {holder.pid})" in proc.stderr
    finally:
        holder.kill()
        holder.wait()
    assert lineage(store, "gc").returncode == 0  # the dead command's journal is recovered, then gc runs
    assert not list((store / ".git" / "lineage" / "operations").glob("*.json"))
