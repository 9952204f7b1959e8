"""The train stage on real stores: what a generation holds, skipping, determinism, budget, resume, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_PARAMS, TINY_STEPS, dvc, error_lines, git, read_params, set_params, stage

from lineage.core.canonical import digest_obj
from lineage.core.hashes import parse_hashes_csv, weights_digest
from lineage.core.policy import Policy
from lineage.core.safety import check_safetensors

CHILD = Path("models/child")
FAILURE = Path("reports/train_failure.json")


def train_metrics(store: Path) -> dict:
    return json.loads((store / "reports/train/metrics.json").read_text())


def lock_stage(store: Path, name: str) -> dict | None:
    return (yaml.safe_load((store / "dvc.lock").read_text())["stages"]).get(name)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- a first generation

@pytest.mark.slow
def test_first_generation_holds_weights_hashes_manifest_and_metrics(trained_store):
    store = trained_store
    weights = sorted((store / CHILD).glob("*.safetensors"))
    assert weights
    for path in weights:
        check_safetensors(path)
    assert (store / CHILD / "config.json").is_file() and (store / CHILD / "tokenizer.json").is_file()

    # hashes.csv: every file of the child, with its real sha256 and size.
    rows = parse_hashes_csv((store / "reports/train/hashes.csv").read_text())
    assert (store / "reports/train/hashes.csv").read_text() == (store / CHILD / "hashes.csv").read_text()
    on_disk = sorted(p.relative_to(store / CHILD).as_posix() for p in (store / CHILD).rglob("*")
                     if p.is_file() and p.name != "hashes.csv")
    assert [r["path"] for r in rows] == on_disk
    for row in rows:
        path = store / CHILD / row["path"]
        assert row["sha256"] == sha256(path) and row["bytes"] == path.stat().st_size, row["path"]

    manifest = json.loads((store / "reports/train/manifest.json").read_text())
    parent = json.loads((store / "reports/parent.json").read_text())
    params = read_params(store)
    assert manifest["parent"]["kind"] == "scratch"
    assert manifest["parent"]["weights_sha256"] == parent["weights_sha256"]
    [new] = manifest["data"]["new"]
    assert new["id"] == "d000-era0" and new["sha256"] == sha256(store / "data/deltas/d000-era0.jsonl")
    assert manifest["data"]["train_sha256"] == sha256(store / "data/prepared/train.jsonl")
    assert manifest["params"]["train"]["max_steps"] == TINY_STEPS
    assert manifest["params"]["scratch"]["hidden_size"] == TINY_PARAMS["scratch"]["hidden_size"]
    assert manifest["seed"] == params["seed"]
    assert manifest["budget"] == Policy.from_params(params).budget.to_dict()
    assert {"python", "lineage", "torch", "transformers", "dvc"} <= set(manifest["versions"])
    assert manifest["policy_source"]["commit"] == git(store, "rev-parse", "main").strip()

    metrics = train_metrics(store)
    for key in ("loss_start", "loss_final", "steps", "tokens", "wall_minutes", "peak_memory_mb"):
        assert isinstance(metrics[key], (int, float)) and metrics[key] > 0, key
    assert metrics["steps"] == TINY_STEPS
    assert metrics["loss_final"] < metrics["loss_start"], "training must lower the loss"
    assert metrics["status"] == "COMPLETE" and metrics["resumed"] is False
    assert metrics["manifest_digest"] == digest_obj(manifest)
    assert metrics["weights_sha256"] == weights_digest(rows)

    lock = lock_stage(store, "train")
    assert {o["path"] for o in lock["outs"]} >= {"models/child", "reports/train/manifest.json"}
    assert not (store / FAILURE).exists()
    assert not list((store / ".lineage/checkpoints").glob("*/checkpoint-*")), "checkpoints are cleaned up"
    assert all(p.stat().st_mode & 0o222 == 0 for p in (store / "models/parent").rglob("*") if p.is_file()), \
        "the parent is materialised read-only"


@pytest.mark.slow
def test_training_metrics_go_through_dvclive_to_dvc_plots_and_metrics(trained_store):
    live = json.loads((trained_store / "reports/train/live/metrics.json").read_text())
    assert live["train"]["loss"] > 0 and live["step"] > 0 and live["train"]["tokens"] > 0
    loss_tsv = (trained_store / "reports/train/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert loss_tsv[0].split("\t")[-2:] == ["step", "loss"] and len(loss_tsv) > 2

    code, out, err = dvc(trained_store, "metrics", "show", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert any("reports/train/live/metrics.json" in files for files in
               (rev.get("data", {}) for rev in shown.values())), shown
    code, out, err = dvc(trained_store, "plots", "show", "--json", "--split")
    assert code == 0, err
    assert "reports/train/live/plots/metrics/train/loss.tsv" in out


def assert_plain_progress(out: str, err: str) -> None:
    """The train stage reports progress as plain lines outside a terminal: start, each tenth, the end."""
    lines = [ln for ln in (out + err).splitlines() if ln.startswith("train: ") and "steps (" in ln]
    assert lines[0].startswith("train: 1/") and lines[-1].startswith(f"train: {TINY_STEPS}/{TINY_STEPS} steps (100%)")
    assert all("steps/s" in ln for ln in lines) and "\r" not in out + err


@pytest.mark.slow
def test_a_second_repro_does_not_retrain(trained_store):
    weights = sorted((trained_store / CHILD).glob("*.safetensors"))
    before = {p: (p.stat().st_mtime_ns, sha256(p)) for p in weights}
    metrics = (trained_store / "reports/train/metrics.json").read_bytes()

    code, out, err = dvc(trained_store, "repro", "train")

    assert code == 0, out + err
    assert "Stage 'train' didn't change, skipping" in out
    assert "Running stage 'train'" not in out
    assert {p: (p.stat().st_mtime_ns, sha256(p)) for p in weights} == before
    assert (trained_store / "reports/train/metrics.json").read_bytes() == metrics


@pytest.mark.slow
def test_forced_retraining_gives_the_same_weights_and_reports_progress(trained_store):
    before = train_metrics(trained_store)["weights_sha256"]

    code, out, err = dvc(trained_store, "repro", "-f", "train")

    assert code == 0, out + err
    assert "Running stage 'train'" in out
    assert train_metrics(trained_store)["weights_sha256"] == before
    assert_plain_progress(out, err)


@pytest.mark.slow
def test_another_seed_gives_other_weights(trained_store):
    before = train_metrics(trained_store)["weights_sha256"]
    set_params(trained_store, {"seed": 4321})

    code, out, err = dvc(trained_store, "repro", "train")

    assert code == 0, out + err
    assert train_metrics(trained_store)["weights_sha256"] != before
    assert json.loads((trained_store / "reports/train/manifest.json").read_text())["seed"] == 4321


@pytest.mark.slow
def test_every_param_that_shapes_the_child_makes_train_stale(trained_store):
    # The first generation trains on the scratch schedule, so scratch.* decide its weights too.
    params = read_params(trained_store)
    changes = {"seed": {"seed": params["seed"] + 1},
               "train.learning_rate": {"train": {"learning_rate": params["train"]["learning_rate"] * 2}},
               "scratch.max_steps": {"scratch": {"max_steps": params["scratch"]["max_steps"] + 1}},
               "scratch.learning_rate": {"scratch": {"learning_rate": params["scratch"]["learning_rate"] * 2}}}
    original = (trained_store / "params.yaml").read_text()
    stale = {}
    for name, change in changes.items():
        set_params(trained_store, change)
        code, out, err = dvc(trained_store, "status", "train", "--json")
        assert code == 0, err
        stale[name] = "train" in json.loads(out)
        (trained_store / "params.yaml").write_text(original)
    assert stale == {name: True for name in changes}


# ---------------------------------------------------------------- budget

BUDGET_TRIPS = {
    "max_steps": 5,              # the run wants TINY_STEPS (40)
    "max_tokens": 100,           # one batch of 16 records is already more
    "max_wall_minutes": 0.0001,  # 6 ms
    "max_memory_mb": 1,          # loading the parent takes more
    "max_output_mb": 0.01,       # the parent alone is larger
}


@pytest.mark.slow
@pytest.mark.parametrize("limit", list(BUDGET_TRIPS))
def test_a_budget_breach_fails_the_run_and_records_it(trained_store, limit):
    store = trained_store
    lock_before = lock_stage(store, "train")
    set_params(store, {"policy": {"budget": {limit: BUDGET_TRIPS[limit]}}}, commit=f"test: tight {limit}")
    if limit == "max_steps":
        # A candidate cannot buy itself more budget: the limit is read from the protected branch.
        set_params(store, {"policy": {"budget": {"max_steps": 100_000}}})

    # The budget is read from the protected branch, not a DVC dependency of train, so a budget
    # change alone does not make DVC re-run the stage: force this one stage.
    code, out, err = dvc(store, "repro", "-f", "-s", "train")

    assert code != 0
    breaches = [line for line in err.splitlines() if "budget exceeded" in line]
    assert len(breaches) == 1, out + err
    assert breaches[0].startswith(f"error: budget exceeded: {limit}")
    assert len(error_lines(err)) == 1 and "budget exceeded" not in out
    failure = json.loads((store / FAILURE).read_text())
    assert failure["status"] == "FAILED"
    assert failure["limit"].startswith(limit)
    assert failure["allowed"] == BUDGET_TRIPS[limit]
    assert failure["manifest_digest"].startswith("sha256:")
    assert not (store / CHILD).exists(), "nothing half-written is taken for a generation"
    assert lock_stage(store, "train") == lock_before, "dvc.lock must not record a failed run"


# ---------------------------------------------------------------- resume after a kill

def _wait_for_checkpoint(store: Path, proc: subprocess.Popen, timeout: float = 180) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = list((store / ".lineage/checkpoints").glob("*/checkpoint-*/trainer_state.json"))
        if done:
            return done[0].parent
        if proc.poll() is not None:
            pytest.fail(f"training ended (exit {proc.returncode}) before a checkpoint could be interrupted")
        time.sleep(0.02)
    pytest.fail("no checkpoint appeared")


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(trained_store, tmp_path):
    store = trained_store
    # The parent is the scratch base, so scratch.max_steps is the schedule; set both to be sure.
    set_params(store, {"scratch": {"max_steps": 60}, "train": {"max_steps": 60, "checkpoint_every": 5}})
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(["python", "stages/train.py"], cwd=store, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        checkpoint = _wait_for_checkpoint(store, proc)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    # A kill while saving leaves a checkpoint without its trainer state: it must be skipped.
    partial = checkpoint.parent / "checkpoint-9999"
    partial.mkdir()
    (partial / "config.json").write_text("{}")

    code, out, err = stage(store, "train")

    assert code == 0, err
    metrics = train_metrics(store)
    assert metrics["resumed"] is True
    assert metrics["steps"] == 60 and metrics["status"] == "COMPLETE"
    assert "resumed from" in err and "checkpoint-9999" not in err
    assert not checkpoint.parent.exists() or not list(checkpoint.parent.glob("checkpoint-*"))

    # The interruption leaves no mark on the weights: an uninterrupted run gives the same bytes.
    resumed = metrics["weights_sha256"]
    code, _, err = stage(store, "train")
    assert code == 0, err
    assert train_metrics(store)["resumed"] is False
    assert train_metrics(store)["weights_sha256"] == resumed


# ---------------------------------------------------------------- weights refused by content

class Booby:
    """Unpickling this writes the marker file: proof that the pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_named_safetensors_is_refused_as_base(store, tmp_path):
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}))
    marker = tmp_path / "PWNED"
    (base / "model.safetensors").write_bytes(pickle.dumps({"weight": [1.0], "x": Booby(marker)}))
    set_params(store, {"base": str(base)})

    code, _, err = stage(store, "parent")

    assert code == 1
    errors = error_lines(err)
    assert len(errors) == 1, err
    assert "model.safetensors" in errors[0] and "pickle" in errors[0]
    assert "Traceback" not in err
    assert not (store / "models/parent").exists()
    assert not marker.exists(), "the pickle must never be loaded"

    code, out, err = dvc(store, "repro", "train")
    assert code != 0
    assert len(error_lines(out + err)) == 1 and "pickle" in error_lines(out + err)[0]
    assert not marker.exists()


def test_a_pickle_weights_file_is_refused_as_base(store, tmp_path):
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": [1.0]}))
    set_params(store, {"base": str(base)})

    code, _, err = stage(store, "parent")

    assert code == 1
    assert len(error_lines(err)) == 1 and "pytorch_model.bin" in error_lines(err)[0]


def test_a_local_safetensors_base_is_linked_in_read_only(prepared_store, tmp_path):
    base = tmp_path / "base-model"
    shutil.copytree(prepared_store / "models/parent", base)
    set_params(prepared_store, {"base": str(base)})

    code, _, err = stage(prepared_store, "parent")

    assert code == 0, err
    info = json.loads((prepared_store / "reports/parent.json").read_text())
    assert info["kind"] == "local" and info["base_model"] == str(base.resolve())
    copied = sorted(p.relative_to(prepared_store / "models/parent").as_posix()
                    for p in (prepared_store / "models/parent").rglob("*") if p.is_file())
    assert copied == sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())


@pytest.mark.parametrize("load, cores, threads", [(0.2, 2, 2), (1.3, 2, 2), (2.6, 2, 1), (4.6, 2, 1), (3.0, 8, 6)])
def test_training_uses_the_cores_other_processes_leave_free(monkeypatch, load, cores, threads):
    from lineage.adapters import training

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert training.free_cpu_threads() == threads


def test_omp_num_threads_set_by_the_user_wins_over_the_load(monkeypatch):
    from lineage.adapters import training

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert training.free_cpu_threads() is None


def test_resuming_after_a_kill_mid_write_of_dvclives_files_drops_what_was_cut(tmp_path):
    from lineage.adapters import training

    live = tmp_path / "live"
    plot = live / "plots" / "metrics" / "train" / "loss.tsv"
    plot.parent.mkdir(parents=True)
    plot.write_text("step\ttrain/loss\n0\t6.5\n1\t6.1\n2\t5.")  # the kill came mid-row
    (live / "metrics.json").write_text("")  # ... or while the summary was rewritten
    callback = training._dvclive_callback(live, resume=True)  # DVCLive's resume parsed the empty summary
    assert callback is not None
    assert plot.read_text() == "step\ttrain/loss\n0\t6.5\n1\t6.1\n"
    assert not (live / "metrics.json").exists()
