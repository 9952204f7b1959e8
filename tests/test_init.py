"""`lineage init`: what a new store holds, idempotence, refusals, DVC config, the bundled template."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT, dvc, error_lines, git, init_store, run_cli

import lineage
from lineage.api import TEMPLATE_FILES

TEMPLATE = Path(lineage.__file__).parent / "template"


def head(store: Path) -> str:
    return git(store, "rev-parse", "HEAD").strip()


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under path (git internals included) with its bytes: 'nothing changed' means equal."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def test_init_in_an_empty_directory_commits_a_complete_store(tmp_path):
    store = tmp_path / "store"
    store.mkdir()

    code, out, err = run_cli("init", store, cwd=tmp_path)

    assert code == 0, err
    tracked = set(git(store, "ls-files").split())
    expected = {"dvc.yaml", "params.yaml", ".gitignore", ".dvc/config", ".dvcignore",
                "data/deltas/d000-era0.jsonl.dvc", *(f"stages/{n}.py" for n in ("parent", "prepare", "train",
                                                                                  "eval", "gate")),
                *(f"exam/{kind}.jsonl" for kind in ("recall", "generalize", "tone", "law"))}
    assert expected <= tracked
    assert (store / "data/deltas/d000-era0.jsonl").is_file()
    assert "data/deltas/d000-era0.jsonl" not in tracked, "the delta itself is DVC's, not git's"
    assert git(store, "rev-list", "--count", "HEAD").strip() == "1"
    assert git(store, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert "Lineage-Init: 1" in git(store, "log", "-1", "--format=%B")
    assert git(store, "log", "-1", "--format=%an <%ae>").strip() == "Lineage Test <test@lineage.invalid>"
    assert git(store, "config", "lineage.protectedBranch").strip() == "main"
    assert git(store, "status", "--porcelain", "--untracked-files=all") == "", "init leaves a clean tree"
    assert f"commit:           {head(store)[:12]}" in out
    for line in ("/models/", "/.lineage/"):
        assert line in (store / ".gitignore").read_text().splitlines()


def test_init_installs_the_arbiter_hook(tmp_path):
    store = init_store(tmp_path / "store")
    hook = store / ".git" / "hooks" / "reference-transaction"
    assert hook.is_file() and os.access(hook, os.X_OK)
    assert "lineage.guard.hook" in hook.read_text()


def test_init_creates_a_missing_directory(tmp_path):
    store = tmp_path / "new" / "store"
    code, _, err = run_cli("init", store, cwd=tmp_path)
    assert code == 0, err
    assert (store / ".git").is_dir() and (store / ".dvc").is_dir()


def test_init_twice_is_idempotent(tmp_path):
    store = init_store(tmp_path / "store")
    before_head, before_files = head(store), snapshot(store / "data")

    code, out, err = run_cli("init", store, cwd=tmp_path)

    assert code == 0, err
    assert head(store) == before_head, "a second init must not commit"
    assert "already a store; nothing to do" in out
    assert "commit:" not in out
    assert snapshot(store / "data") == before_files
    assert git(store, "status", "--porcelain", "--untracked-files=all") == ""


def test_init_refuses_a_dirty_tree_and_changes_nothing(tmp_path):
    store = init_store(tmp_path / "store")
    params = store / "params.yaml"
    params.write_text(params.read_text() + "\n# local edit\n")
    before_head, before = head(store), snapshot(store)

    code, out, err = run_cli("init", store, cwd=tmp_path)

    assert code == 3
    errors = error_lines(err)
    assert len(errors) == 1, err
    assert "uncommitted changes" in errors[0] and "params.yaml" in errors[0]
    assert "hint:" in err
    assert head(store) == before_head
    assert snapshot(store) == before


def test_init_refuses_a_conflicting_dvc_yaml_and_changes_nothing(tmp_path):
    target = tmp_path / "project"
    target.mkdir()
    (target / "dvc.yaml").write_text("stages:\n  mine:\n    cmd: echo mine\n")

    code, out, err = run_cli("init", target, cwd=tmp_path)

    assert code == 3
    errors = error_lines(err)
    assert len(errors) == 1, err
    assert "dvc.yaml" in errors[0] and "differs" in errors[0]
    assert (target / "dvc.yaml").read_text() == "stages:\n  mine:\n    cmd: echo mine\n"
    assert sorted(p.name for p in target.iterdir()) == ["dvc.yaml"], "a refused init must leave nothing behind"


def test_init_refuses_a_conflicting_dvc_yaml_in_an_existing_repo(tmp_path):
    target = tmp_path / "project"
    target.mkdir()
    git(target, "init", "-q")
    (target / "dvc.yaml").write_text("stages: {}\n")
    git(target, "add", "dvc.yaml")
    git(target, "commit", "-q", "-m", "mine")
    before_head, before = head(target), snapshot(target)

    code, _, err = run_cli("init", target, cwd=tmp_path)

    assert code == 3
    assert len(error_lines(err)) == 1 and "dvc.yaml" in error_lines(err)[0]
    assert head(target) == before_head and snapshot(target) == before


def test_init_refuses_a_path_that_is_a_file(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"not a directory")

    code, _, err = run_cli("init", target, cwd=tmp_path)

    assert code == 3
    errors = error_lines(err)
    assert len(errors) == 1 and "not a directory" in errors[0] and "model.bin" in errors[0]
    assert target.read_bytes() == b"not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_init_configures_link_cache_and_a_default_remote_outside_the_work_tree(tmp_path):
    store = tmp_path / "store"
    code, out, err = run_cli("init", store, cwd=tmp_path)
    assert code == 0, err

    cache_types = dvc(store, "config", "cache.type", check=True)[1].strip()
    assert "hardlink" in cache_types and "symlink" in cache_types
    default = dvc(store, "remote", "default", check=True)[1].strip()
    remote = Path(dvc(store, "config", f"remote.{default}.url", check=True)[1].strip())
    assert remote.is_absolute() and remote.is_dir()
    assert not remote.resolve().is_relative_to(store.resolve()), "the archive must live outside the store"
    assert f"DVC remote:       {remote}" in out
    assert "false" in dvc(store, "config", "core.analytics", check=True)[1]


def test_init_with_an_explicit_remote_prints_it(tmp_path):
    remote = tmp_path / "archive"
    code, out, err = run_cli("init", tmp_path / "store", "--remote", remote, cwd=tmp_path)
    assert code == 0, err
    assert f"DVC remote:       {remote}" in out
    assert remote.is_dir()


def test_status_without_a_dvc_remote_names_it_and_the_command_that_adds_one(tmp_path):
    store = init_store(tmp_path / "store")
    dvc(store, "remote", "remove", "--local", "origin", check=True)
    code, out, err = run_cli("status", cwd=store)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("DVC remote:"))
    assert "no remote specified" in line and "dvc remote add -d <remote name> <remote url>" in line, line
    code, out, err = run_cli("--json", "status", cwd=store)
    shown = json.loads(out)
    assert shown["remote_in_sync"] is None and "dvc remote add -d" in shown["remote_detail"]


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_bundled_template_matches_the_project_store(name):
    # The project repository is itself a store: its pipeline files are the template, byte for byte.
    assert (TEMPLATE / name).read_bytes() == (PROJECT / name).read_bytes()


def test_every_project_stage_script_is_in_the_template():
    assert sorted(p.name for p in (PROJECT / "stages").glob("*.py")) == \
        sorted(p.name for p in (TEMPLATE / "stages").glob("*.py"))


HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "dvc", "pygit2")


@pytest.mark.parametrize("argv", [["--help"], ["init", "--help"], ["data", "add", "--help"],
                                  ["corpus", "write", "--help"], ["corpus", "exam", "--help"],
                                  ["exam", "add", "--help"], ["exam", "show", "--help"]])
def test_help_imports_no_heavy_library(argv):
    script = (
        "import json, sys\n"
        "import lineage.ui.cli\n"
        f"lineage.ui.cli.cli.main({argv!r}, prog_name='lineage', standalone_mode=False)\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    assert json.loads(proc.stdout.splitlines()[-1]) == []


def test_init_never_commits_a_users_untracked_files(tmp_path):
    target = tmp_path / "fresh"
    target.mkdir()
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    (target / ".env").write_text("AWS_SECRET_ACCESS_KEY=abc\n")
    (target / "notes.txt").write_text("mine\n")
    code, out, err = run_cli("init", str(target), cwd=tmp_path)
    assert code == 0, err
    committed = git(target, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert ".env" not in committed and "notes.txt" not in committed
    assert "dvc.yaml" in committed
    assert (target / ".env").exists()


def test_init_commits_era_0s_exam_and_a_delta_without_probes(tmp_path):
    store = init_store(tmp_path / "store")
    committed = git(store, "ls-tree", "-r", "--name-only", "HEAD", "exam").split()
    assert committed == [f"exam/{k}.jsonl" for k in ("generalize", "law", "recall", "tone")]
    generalize = [json.loads(line) for line in (store / "exam/generalize.jsonl").read_text().splitlines()]
    assert generalize and {i["delta"] for i in generalize} == {"era0"}
    delta = (store / "data/deltas/d000-era0.jsonl").read_text()
    assert '"probe"' not in delta, "the first delta holds training records only; its probes are the exam"
    shown = json.loads(run_cli("--json", "exam", "show", cwd=store)[1])
    assert shown["counts"]["generalize"] == {"era0": len(generalize)} and shown["digest"].startswith("sha256:")


def test_init_keeps_a_users_own_exam(tmp_path):
    target = tmp_path / "mine"
    (target / "exam").mkdir(parents=True)
    own = json.dumps({"prompt": "Q: Is the lamp lit?\nA:", "rule": {"must_match": "yes"}}) + "\n"
    (target / "exam" / "burnin.jsonl").write_text(own)

    code, _, err = run_cli("init", target, cwd=tmp_path)

    assert code == 0, err
    assert (target / "exam" / "burnin.jsonl").read_text() == own
    assert not (target / "exam" / "generalize.jsonl").exists(), "era 0's exam never overwrites a user's"
    assert git(target, "ls-tree", "-r", "--name-only", "HEAD", "exam").split() == ["exam/burnin.jsonl"]
