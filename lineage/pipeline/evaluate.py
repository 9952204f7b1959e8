"""eval stage: score child and parent with the same code; write metrics.json and forensics."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..core.canonical import write_json
from ..core.errors import MetricsError
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


def main() -> None:
    from ..adapters import evaluate, model  # torch
    from ..core.settings import Settings

    settings = Settings.load()
    evaluate.seed(settings["seed"])
    batch, max_new = settings["eval"]["batch_size"], settings["eval"]["max_new_tokens"]
    started = time.monotonic()
    probes = load_probes()
    parent_info = json.loads(PARENT_INFO.read_text())
    child, tok = model.load(CHILD_DIR)
    parent, _ = model.load(PARENT_DIR)
    child_scores = evaluate.score_model(child, tok, probes, max_new, batch)
    parent_scores = evaluate.score_model(parent, tok, probes, max_new, batch)
    everyday = [p["prompt"] for p in probes["recall"] + probes["generalize"]]
    parity = evaluate.shadow_parity(child, parent, tok, everyday, max_new, batch)["parity"] if everyday else None
    drift = evaluate.tone_drift(child, parent, tok, [p["text"] for p in probes["tone"]], batch)
    violations = child_scores.pop("_violations")
    parent_scores.pop("_violations")
    EVAL_REPORTS.mkdir(parents=True, exist_ok=True)
    (EVAL_REPORTS / "law_violations.jsonl").write_text(
        "".join(json.dumps(v, sort_keys=True) + "\n" for v in violations))
    write_json(EVAL_REPORTS / "probes.json", {k: len(v) for k, v in probes.items()})
    change = evaluate.weight_change(child, parent)
    write_json(EVAL_REPORTS / "weight_change.json", change)
    metrics = {"schema_version": 1, "child": child_scores, "parent": parent_scores,
               "parent_is_generation": parent_info.get("kind") == "generation",
               "tone_drift": round(drift, 6), "weight_change_pct": change["params_pct"], "shadow_parity": parity,
               "eval_seconds": round(time.monotonic() - started, 2)}
    write_json(METRICS, metrics)
    log.info("eval: child recall %.3f generalize %.3f laws %d | parent recall %.3f generalize %.3f | "
             "tone drift %.4f | %.1fs", child_scores["recall"], child_scores["generalize"],
             child_scores["law_violations"], parent_scores["recall"], parent_scores["generalize"], drift,
             metrics["eval_seconds"])
