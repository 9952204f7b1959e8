"""Adversarial suite: every way around the arbiter, and hostile files, against real stores and a real hub.

One store is built per module (G000 promoted, era 1 registered, an approver, a proposer and an
arbiter listed in allowed_signers, G001-a proposed and PASS with the arbiter's verdict and an
approval, pushed to a hub made with `lineage hub init`). Attacks are forged with pygit2 the way a user who owns `.git`
could, then tried locally through git (the reference-transaction hook) and at the hub through a
real `git push` (its pre-receive hook). Every refusal is checked to move nothing: `git for-each-ref`
of the store and of the hub are the same before and after.

Hostile files: pickles whose __reduce__ would create a marker file (the marker must never appear),
malformed safetensors, `..`/absolute paths in DVC's manifests, weights swapped in the cache, in the
served work tree and in the DVC remote. Cases already proven elsewhere are listed in the inventory
below and not repeated here.

Inventory of cases proven in other modules:
    local update-ref, merge --ff-only, reset, commit --no-verify  test_promotion.py
    hub force push / non-fast-forward / delete main / frozen tag  test_promotion.py::
        test_hub_refuses_force_pushes_deletes_and_tag_moves
    hub refuses hooks-off commit and pygit2 move                  test_promotion.py
    racing promoters (stale tip)                                  test_promotion.py, test_faults.py
    candidate that loosens its policy (judged by main's)          test_gate_honesty.py
    candidate that edits allowed_signers, unsigned moves           test_signatures.py
    forged verdicts, approvals, changes and rollbacks by role      test_roles.py
    pickle by suffix, by content, in a zip; malformed headers     test_safety.py (unit),
                                                                  test_train_stage.py (parent stage)
    `..`/absolute sources, symlinked deltas, secrets               test_data_gate.py
    corrupted read-only cache file (verify)                        test_promotion.py::
        test_verify_passes_then_catches_a_corrupted_read_only_cache_file
    DVC remote lacking data (push refuses)                         test_faults.py::
        test_push_refuses_every_ref_while_the_remote_lacks_data_one_points_at
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import struct
import sys
from pathlib import Path

import pygit2
import pytest
import yaml
from conftest import (
    VENV_BIN,
    Booby,
    add_signers,
    clone_store,
    copy_store,
    error_lines,
    relaxed_tiny,
    run,
    set_params,
    sign_approval,
    sign_verdict,
    stage,
    trained_g000,
)

pytestmark = pytest.mark.slow

TINY = relaxed_tiny(10, 5, eval={"max_new_tokens": 4})
G001 = "candidates/G001-a"
MALLORY = pygit2.Signature("Mallory", "mallory@lineage.invalid")


# ---------------------------------------------------------------- helpers

def lineage(cwd, *args, check=True):
    code, out, err = run([sys.executable, "-m", "lineage", *map(str, args)], cwd=cwd)
    if check:
        assert code == 0, f"lineage {args} exited {code}\n{out}\n{err}"
    return code, out, err


def git(cwd, *args, check=True):
    code, out, err = run(["git", *args], cwd=cwd)
    if check:
        assert code == 0, f"git {args} exited {code}\n{out}\n{err}"
    return code, out, err


def refs(repo: Path) -> str:
    """Every ref with its value: 'nothing moved' means this is byte-for-byte the same."""
    return git(repo, "for-each-ref", "--format=%(objectname) %(refname)")[1]


def rev(repo: Path, name: str) -> str:
    return git(repo, "rev-parse", name)[1].strip()


def blob(store: Path, rev_: str, path: str) -> bytes:
    repo = pygit2.Repository(str(store))
    commit = repo.revparse_single(rev_).peel(pygit2.Commit)
    return repo[commit.tree[path].id].data


def message(store: Path, rev_: str) -> str:
    return pygit2.Repository(str(store)).revparse_single(rev_).peel(pygit2.Commit).message


def commit(store: Path, tree_from: str, parent: str, msg: str, edits: dict | None = None) -> str:
    """Write a commit (no ref moves, no hook runs): tree_from's tree with edits (path -> bytes, or None to drop)."""
    repo = pygit2.Repository(str(store))
    index = pygit2.Index()
    index.read_tree(repo.revparse_single(tree_from).peel(pygit2.Tree))
    for path, data in (edits or {}).items():
        if data is None:
            index.remove(path)
        else:
            index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    tree = index.write_tree(repo)
    return str(repo.create_commit(None, MALLORY, MALLORY, msg, tree,
                                  [repo.revparse_single(parent).peel(pygit2.Commit).id]))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cache_object(store: Path, md5: str) -> Path:
    return store / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def child_md5(store: Path, rev_: str) -> str:
    lock = yaml.safe_load(blob(store, rev_, "dvc.lock"))
    return next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/child")


def weights_object(cache: Path, md5_dir: str) -> Path:
    """The cache file of model.safetensors inside the cached directory md5_dir."""
    listing = json.loads((cache / md5_dir[:2] / md5_dir[2:]).read_text())
    entry = next(e for e in listing if e["relpath"] == "model.safetensors")
    return cache / entry["md5"][:2] / entry["md5"][2:]


def overwrite_read_only(path: Path, data: bytes) -> None:
    """Replace a read-only file's bytes in place (every hard link sees it) and leave it read-only."""
    path.chmod(0o644)
    path.write_bytes(data)
    path.chmod(0o444)


# ---------------------------------------------------------------- the world

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """G000 promoted, era 1 registered, signers, G001-a proposed (PASS, a verdict and an approval, not promoted);
    all of it pushed to a hub."""
    base = tmp_path_factory.mktemp("adversarial")
    store = clone_store(trained_g000(tmp_path_factory, TINY), base / "luna")
    keys = add_signers(store, base / "keys")
    assert "PASS" in lineage(store, "propose")[1]
    sign_verdict(store, G001, keys["arbiter"])
    sign_approval(store, G001, keys["approve"])
    hub = base / "luna.git"
    lineage(store, "hub", "init", hub)
    lineage(store, "push")
    assert rev(hub, "main") == rev(store, "main")  # G000 and, on top, the approved changes (exam, signers)
    assert json.loads(lineage(store, "--json", "status", "--no-remote")[1])["head_generation"] == "G000"
    assert rev(hub, G001) == rev(store, G001)
    return {"store": store, "hub": hub}


@pytest.fixture
def store(world, tmp_path):
    """A private copy of the world's store; its 'hub' remote is the world's hub, its DVC remote shared."""
    return copy_store(world["store"], tmp_path / "luna")


@pytest.fixture
def hub(world):
    return world["hub"]


def own_dvc_remote(store: Path, source: Path) -> Path:
    """Give a store copy its own copy of the world's DVC remote (to damage it safely)."""
    remote = store.parent / "luna.dvc-remote"
    shutil.copytree(Path(str(source) + ".dvc-remote"), remote)
    run([str(VENV_BIN / "dvc"), "remote", "add", "-q", "-f", "-d", "--local", "origin", str(remote)],
        cwd=store, check=True)
    return remote


# ---------------------------------------------------------------- forged commits

def _metrics_edit(store, edit) -> tuple[bytes, bytes]:
    old = blob(store, G001, "metrics.json")
    metrics = json.loads(old)
    edit(metrics)
    return old, (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode()


def forged_gate_report(store):
    """Honest metrics that fail (1000 law violations), every hash made consistent, the report still says PASS."""
    old, new = _metrics_edit(store, lambda m: m["child"].update(law_violations=1000))
    report = json.loads(blob(store, G001, "reports/gate.json"))
    assert report["verdict"] == "PASS"
    report["hashes"]["metrics"] = sha256(new)
    lock = blob(store, G001, "dvc.lock").replace(hashlib.md5(old).hexdigest().encode(),
                                                 hashlib.md5(new).hexdigest().encode())
    return commit(store, G001, "main", message(store, G001), {
        "metrics.json": new, "reports/gate.json": json.dumps(report, indent=2).encode(), "dvc.lock": lock})


def edited_metrics(store):
    _, new = _metrics_edit(store, lambda m: m["child"].update(recall=1.0, generalize=1.0))
    return commit(store, G001, "main", message(store, G001), {"metrics.json": new})


def report_hashes_disagree_with_dvc_lock(store):
    _, new = _metrics_edit(store, lambda m: m["child"].update(recall=1.0))
    report = json.loads(blob(store, G001, "reports/gate.json"))
    report["hashes"]["metrics"] = sha256(new)
    return commit(store, G001, "main", message(store, G001),
                  {"metrics.json": new, "reports/gate.json": json.dumps(report).encode()})


def hashes_csv_of_other_weights(store):
    return commit(store, G001, "main", message(store, G001),
                  {"reports/train/hashes.csv": blob(store, "main", "reports/train/hashes.csv")})


def manifest_rewritten(store):
    manifest = json.loads(blob(store, G001, "reports/train/manifest.json"))
    manifest["data"]["new"] = []
    return commit(store, G001, "main", message(store, G001),
                  {"reports/train/manifest.json": json.dumps(manifest).encode()})


def candidate_loosens_its_own_policy(store):
    params = yaml.safe_load(blob(store, G001, "params.yaml"))
    params["policy"]["max_law_violations"] = 100000
    return commit(store, G001, "main", message(store, G001), {"params.yaml": yaml.safe_dump(params).encode()})


def stale_parent(store):
    """G000-a's evidence (trained from the base; main holds it as G000) re-committed on top of the tip."""
    return commit(store, "main", "main", "G001-z: PASS\n\nGeneration: G001\nParent: G000\nVerdict: PASS\n")


def rollback_to_a_never_promoted_generation(store):
    """A rollback commit restoring G001-a's evidence exactly, though G001 never served."""
    return commit(store, G001, "main",
                  "rollback: G000 -> G001\n\nRollback-From: G000\nRollback-To: G001\nReason: sneak\n",
                  {"data/deltas/.gitignore": blob(store, "main", "data/deltas/.gitignore"),
                   "data/deltas/d001-era1.jsonl.dvc": None})


def plain_commit(store):
    return commit(store, "main", "main", "small tweak\n", {"stages/train.py": b"print('anything')\n"})


def candidate_changes_stage_code(store):
    return commit(store, G001, "main", message(store, G001), {"stages/train.py": b"print('anything')\n"})


def two_generations_at_once(store):
    return commit(store, G001, G001, "G002-a: PASS\n\nGeneration: G002\nParent: G001\nVerdict: PASS\n")


def approved_change_carrying_evidence(store):
    _, new = _metrics_edit(store, lambda m: m["child"].update(recall=1.0))
    return commit(store, "main", "main",
                  "change\n\nApproved-Change: 1\nApproved-By: Mallory <mallory@lineage.invalid>\n"
                  "Reason: better numbers\n", {"metrics.json": new})


EVIL_STAGE = b"import pathlib\npathlib.Path('PWNED').touch()\n"


def _evil_object(store: Path) -> str:
    """Put attacker bytes in the DVC cache (as a push to the DVC remote would); return their md5."""
    md5 = hashlib.md5(EVIL_STAGE).hexdigest()
    path = cache_object(store, md5)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(EVIL_STAGE)
    return md5


def delta_manifest_escaping_the_store(store):
    """A delta's .dvc file whose out is ../../stages/train.py: `dvc checkout` would write attacker code there."""
    dvc_file = yaml.safe_dump({"outs": [{"md5": _evil_object(store), "size": len(EVIL_STAGE), "hash": "md5",
                                         "path": "../../stages/train.py"}]}).encode()
    return commit(store, G001, "main", message(store, G001), {"data/deltas/d009-evil.jsonl.dvc": dvc_file})


def delta_manifest_with_a_working_directory(store):
    """The same through wdir: a bare-looking path resolved from ../../stages."""
    dvc_file = yaml.safe_dump({"wdir": "../../stages", "outs": [{"md5": _evil_object(store), "size": len(EVIL_STAGE),
                                                                 "hash": "md5", "path": "train.py"}]}).encode()
    return commit(store, G001, "main", message(store, G001), {"data/deltas/train.py.dvc": dvc_file})


FORGERIES = {
    "forged gate report": (forged_gate_report, "G001 fails the gate under main's policy: law_violations"),
    "edited metrics": (edited_metrics, "metrics.json does not match the hash the gate report judged"),
    "report hashes vs dvc.lock": (report_hashes_disagree_with_dvc_lock, "dvc.lock's metrics.json hash does not match"),
    "hashes.csv of other weights": (hashes_csv_of_other_weights, "hashes.csv does not match the gate report"),
    "manifest rewritten": (manifest_rewritten, "the evolution manifest does not match the gate report"),
    "loosened policy": (candidate_loosens_its_own_policy, "the candidate edits the policy it is judged by"),
    "stale parent": (stale_parent, "the candidate was trained from the base, but the protected branch serves G000"),
    "rollback to never-promoted": (rollback_to_a_never_promoted_generation, "G001 was never promoted on this branch"),
    "plain commit": (plain_commit, "not a lineage generation"),
    "generation changes code": (candidate_changes_stage_code,
                                "changes stages/train.py, which a generation may not touch"),
    "two generations at once": (two_generations_at_once, "is not a single generation commit on top of"),
    "approved change with evidence": (approved_change_carrying_evidence,
                                      "an approved change may not touch metrics.json"),
    "delta .dvc escaping the store": (delta_manifest_escaping_the_store, "may only track"),
    "delta .dvc with wdir": (delta_manifest_with_a_working_directory, "may only track"),
}


# ---------------------------------------------------------------- part 1: moving main without a PASS

@pytest.mark.parametrize("case", list(FORGERIES))
def test_a_forged_move_of_main_is_refused_by_the_local_hook_and_by_the_hub_and_nothing_moves(store, hub, case):
    build, why = FORGERIES[case]
    forged = build(store)
    store_before, hub_before = refs(store), refs(hub)

    code, _, err = git(store, "update-ref", "refs/heads/main", forged, check=False)
    assert code != 0 and "lineage: refused to move refs/heads/main: " in err and why in err, err
    assert refs(store) == store_before

    # The same commit pushed straight at the hub, forced: nothing local can stop that, the hub must.
    code, _, err = git(store, "push", "--force", "hub", f"{forged}:refs/heads/main", check=False)
    assert code != 0 and "lineage hub: refused to move refs/heads/main: " in err and why in err, err
    assert refs(hub) == hub_before
    assert refs(store) == store_before


def test_delta_manifest_escaping_the_store_really_writes_where_it_points_once_checked_out(store):
    """Why the arbiter must refuse it: `dvc checkout --force` (run by promote and pull) writes the stage script."""
    forged = delta_manifest_escaping_the_store(store)
    git(store, "-c", "core.hooksPath=/dev/null", "checkout", "-q", "--detach", forged)
    run([str(VENV_BIN / "dvc"), "checkout", "-q", "--force"], cwd=store)
    assert (store / "stages" / "train.py").read_bytes() == EVIL_STAGE


def _forged_branch(store: Path) -> str:
    forged = forged_gate_report(store)
    git(store, "branch", "forged", forged)  # any branch but main may point anywhere
    return forged


# Each moves main to a commit whose report says PASS though its metrics fail (or deletes main).
VERBS = {
    "branch -f": (["checkout", "-q", "--detach"], ["branch", "-f", "main", "forged"]),
    "branch -D": (["checkout", "-q", "--detach"], ["branch", "-D", "main"]),
    "push --force into the store": (["checkout", "-q", "--detach"],
                                    ["push", "-q", "--force", ".", "forged:refs/heads/main"]),
    "pull --ff-only": (None, ["pull", "-q", "--ff-only", ".", "forged"]),
    "rebase": (["stash", "-q"], ["rebase", "-q", "forged"]),  # the registered delta waits staged: put it aside
    "cherry-pick": (["stash", "-q"], ["cherry-pick", "forged"]),
    "update-ref --no-deref HEAD": (None, ["update-ref", "HEAD", "forged"]),
}


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_git_verb_that_would_move_main_is_refused_by_the_local_hook(store, verb):
    _forged_branch(store)
    setup, attack = VERBS[verb]
    if setup:
        git(store, *setup)
    before, tip = refs(store), rev(store, "main")
    code, out, err = git(store, *attack, check=False)
    assert code != 0, out + err
    assert "lineage: refused to move refs/heads/main" in err, err
    assert rev(store, "main") == tip
    assert refs(store) == before


BYPASSES = {
    "core.hooksPath override": lambda store, forged: git(store, "-c", "core.hooksPath=/dev/null", "update-ref",
                                                         "refs/heads/main", forged),
    "pygit2": lambda store, forged: pygit2.Repository(str(store)).references["refs/heads/main"].set_target(forged),
    "hand-edited ref file": lambda store, forged: (store / ".git" / "refs" / "heads" / "main").write_text(
        forged + "\n"),
}


@pytest.mark.parametrize("how", list(BYPASSES))
def test_main_moved_around_the_local_hook_is_refused_at_the_hub_and_nothing_moves_there(store, hub, how):
    forged = forged_gate_report(store)
    hub_before = refs(hub)
    BYPASSES[how](store, forged)
    assert rev(store, "main") == forged  # locally the owner of .git can do this (documented)

    code, _, err = git(store, "push", "hub", "main", check=False)  # a plain fast-forward push
    assert code != 0 and "lineage hub: refused to move refs/heads/main: G001 fails the gate" in err, err
    assert refs(hub) == hub_before


def test_a_first_push_is_replayed_move_by_move_so_history_built_around_the_hook_is_refused(store, tmp_path):
    forged = forged_gate_report(store)
    git(store, "-c", "core.hooksPath=/dev/null", "update-ref", "refs/heads/main", forged)
    # a legitimate-looking commit on top, so the bad move is in the middle of the history
    on_top = commit(store, "main", "main", "change\n\nApproved-Change: 1\nApproved-By: M <m@x.invalid>\nReason: r\n",
                    {"README.md": b"hello\n"})
    git(store, "-c", "core.hooksPath=/dev/null", "update-ref", "refs/heads/main", on_top)
    fresh = tmp_path / "fresh.git"
    lineage(store, "hub", "init", fresh, "--name", "fresh")
    code, _, err = lineage(store, "push", "--remote", "fresh", check=False)
    assert code == 1 and "G001 fails the gate under main's policy" in err, err
    assert refs(fresh) == ""  # atomic: not even the frozen tags or the log went


HUB_REF_ATTACKS = {
    "delete a generation tag": (":refs/tags/lineage/gen/G000", "frozen tags are never deleted"),
    "move a generation tag": (f"{G001}:refs/tags/lineage/gen/G000", "frozen tags are never moved"),
    "delete the log": (":refs/lineage/log", "the evolution log is never deleted"),
    "rewrite the log": ("refs/lineage/log~1:refs/lineage/log", "append-only"),
}


@pytest.mark.parametrize("case", list(HUB_REF_ATTACKS))
def test_the_hub_never_deletes_moves_or_rewrites_the_record(store, hub, case):
    refspec, why = HUB_REF_ATTACKS[case]
    store_before, hub_before = refs(store), refs(hub)
    code, _, err = git(store, "push", "--force", "hub", refspec, check=False)
    assert code != 0 and why in err, err
    assert refs(hub) == hub_before
    assert refs(store) == store_before


def test_the_hub_refuses_a_generation_tag_for_a_generation_main_never_served(store, hub):
    hub_before = refs(hub)
    git(store, "tag", "-a", "-m", "{}", "planted-gen", G001)
    code, _, err = git(store, "push", "hub", "planted-gen:refs/tags/lineage/gen/G001", check=False)
    assert code != 0 and "G001 was never served" in err, err
    code, _, err = git(store, "push", "hub", f"{G001}:refs/tags/lineage/gen/G001", check=False)
    assert code != 0 and "annotated" in err, err
    assert refs(hub) == hub_before


def test_the_hub_refuses_a_frozen_tag_on_a_commit_of_another_generation(store, hub):
    hub_before = refs(hub)
    git(store, "tag", "-a", "-m", "{}", "planted-frozen", G001)
    code, _, err = git(store, "push", "hub", "planted-frozen:refs/tags/lineage/frozen/G007-a", check=False)
    assert code != 0 and "is not G007" in err, err
    assert refs(hub) == hub_before


def test_promote_refuses_a_generation_tag_planted_before_it_and_moves_nothing(store):
    forged = forged_gate_report(store)
    git(store, "tag", "-a", "-m", "{}", "lineage/gen/G001", forged)
    before = rev(store, "main"), rev(store, "lineage/gen/G001")
    code, _, err = lineage(store, "promote", G001, check=False)
    assert code == 1 and "refs/tags/lineage/gen/G001: already points at" in err, err
    assert (rev(store, "main"), rev(store, "lineage/gen/G001")) == before


def test_a_forged_generation_tag_is_ignored_when_reading_and_named_by_verify(store):
    """A lineage/gen/G001 tag made before G001 is promoted (as the hub above lets anyone push) points at a
    commit whose metrics fail; the honest G001-a is then promoted. Reading G001 must follow main."""
    forged = forged_gate_report(store)
    git(store, "tag", "-a", "-m", "{}", "lineage/gen/G001", forged)
    git(store, "merge", "-q", "--ff-only", G001)  # the hook's arbiter passes it; the tag stays planted

    shown = json.loads(lineage(store, "--json", "show", "G001")[1])
    assert shown["commit"] == rev(store, G001) != forged
    assert shown["metrics"] == json.loads(blob(store, G001, "metrics.json"))
    code, out, _ = lineage(store, "verify", check=False)
    assert code == 1 and f"tag lineage/gen/G001 points at {forged[:12]}, but main promoted it as" in out, out


# ---------------------------------------------------------------- part 2: hostile files

def _torch_zip(obj, path: Path) -> Path:
    import torch

    torch.save(obj, path)  # torch's own zip format: archive/data.pkl inside
    return path


def _st(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


HOSTILE_BASES = {
    "torch zip named .pt": lambda d, m: _torch_zip({"w": [1.0], "x": Booby(m)}, d / "model.pt"),
    "raw pickle named .ckpt": lambda d, m: (d / "last.ckpt").write_bytes(pickle.dumps({"x": Booby(m)})),
    "torch zip named .bin": lambda d, m: _torch_zip({"x": Booby(m)}, d / "pytorch_model.bin"),
    "torch zip renamed .safetensors": lambda d, m: _torch_zip({"x": Booby(m)}, d / "model.safetensors"),
    "header length past the end": lambda d, m: (d / "model.safetensors").write_bytes(_st(b'{"a":1}', length=5000)),
    "overlapping offsets": lambda d, m: (d / "model.safetensors").write_bytes(_st(
        {"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
         "b": {"dtype": "U8", "shape": [8], "data_offsets": [4, 12]}}, b"\0" * 12)),
    "huge header": lambda d, m: (d / "model.safetensors").write_bytes(_st(b"{}", length=1 << 40)),
    "trailing bytes": lambda d, m: (d / "model.safetensors").write_bytes(_st(
        {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4 + b"#!/bin/sh\n")),
}
HOSTILE_REASONS = {
    "torch zip named .pt": "pickle", "raw pickle named .ckpt": "pickle", "torch zip named .bin": "pickle",
    "torch zip renamed .safetensors": "would execute code", "header length past the end": "past end of file",
    "overlapping offsets": "overlaps", "huge header": "huge header", "trailing bytes": "trailing bytes",
}


@pytest.mark.parametrize("case", list(HOSTILE_BASES))
def test_a_hostile_base_model_is_refused_by_the_parent_stage_and_nothing_is_loaded(empty_store, tmp_path, marker, case):
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}))
    HOSTILE_BASES[case](base, marker)
    set_params(empty_store, {"base": str(base)})

    code, _, err = stage(empty_store, "parent")

    assert code == 1, err
    errors = error_lines(err)
    assert len(errors) == 1 and HOSTILE_REASONS[case] in errors[0], err
    assert "Traceback" not in err
    assert not (empty_store / "models" / "parent").exists()


@pytest.fixture
def empty_store(store_template, tmp_path):
    """A store with no generation yet, so the parent stage builds from `base:`."""
    return copy_store(store_template, tmp_path / "empty")


def test_weights_swapped_in_the_read_only_cache_for_another_generations_of_the_same_size_are_caught(store):
    """G000's cached model.safetensors overwritten in place with G001-a's: valid safetensors, same size, other bytes."""
    cache = store / ".dvc" / "cache" / "files" / "md5"
    g000, g001 = weights_object(cache, child_md5(store, "main")), weights_object(cache, child_md5(store, G001))
    assert g000.stat().st_size == g001.stat().st_size and g000.read_bytes() != g001.read_bytes()
    overwrite_read_only(g000, g001.read_bytes())

    code, out, _ = lineage(store, "verify", check=False)
    assert code == 1 and "MISMATCH G000" in out and "model.safetensors sha256" in out, out
    code, _, err = lineage(store, "checkout", "G000", check=False)
    assert code == 1 and "integrity check failed" in err and "model.safetensors" in err, err
    code, _, err = stage(store, "parent")  # the next candidate would train from it: refused
    assert code == 1 and "integrity check failed: generation G000/model.safetensors" in err, err


def test_served_weights_replaced_in_the_work_tree_are_caught_by_verify(store):
    """models/child/model.safetensors replaced (a new file, the cache untouched) by G001-a's same-size weights."""
    assert lineage(store, "verify")[0] == 0  # a clean copy (models/child not linked to the cache) passes
    served = store / "models" / "child" / "model.safetensors"
    other = weights_object(store / ".dvc" / "cache" / "files" / "md5", child_md5(store, G001)).read_bytes()
    assert served.stat().st_size == len(other)
    served.unlink()
    served.write_bytes(other)

    code, out, _ = lineage(store, "verify", check=False)
    assert code == 1 and "models/child/model.safetensors" in out and "MISMATCH" in out, out


def test_a_dvc_lock_pointing_at_other_weights_than_hashes_csv_is_caught_by_verify_and_the_parent_stage(store):
    """G001-a's evidence with G000's weights in dvc.lock. The arbiter reads git only and cannot see this
    (docs/security.md, 'What is not covered'); what reads the weights must."""
    lock = blob(store, G001, "dvc.lock").replace(child_md5(store, G001).encode(), child_md5(store, "main").encode())
    forged = commit(store, G001, "main", message(store, G001), {"dvc.lock": lock})
    git(store, "-c", "core.hooksPath=/dev/null", "reset", "-q", "--hard", forged)
    run([str(VENV_BIN / "dvc"), "checkout", "-q", "--force"], cwd=store, check=True)

    code, out, _ = lineage(store, "verify", check=False)
    assert code == 1 and "MISMATCH G001" in out and "model.safetensors sha256" in out, out
    assert "served G001 (models/child): models/child/model.safetensors" in out, out
    code, _, err = stage(store, "parent")  # the next candidate would train from it: refused
    assert code == 1 and "integrity check failed: generation G001/" in err, err


@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_a_cached_directory_listing_that_points_outside_is_refused_and_writes_nothing(store, where):
    """The .dir object of G000's weights (in the cache, as a tampered DVC remote would deliver it) lists a path out."""
    md5 = child_md5(store, "main")
    listing_path = cache_object(store, md5)
    listing = json.loads(listing_path.read_text())
    target = store.parent / "PWNED.py" if where == "absolute" else store / "stages" / "train.py"
    rel = str(target) if where == "absolute" else "../../../stages/train.py"  # from models/generations/G000
    listing.append({"md5": _evil_object(store), "relpath": rel})
    overwrite_read_only(listing_path, json.dumps(listing).encode())
    stage_script = (store / "stages" / "train.py").read_bytes()

    code, _, err = lineage(store, "checkout", "G000", check=False)

    assert code == 1 and "integrity check failed" in err and "Traceback" not in err, err
    assert not (store.parent / "PWNED.py").exists()
    assert (store / "stages" / "train.py").read_bytes() == stage_script
    code, out, _ = lineage(store, "verify", check=False)
    assert code == 1 and "MISMATCH G000" in out, out


def _fresh_clone(world, tmp_path) -> tuple[Path, Path]:
    """A clone of the hub with its own copy of the DVC remote: nothing in its cache yet."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(world["hub"]), str(clone))
    remote = tmp_path / "remote"
    shutil.copytree(Path(str(world["store"]) + ".dvc-remote"), remote)
    run([str(VENV_BIN / "dvc"), "remote", "add", "-q", "-d", "--local", "origin", str(remote)], cwd=clone, check=True)
    return clone, remote / "files" / "md5"


def test_a_corrupted_object_in_the_dvc_remote_is_caught_by_verify_and_checkout(world, tmp_path):
    clone, remote = _fresh_clone(world, tmp_path)
    victim = weights_object(remote, child_md5(clone, "main"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte off: DVC fetches it without re-hashing
    overwrite_read_only(victim, bytes(data))

    code, out, err = lineage(clone, "verify", check=False)
    assert code == 1 and "MISMATCH G000" in out and "model.safetensors sha256" in out, out + err
    code, _, err = lineage(clone, "checkout", "G000", check=False)
    assert code == 1 and "integrity check failed" in err, err


def test_a_missing_object_in_the_dvc_remote_is_reported_in_one_line_by_verify_and_checkout(world, tmp_path):
    clone, remote = _fresh_clone(world, tmp_path)
    weights_object(remote, child_md5(clone, "main")).unlink()

    code, out, err = lineage(clone, "verify", check=False)
    assert code == 1 and "Traceback" not in err, out + err
    assert "MISMATCH G000" in out and "DVC remote" in out, out
    code, out, err = lineage(clone, "checkout", "G000", check=False)
    assert code == 1 and "Traceback" not in err and len(error_lines(err)) == 1, err
    assert "DVC remote" in err, err
    assert not (clone / "models" / "generations" / "G000" / "model.safetensors").exists()


def test_the_world_is_untouched_by_every_attack(world):
    """Last: after every case above (each on a copy), the shared hub and store still agree and verify."""
    assert rev(world["hub"], "main") == rev(world["store"], "main")
    assert lineage(world["store"], "verify")[0] == 0
