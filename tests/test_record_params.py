"""params.yaml is the store's settings; a candidate's -S overrides are its own record (overrides.yaml).

One store for the module, through the real commands: G001-o trained with `-S train.max_steps=7` and
promoted; G002-p a plain candidate after it; a rollback to G000; then G003-q, a plain candidate
after the rollback. Each test reads one fact back.
"""

from __future__ import annotations

import json

import pygit2
import pytest
import yaml
from conftest import clone_store, lineage, one_error, refs, relaxed_tiny, sh, trained_g000

pytestmark = pytest.mark.slow

TINY = relaxed_tiny(30, 20)  # the same cached G000 as test_record: train.max_steps 20


def show(store, rev: str, path: str) -> str:
    return sh(["git", "show", f"{rev}:{path}"], store).stdout


def trained_steps(store, rev: str) -> int:
    return json.loads(show(store, rev, "reports/train/manifest.json"))["params"]["train"]["max_steps"]


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    store = clone_store(trained_g000(tmp_path_factory, TINY), tmp_path_factory.mktemp("params") / "luna")
    commented = "# the store's own settings, kept as a person wrote them\n" + (store / "params.yaml").read_text()
    (store / "params.yaml").write_text(commented)
    sh(["git", "add", "params.yaml"], store)
    lineage(store, "change", "--reason", "a comment in params.yaml")
    settings = (store / "params.yaml").read_text()
    lineage(store, "propose", "--name", "o", "-S", "train.max_steps=7")          # G001-o
    lineage(store, "promote", "candidates/G001-o")
    promoted = {"params": (store / "params.yaml").read_text(), "overrides": (store / "overrides.yaml").read_text()}
    lineage(store, "corpus", "write", "2", store.parent / "era2.jsonl")
    lineage(store, "data", "add", store.parent / "era2.jsonl")
    waiting = json.loads(lineage(store, "--json", "status", "--no-remote").stdout)
    waiting_text = lineage(store, "status", "--no-remote").stdout
    sh(["git", "checkout", "-q", "-b", "notes"], store)  # the user's own work on a branch of their own
    (store / "NOTES.md").write_text("my own notes\n")
    sh(["git", "add", "-A"], store)
    sh(["git", "commit", "-q", "-m", "my notes"], store)
    swept = sh(["git", "show", "--name-only", "--format=", "notes"], store).stdout.split()
    sh(["git", "checkout", "-q", "main"], store)
    lineage(store, "corpus", "exam", "2", store.parent / "exam2.jsonl")
    lineage(store, "exam", "add", store.parent / "exam2.jsonl")
    lineage(store, "change", "--reason", "the exam of era 2")
    lineage(store, "propose", "--name", "p")                                      # G002-p: plain
    lineage(store, "rollback", "--to", "G000", "--reason", "G001 was an experiment")
    rolled = {"params": (store / "params.yaml").read_text(), "overrides": (store / "overrides.yaml").read_text()}
    lineage(store, "propose", "--name", "q")                                      # G003-q: plain, after it
    return {"store": store, "settings": settings, "promoted": promoted, "rolled": rolled, "waiting": waiting,
            "waiting_text": waiting_text, "swept": swept}


def test_promoting_a_candidate_keeps_mains_params_yaml_and_its_comments(story):
    assert story["settings"].startswith("# the store's own settings, kept as a person wrote them")
    assert story["promoted"]["params"] == story["settings"]  # byte for byte: no override, no lost comment
    assert show(story["store"], "lineage/gen/G001", "params.yaml") == story["settings"]


def test_the_promoted_generation_records_the_overrides_it_trained_with(story):
    store = story["store"]
    assert yaml.safe_load(story["promoted"]["overrides"]) == {"train": {"max_steps": 7}}
    assert "candidates/G001-o" in story["promoted"]["overrides"]
    assert trained_steps(store, "lineage/gen/G001") == 7
    lock = yaml.safe_load(show(store, "lineage/gen/G001", "dvc.lock"))
    assert lock["stages"]["train"]["params"]["overrides.yaml"] == {"train": {"max_steps": 7}}


def test_a_plain_propose_after_a_promotion_trains_with_params_yaml_not_the_last_overrides(story):
    store = story["store"]
    assert trained_steps(store, "candidates/G002-p") == 20
    assert yaml.safe_load(show(store, "candidates/G002-p", "overrides.yaml")) == {}


def test_a_plain_candidate_after_an_overridden_generation_is_not_judged_as_changing_params(story):
    from lineage.guard.risk import classify_risk

    store = story["store"]
    repo = pygit2.Repository(str(store))
    overridden = repo.revparse_single("lineage/gen/G001^{commit}")
    level, reasons = classify_risk(repo, str(overridden.parents[0].id), str(overridden.id))
    assert level == "medium" and reasons == ["training params changed: train.max_steps"]
    plain = repo.revparse_single("candidates/G002-p")  # forked from main after G001 and era 2's exam
    assert yaml.safe_load(repo[plain.parents[0].tree["overrides.yaml"].id].data) == {"train": {"max_steps": 7}}
    level, reasons = classify_risk(repo, str(plain.parents[0].id), str(plain.id))
    assert level == "low", reasons


def test_a_rollback_restores_the_generations_overrides_and_keeps_the_settings(story):
    assert story["rolled"]["params"] == story["settings"]
    assert story["rolled"]["overrides"] == show(story["store"], "lineage/gen/G000", "overrides.yaml")
    assert yaml.safe_load(story["rolled"]["overrides"]) == {}


def test_the_next_plain_propose_after_a_rollback_does_not_reproduce_the_rolled_back_generation(story):
    store = story["store"]
    assert trained_steps(store, "candidates/G003-q") == 20
    assert json.loads(show(store, "candidates/G003-q", "reports/parent.json"))["generation"] == "G000"


def changed_params(store) -> dict[str, set[str]]:
    """stage -> the keys of .lineage/protected.yaml (what main holds) that `dvc status` says changed for it."""
    out = {}
    for stage, entries in json.loads(sh(["dvc", "status", "--json"], store).stdout or "{}").items():
        for entry in entries:
            keys = entry.get("changed deps", {}).get(".lineage/protected.yaml") if isinstance(entry, dict) else None
            if isinstance(keys, dict):
                out[stage] = set(keys)
    return out


def on_candidate(store, candidate: str = "candidates/G003-q") -> dict:
    """Check a candidate out with its outputs; return `dvc status` there (stage -> changes)."""
    sh(["git", "checkout", "-q", candidate], store)
    sh(["dvc", "checkout", "-q"], store)
    return json.loads(sh(["dvc", "status", "--json"], store).stdout or "{}")


def served(store) -> str:
    return yaml.safe_load((store / ".lineage" / "protected.yaml").read_text())["served"]["generation"]


def test_after_a_promote_dvc_status_names_only_the_parent_main_now_serves_and_no_data_waits(story, tmp_path):
    store = clone_store(story["store"], tmp_path / "luna")
    lineage(store, "promote", "candidates/G003-q")
    # main serves G003 now, so a run here would train G003's child: parent says so, nothing else does
    status = json.loads(sh(["dvc", "status", "--json"], store).stdout)
    assert status == {"parent": [{"changed deps": {".lineage/protected.yaml": {"served": "modified"}}}]}
    assert json.loads(lineage(store, "--json", "status", "--no-remote").stdout)["pending_data"] == []


def test_dvc_status_reports_parent_changed_when_main_moves(story, tmp_path):
    store = clone_store(story["store"], tmp_path / "luna")
    assert on_candidate(store) == {}  # nothing moved since G003-q ran: "Data and pipelines are up to date."
    assert "Data and pipelines are up to date." in sh(["dvc", "status"], store).stdout
    # a plain git fast-forward of main (the hook allows it): the hook notes what main serves now
    sh(["git", "fetch", "-q", ".", "candidates/G003-q:main"], store)
    assert served(store) == "G003"
    assert changed_params(store) == {"parent": {"served"}}
    sh(["git", "checkout", "-q", "main"], store)
    sh(["dvc", "checkout", "-q"], store)
    lineage(store, "rollback", "--reason", "G003 regressed")
    assert served(store) == "G000"
    assert "served" in changed_params(store)["parent"]  # main's dvc.lock is G000's again, from the base
    text = (store / "params.yaml").read_text()
    (store / "params.yaml").write_text(text.replace("max_tone_drift: 1.0", "max_tone_drift: 0.9"))
    sh(["git", "add", "params.yaml"], store)
    lineage(store, "change", "--reason", "a tighter tone threshold")
    on_candidate(store)
    # a threshold is the gate's alone: prepare (data rules) and train (budget) stay as they were
    assert changed_params(store) == {"parent": {"served"}, "gate": {"policy"}}


def without_era2(story, tmp_path):
    """A copy of the story whose era 2 no longer waits: its data is G001's again, as after the rollback."""
    store = clone_store(story["store"], tmp_path / "luna")
    (store / ".git" / "lineage" / "pending" / "d002-era2.jsonl.dvc").unlink()
    return store


def test_propose_refuses_to_retrain_the_recipe_of_a_rolled_back_generation(story, tmp_path):
    store = without_era2(story, tmp_path)
    before = refs(store)
    proc = lineage(store, "propose", "--name", "r", "-S", "train.max_steps=7", check=False)
    one_error(proc.returncode, proc.stderr, "this recipe is exactly G001's, which was rolled back "
              "(reason: G001 was an experiment)", exit_code=2)
    assert "--again" in proc.stderr and "lineage data add" in proc.stderr
    assert refs(store) == before  # no branch, tag, generation number or log event
    assert sh(["git", "status", "--porcelain"], store).stdout == ""


@pytest.mark.parametrize("extra", [["-S", "seed=99"], ["--again"]], ids=["another-seed", "again"])
def test_another_seed_or_again_trains_the_recipe_of_a_rolled_back_generation(story, tmp_path, extra):
    store = without_era2(story, tmp_path)
    proc = lineage(store, "propose", "--name", "r", "-S", "train.max_steps=7", *extra, check=False,
                   fault="propose:branched")  # killed once its branch exists: past the check, before training
    assert "rolled back" not in proc.stderr
    assert sh(["git", "rev-parse", "-q", "--verify", "candidates/G004-r"], store, check=False).returncode == 0


def test_status_names_registered_data_waiting_and_where_it_waits(story):
    assert story["waiting"]["pending_data"] == ["d002-era2"]
    assert story["waiting"]["pending_where"].startswith("in .git/lineage/pending")
    assert "not in the git index" in story["waiting"]["pending_where"]
    assert "registered data waiting: d002-era2, in .git/lineage/pending" in story["waiting_text"]
    after = json.loads(lineage(story["store"], "--json", "status", "--no-remote").stdout)
    assert after["pending_data"] == ["d002-era2"]  # it waits until a candidate holding it is promoted


def test_registered_data_stays_out_of_a_plain_git_commit_on_another_branch(story):
    assert story["swept"] == ["NOTES.md"]  # `git add -A && git commit` there took only the user's file
    held = sh(["git", "show", "--name-only", "--format=", "candidates/G002-p"], story["store"]).stdout.split()
    assert "data/deltas/d002-era2.jsonl.dvc" in held  # the next candidate took it
    ignored = sh(["git", "show", "candidates/G002-p:data/deltas/.gitignore"], story["store"]).stdout.split()
    assert "/d002-era2.jsonl" in ignored  # a clone's DVC checkout of it is ignored there too


def test_change_refuses_a_staged_overrides_yaml(story, tmp_path):
    store = clone_store(story["store"], tmp_path / "luna")
    (store / "overrides.yaml").write_text("train:\n  max_steps: 3\n")
    sh(["git", "add", "overrides.yaml"], store)
    proc = lineage(store, "change", "--reason", "sneak an override in", check=False)
    assert proc.returncode != 0 and "overrides.yaml is a generation's record" in proc.stderr
    assert "params.yaml" in proc.stderr


def test_data_add_refuses_an_empty_file_before_registering_anything(store, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    listing = sorted(p.name for p in (store / "data" / "deltas").iterdir())
    proc = lineage(store, "data", "add", empty, check=False)
    assert proc.returncode == 1 and f"{empty} holds no records" in proc.stderr
    assert sorted(p.name for p in (store / "data" / "deltas").iterdir()) == listing
    assert sh(["git", "status", "--porcelain"], store).stdout == ""


def test_data_add_refuses_a_symlink_up_front_without_following_it(store, tmp_path):
    real = tmp_path / "outside" / "era1.jsonl"
    real.parent.mkdir()
    lineage(store, "corpus", "write", "1", real)  # a valid delta: only the link is wrong
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    listing = sorted(p.name for p in (store / "data" / "deltas").iterdir())
    proc = lineage(store, "data", "add", link, check=False)
    assert proc.returncode == 2 and "is a symbolic link" in proc.stderr and "file itself" in proc.stderr
    assert sorted(p.name for p in (store / "data" / "deltas").iterdir()) == listing
    assert lineage(store, "data", "add", real).returncode == 0  # the file itself is welcome


def test_log_help_names_its_formats_apart_attempts_and_events(store):
    text = " ".join(lineage(store, "log", "--help").stdout.split())
    assert "table: one row per attempt and per rollback" in text
    assert "csv: one row per attempt" in text and "jsonl: the evolution log, one event per line" in text
