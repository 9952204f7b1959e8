"""train stage: freeze the evolution manifest, train within budget, write the child generation."""

from __future__ import annotations

import json
import platform
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..core.canonical import digest_obj, write_json
from ..core.errors import BudgetExceededError
from ..core.hashes import hash_dir, hashes_csv, weights_digest
from .common import (
    CHECKPOINTS,
    CHILD_DIR,
    PARENT_DIR,
    PARENT_INFO,
    PREPARED,
    TRAIN_FAILURE,
    TRAIN_REPORTS,
    log,
    protected_policy,
)


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("lineage", "torch", "transformers", "trl", "peft", "datasets", "dvc", "unsloth"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def effective_train_params(settings, parent: dict) -> dict:
    """train params, with the scratch pre-training schedule when the parent is the scratch base."""
    train = dict(settings["train"])
    if parent.get("kind") == "scratch":
        train["learning_rate"] = settings["scratch"]["learning_rate"]
        train["max_steps"] = settings["scratch"]["max_steps"]
    return train


def build_manifest(settings, judged, parent: dict, summary: dict, backend: str) -> dict:
    """Everything that determines the child, frozen before the first training step."""
    train = effective_train_params(settings, parent)
    return {
        "schema_version": 1,
        "parent": {k: parent.get(k) for k in ("kind", "generation", "commit", "weights_sha256", "dvc_md5")},
        "base_model": parent.get("base_model"),
        "data": {"new": summary["new_deltas"], "replay": summary["replay_deltas"],
                 "train_sha256": summary["train_sha256"], "train_records": summary["train_records"],
                 "strategy": summary["strategy"]},
        "deltas_seen": summary["deltas_seen"],
        "method": train["method"], "finetune": train["finetune"], "backend": backend,
        "params": {"train": train, "data": settings["data"],
                   "scratch": settings["scratch"] if parent.get("kind") == "scratch" else None},
        "seed": settings["seed"],
        "budget": judged.policy.budget.to_dict(),
        "policy_source": judged.source(),
        "versions": _versions(),
    }


def materialise_critic(parent: dict, manifest: dict) -> Path | None:
    """G(N-1) for distillation: the parent generation's own parent, from the DVC cache.

    With no grandparent generation (the parent is G000), the teacher doubles as critic; the
    manifest says which it was.
    """
    from ..adapters import dvc
    from ..core.errors import ParamsError

    if parent.get("kind") != "generation":
        raise ParamsError("train.method", "distill needs a parent generation to learn from",
                          "Train the first generation with cpt or sft; distill from G001 on.")
    grand = (json.loads((PARENT_DIR / "manifest.json").read_text()).get("parent") or {})
    if grand.get("kind") != "generation" or not grand.get("dvc_md5"):
        manifest["critic"] = {"kind": "teacher", "why": "the parent has no parent generation"}
        return None
    target = CHECKPOINTS.parent / "critic"
    dvc.materialise(dvc.cache_dir("."), grand["dvc_md5"], target)
    manifest["critic"] = {"kind": "generation", "generation": grand.get("generation"), "dvc_md5": grand["dvc_md5"]}
    return target


def main() -> None:
    from ..adapters import training
    from ..core.settings import Settings

    settings = Settings.load()
    judged = protected_policy()
    parent = json.loads(PARENT_INFO.read_text())
    summary = json.loads((PREPARED / "summary.json").read_text())
    TRAIN_FAILURE.unlink(missing_ok=True)
    backend = training.pick_backend(settings["train"]["backend"])
    manifest = build_manifest(settings, judged, parent, summary, backend)
    digest = digest_obj(manifest)
    write_json(TRAIN_REPORTS / "manifest.json", manifest)  # frozen before the first step
    train_params = manifest["params"]["train"]
    log.info("train: manifest %s frozen; %s on %s, %d steps max", digest[:19], manifest["method"], backend,
             train_params["max_steps"])

    critic_dir = None
    if train_params["method"] == "distill":
        critic_dir = materialise_critic(parent, manifest)
        write_json(TRAIN_REPORTS / "manifest.json", manifest)
        digest = digest_obj(manifest)
    records = [json.loads(line) for line in (PREPARED / "train.jsonl").read_text().splitlines() if line]
    checkpoints = CHECKPOINTS / digest.split(":")[1][:16]
    from ..core.progress import Progress

    bar = Progress("train", train_params["max_steps"], "steps")
    try:
        result = training.train(PARENT_DIR, records, train_params, settings["seed"], judged.policy.budget,
                                 backend, CHILD_DIR, checkpoints, progress=bar, critic_dir=critic_dir,
                                 live_dir=TRAIN_REPORTS / "live")
    except BudgetExceededError as exc:
        shutil.rmtree(CHILD_DIR, ignore_errors=True)
        write_json(TRAIN_FAILURE, {"status": "FAILED", "reason": str(exc), "limit": exc.limit,
                                   "used": exc.used, "allowed": exc.allowed, "manifest_digest": digest,
                                   "budget_used": getattr(exc, "usage", {}),
                                   "loss_curve": getattr(exc, "loss_curve", [])})
        raise
    finally:
        bar.close()
    if result.resumed_from:
        log.info("train: resumed from %s", result.resumed_from)
    shutil.rmtree(checkpoints, ignore_errors=True)

    train_args = {"method": manifest["method"], "finetune": manifest["finetune"], "backend": backend,
                  "seed": settings["seed"], **train_params}
    write_json(CHILD_DIR / "train_args.json", train_args)
    write_json(CHILD_DIR / "manifest.json", manifest)
    rows = hash_dir(CHILD_DIR)
    csv_text = hashes_csv(rows)
    (CHILD_DIR / "hashes.csv").write_text(csv_text)
    (TRAIN_REPORTS / "hashes.csv").write_text(csv_text)
    losses = [loss for _, loss in result.loss_curve]
    metrics = {"status": "COMPLETE", "reason": None, **result.usage(),
               "loss_start": losses[0] if losses else None, "loss_final": losses[-1] if losses else None,
               "manifest_digest": digest, "weights_sha256": weights_digest(rows),
               "resumed": bool(result.resumed_from)}
    write_json(TRAIN_REPORTS / "metrics.json", metrics)
    write_json(TRAIN_REPORTS / "loss_curve.json", {"loss": [{"step": s, "loss": v} for s, v in result.loss_curve]})
    log.info("train: %d steps, %d tokens, %.2f min, loss %s -> %s, weights %s", result.steps, result.tokens,
             result.wall_minutes, metrics["loss_start"], metrics["loss_final"], metrics["weights_sha256"][:19])
