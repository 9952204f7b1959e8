"""eval stage: score child and parent with the same code; write metrics.json and forensics.

``measure`` is that code: the eval stage calls it on the pipeline's probes, the arbiter
(moves/arbiter.py) on main's exam and the sealed exam, so both measure alike.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.canonical import write_json
from ..core.errors import MetricsError
from ..core.lmeval import lm_eval_results
from .common import CHILD_DIR, EVAL_REPORTS, METRICS, PARENT_DIR, PARENT_INFO, PROBES, log


def load_probes(directory: Path = PROBES) -> dict[str, list[dict]]:
    """Read the four probe sets, naming file and line on a bad line."""
    probes = {}
    for name in ("recall", "generalize", "tone", "law"):
        path = directory / f"{name}.jsonl"
        if not path.is_file():
            raise MetricsError(str(path), "", "probe file missing")
        items = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MetricsError(f"{path}:{number}", "", f"unparsable JSON ({exc.msg})") from None
            need = {"recall": ("prompt", "choices", "answer", "delta"), "generalize": ("prompt", "choices", "answer"),
                    "tone": ("text",), "law": ("prompt", "rule")}[name]
            missing = [k for k in need if k not in item]
            if missing:
                raise MetricsError(f"{path}:{number}", missing[0], "missing")
            items.append(item)
        probes[name] = items
    return probes


@dataclass(frozen=True)
class Measurement:
    """What measure() found: metrics.json's content, and the forensics the eval stage writes beside it.

    sealed: the sealed generalize accuracy of child and parent ({"child", "parent", "items"}), when
    sealed items were given (the arbiter's measurement; the eval stage never has any).
    """

    metrics: dict[str, Any]
    violations: list[dict[str, Any]]
    probes: dict[str, int]
    weight_change: dict[str, Any]
    sealed: dict[str, Any] | None = None


def measure(child_dir: Path, parent_dir: Path, probes: dict[str, list[dict]], *, seed: int, batch_size: int,
            max_new_tokens: int, parent_is_generation: bool, sealed: list[dict] | None = None) -> Measurement:
    """Score child and parent with the same code: the eval stage's numbers, and the arbiter's.

    probes: the four probe sets (recall, generalize, tone, law); sealed: extra generalize items
    scored for both models after everything else (so they change none of the other numbers).
    """
    from ..adapters import evaluate, model  # torch

    evaluate.seed(seed)
    started = time.monotonic()
    child, tok = model.load(child_dir)
    parent, _ = model.load(parent_dir)
    child_scores = evaluate.score_model(child, tok, probes, max_new_tokens, batch_size)
    parent_scores = evaluate.score_model(parent, tok, probes, max_new_tokens, batch_size)
    everyday = [p["prompt"] for p in probes["recall"] + probes["generalize"]]
    parity = evaluate.shadow_parity(child, parent, tok, everyday, max_new_tokens, batch_size)["parity"] \
        if everyday else None
    drift = evaluate.tone_drift(child, parent, tok, [p["text"] for p in probes["tone"]], batch_size)
    violations = child_scores.pop("_violations")
    parent_scores.pop("_violations")
    change = evaluate.weight_change(child, parent)
    metrics = {"schema_version": 1, "child": child_scores, "parent": parent_scores,
               "parent_is_generation": parent_is_generation,
               "tone_drift": round(drift, 6), "weight_change_pct": change["params_pct"], "shadow_parity": parity,
               "eval_seconds": round(time.monotonic() - started, 2)}
    scored = None
    if sealed is not None:
        child_sealed, _ = evaluate.choice_accuracy(child, tok, sealed, batch_size)
        parent_sealed, _ = evaluate.choice_accuracy(parent, tok, sealed, batch_size)
        scored = {"child": round(child_sealed, 6), "parent": round(parent_sealed, 6), "items": len(sealed)}
    return Measurement(metrics, violations, {k: len(v) for k, v in probes.items()}, change, scored)


def main() -> None:
    from ..core.settings import Settings

    settings = Settings.load()
    probes = load_probes()
    parent_info = json.loads(PARENT_INFO.read_text())
    measured = measure(CHILD_DIR, PARENT_DIR, probes, seed=settings["seed"],
                       batch_size=settings["eval"]["batch_size"], max_new_tokens=settings["eval"]["max_new_tokens"],
                       parent_is_generation=parent_info.get("kind") == "generation")
    metrics = measured.metrics
    EVAL_REPORTS.mkdir(parents=True, exist_ok=True)
    (EVAL_REPORTS / "law_violations.jsonl").write_text(
        "".join(json.dumps(v, sort_keys=True) + "\n" for v in measured.violations))
    write_json(EVAL_REPORTS / "probes.json", measured.probes)
    write_json(EVAL_REPORTS / "weight_change.json", measured.weight_change)
    # the same scores in lm-evaluation-harness's results format, for the tools that read it
    write_json(EVAL_REPORTS / "lm_eval_results.json",
               lm_eval_results(metrics, {k: len(v) for k, v in probes.items()}, str(CHILD_DIR)))
    write_json(METRICS, metrics)
    child, parent = metrics["child"], metrics["parent"]
    log.info("eval: child recall %.3f generalize %.3f laws %d | parent recall %.3f generalize %.3f | "
             "tone drift %.4f | %.1fs", child["recall"], child["generalize"], child["law_violations"],
             parent["recall"], parent["generalize"], metrics["tone_drift"], metrics["eval_seconds"])
