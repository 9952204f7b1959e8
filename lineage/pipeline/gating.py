"""gate stage: judge the child by the protected branch's policy; write the report, EVAL.md, card."""

from __future__ import annotations

import json
from pathlib import Path

from ..adapters import git
from ..core.canonical import sha256_file, write_json
from ..core.errors import MetricsError
from .common import (
    GATE_REPORT,
    METRICS,
    PARENT_INFO,
    PREPARED,
    PROBES,
    TRAIN_FAILURE,
    TRAIN_REPORTS,
    log,
    protected_policy,
)


def probes_digest(directory: Path = PROBES) -> str:
    from ..core.canonical import digest_obj

    return digest_obj({p.name: sha256_file(p) for p in sorted(directory.glob("*.jsonl"))})


def collect_hashes() -> dict:
    """The hashes the verdict is about: the arbiter checks them against the commit."""
    train = json.loads((TRAIN_REPORTS / "metrics.json").read_text())
    parent = json.loads(PARENT_INFO.read_text())
    return {
        "child_weights": train["weights_sha256"],
        "parent_weights": parent["weights_sha256"],
        "manifest": train["manifest_digest"],
        "hashes_csv": "sha256:" + sha256_file(TRAIN_REPORTS / "hashes.csv"),
        "metrics": "sha256:" + sha256_file(METRICS),
        "probes": probes_digest(),
    }


def _attempt_name() -> str | None:
    """G001-a on the candidate branch lineage propose made; None in a plain `dvc repro` on main."""
    branch = git.current_branch(Path(".")) or ""
    return branch.split("/", 1)[1] if branch.startswith("candidates/") else None


def _exam_digest() -> str | None:
    """The digest of the exam prepare read from the protected branch (what the card's results are on)."""
    summary = PREPARED / "summary.json"
    return json.loads(summary.read_text()).get("exam", {}).get("digest") if summary.is_file() else None


def main() -> None:
    from ..adapters import cards
    from ..core.cards import card_metadata, render_card_body, render_eval_md
    from ..core.gate import judge
    from ..core.metrics import load_budget_used, load_eval_metrics
    from ..core.settings import Settings
    from ..store.registry import model_name

    # Remove any earlier verdict first: an error below must not leave a PASS lying around.
    for path in (GATE_REPORT, Path("EVAL.md"), Path("MODEL_CARD.md")):
        path.unlink(missing_ok=True)
    if TRAIN_FAILURE.exists():
        raise MetricsError(str(TRAIN_FAILURE), "", "the last training run FAILED; there is no child to judge")
    judged = protected_policy()
    metrics = load_eval_metrics(METRICS)
    budget = load_budget_used(TRAIN_REPORTS / "metrics.json")
    hashes = collect_hashes()
    hashes["policy_commit"] = judged.commit or "working-tree"
    report = judge(judged.policy, metrics, budget, hashes=hashes, policy_source=judged.source())
    manifest = json.loads((TRAIN_REPORTS / "manifest.json").read_text())
    parent = manifest.get("parent") or {}
    card = {"generation": _attempt_name(), "parent_generation": parent.get("generation") or manifest.get("base_model"),
            "parent_hash": parent.get("weights_sha256"), "base_model": manifest.get("base_model"),
            "data": [{"path": d["path"], "sha256": d["sha256"], "records": d["records"]}
                     for d in manifest.get("data", {}).get("new", [])],
            "method": manifest.get("method"), "finetune": manifest.get("finetune"), "seed": manifest.get("seed"),
            "weights_kind": "full", "store": model_name(Path.cwd()),
            "license": Settings.load()["card"]["license"], "exam_digest": _exam_digest()}
    write_json(GATE_REPORT, report.to_dict())
    Path("EVAL.md").write_text(render_eval_md(report, metrics))
    cards.write("MODEL_CARD.md", card_metadata(report, metrics, card), render_card_body(report, metrics, card))
    log.info("gate: %s (composite %.4f)%s", report.verdict, report.composite,
             f"; failed: {', '.join(report.failed)}" if report.failed else "")
