"""prepare stage: the data gate, the training set (new delta + replay) and the probe sets."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.canonical import sha256_file, write_json
from ..core.data import list_deltas, read_delta, sample_replay, training_text
from ..core.errors import DataGateError
from .common import DELTAS, PARENT_INFO, PREPARED, PROBES, log, protected_policy


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def main() -> None:
    from ..core.settings import Settings

    root = Path(".")
    settings = Settings.load()
    judged = protected_policy(root)
    rules = judged.policy.data
    parent = json.loads(PARENT_INFO.read_text())
    seen = set(parent.get("deltas_seen", []))

    deltas = [read_delta(root, rel, rules) for rel in list_deltas(root, DELTAS)]
    if not deltas:
        raise DataGateError("no data registered in data/deltas/",
                            "Register a delta with 'lineage data add FILE'.")
    old = [d for d in deltas if d.id in seen]
    new = [d for d in deltas if d.id not in seen]
    if not new:
        raise DataGateError(f"no new data since parent {parent.get('generation')}: every delta was already learned",
                            "Register a new delta with 'lineage data add FILE' before training again.")

    fresh = [r for d in new for r in d.train_records]
    replay_n = round(settings["data"]["replay_fraction"] * len(fresh)) if old else 0
    replay = sample_replay(old, replay_n, settings["data"]["strategy"], settings["seed"])
    train = [{"text": training_text(r), "prompt": r.get("prompt"), "completion": r.get("completion"),
              "source": r["source"], "score": r["score"]} for r in fresh + replay]

    # recall: what earlier generations learned, per delta; the first generation is asked back
    # what it learns now. generalize: the new delta's held-out questions.
    recall = [p for d in (old or new) for p in d.probes("recall")]
    generalize = [p for d in new for p in d.probes("generalize")]
    trained_texts = "\n".join(r["text"] for r in train)
    leaked = [p for p in generalize if p["prompt"] in trained_texts]
    generalize = [p for p in generalize if p["prompt"] not in trained_texts]
    if leaked:
        log.warning("dropped %d generalize probes whose prompt appears in the training set", len(leaked))
    tone = [p for d in deltas for p in d.probes("tone")]
    laws, seen_prompts = [], set()
    for p in (p for d in deltas for p in d.probes("law")):
        if p["prompt"] not in seen_prompts:
            seen_prompts.add(p["prompt"])
            laws.append(p)

    _write_jsonl(PREPARED / "train.jsonl", train)
    for name, items in (("recall", recall), ("generalize", generalize), ("tone", tone), ("law", laws)):
        _write_jsonl(PROBES / f"{name}.jsonl", items)
    summary = {
        "new_deltas": [{"id": d.id, "path": d.path, "sha256": d.sha256, "records": len(d.train_records)} for d in new],
        "replay_deltas": [{"id": d.id, "path": d.path, "sha256": d.sha256} for d in old],
        "deltas_seen": [d.id for d in deltas],
        "train_records": len(train), "new_records": len(fresh), "replay_records": len(replay),
        "strategy": settings["data"]["strategy"],
        "probes": {"recall": len(recall), "generalize": len(generalize), "tone": len(tone), "law": len(laws),
                   "generalize_leaked_dropped": len(leaked)},
        "policy_source": judged.source(),
        "train_sha256": sha256_file(PREPARED / "train.jsonl"),
    }
    write_json(PREPARED / "summary.json", summary)
    log.info("prepare: %d new records from %s, %d replayed; probes %s", len(fresh),
             ", ".join(d.id for d in new), len(replay), summary["probes"])
