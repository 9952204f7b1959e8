"""prepare stage: the data gate, the training set (new delta + replay) and the probe sets.

The probe sets come from the exam on the protected branch's tip (store/exam.py), never from the
candidate's work tree: a candidate that edits exam/ changes nothing it is judged on. A new delta
the exam asks nothing about (no generalize items) fails the run, and so does an exam item that the
training data overlaps (core/overlap.py): a model trained on its exam measures nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.canonical import sha256_file, write_json
from ..core.data import Delta, delta_id_of, list_deltas, read_delta, sample_replay, training_text
from ..core.errors import DataGateError, MalformedDataError
from ..core.exam import Exam, delta_stem, exam_path
from ..core.overlap import CHECKED_KINDS, Hit, TrainingIndex, first_overlap
from ..store.exam import read_exam
from ..store.root import Store
from .common import DELTAS, PARENT_INFO, PREPARED, PROBES, log, protected_policy

EXAM_FIX = "Change the exam on the protected branch: 'lineage exam add FILE', then 'lineage change --reason …'."


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def protected_exam(root: Path) -> tuple[Exam, str | None]:
    """The exam as the protected branch's tip holds it, and that commit (None before the first commit).

    Raises:
        MalformedDataError: an exam file on the protected branch has a bad line (named).
    """
    store = Store.open(root)
    tip = store.tip()
    if tip is None:
        return Exam(), None
    try:
        return read_exam(store.repo, tip), str(tip.id)
    except MalformedDataError as exc:
        exc.hint = f"The exam on {store.protected} is broken. {EXAM_FIX}"
        raise


def require_generalize(exam: Exam, new: list[Delta], branch: str) -> None:
    """Refuse a run that adds a delta the exam asks nothing new about."""
    asked = {delta_stem(i["delta"]) for i in exam.of("generalize")}
    for delta in new:
        stem = delta_stem(delta.id)
        if stem not in asked:
            raise DataGateError(f"delta {delta.id} has no generalize items in the exam on {branch}: "
                                "nothing would measure what it teaches",
                                f"Add them: 'lineage exam add FILE --delta {stem}' (the bundled corpus: "
                                f"'lineage corpus exam N FILE'), then 'lineage change --reason …'.")


def check_overlap(exam: Exam, deltas: list[Delta]) -> None:
    """Fail the run when a generalize or tone item of the exam overlaps any delta's training records."""
    where = [(d.path, line) for d in deltas for line, _ in d.train_lines()]
    index = TrainingIndex(training_text(r) for d in deltas for r in d.train_records)
    items = [(kind, item) for kind in CHECKED_KINDS for item in exam.of(kind)]
    lines = [n for kind in CHECKED_KINDS for n in range(1, len(exam.of(kind)) + 1)]
    found = first_overlap(items, index)
    if found is None:
        return
    position, hit = found
    kind, item = items[position]
    raise overlap_error(kind, item, lines[position], where[hit.record], hit)


def overlap_error(kind: str, item: dict[str, Any], item_line: int, at: tuple[str, int], hit: Hit) -> DataGateError:
    question = item.get("prompt") if kind == "generalize" else item.get("text")
    path, line = at
    return DataGateError(f"training data {path}:{line} overlaps the exam: {kind} item {question!r} "
                         f"({exam_path(kind)}:{item_line}; {hit.how()})",
                         "A delta may not hold the exam, nor a near copy of it: register the data without "
                         f"that line, or ask another question. {EXAM_FIX}")


def main() -> None:
    from ..core.settings import Settings

    root = Path(".")
    settings = Settings.load()
    judged = protected_policy(root)
    rules = judged.policy.data
    parent = json.loads(PARENT_INFO.read_text())
    seen = set(parent.get("deltas_seen", []))

    # A delta the parent learned before deltas lost their probes keeps them (never read).
    deltas = [read_delta(root, rel, rules, legacy_probes=delta_id_of(rel) in seen)
              for rel in list_deltas(root, DELTAS)]
    if not deltas:
        raise DataGateError("no data registered in data/deltas/",
                            "Register a delta with 'lineage data add FILE'.")
    old = [d for d in deltas if d.id in seen]
    new = [d for d in deltas if d.id not in seen]
    if not new:
        raise DataGateError(f"no new data since parent {parent.get('generation')}: every delta was already learned",
                            "Register a new delta with 'lineage data add FILE' before training again.")

    exam, exam_commit = protected_exam(root)
    check_overlap(exam, deltas)
    require_generalize(exam, new, judged.ref)
    # recall: what earlier generations learned, per delta (the first generation: what it learns
    # now); generalize: the new deltas' held-out questions; tone and law: asked of every candidate.
    probes = exam.probes_for([d.id for d in old], [d.id for d in new])

    fresh = [r for d in new for r in d.train_records]
    replay_n = round(settings["data"]["replay_fraction"] * len(fresh)) if old else 0
    replay = sample_replay(old, replay_n, settings["data"]["strategy"], settings["seed"])
    train = [{"text": training_text(r), "prompt": r.get("prompt"), "completion": r.get("completion"),
              "source": r["source"], "score": r["score"]} for r in fresh + replay]

    _write_jsonl(PREPARED / "train.jsonl", train)
    for name in ("recall", "generalize", "tone", "law"):
        _write_jsonl(PROBES / f"{name}.jsonl", probes[name])
    summary = {
        "new_deltas": [{"id": d.id, "path": d.path, "sha256": d.sha256, "records": len(d.train_records)} for d in new],
        "replay_deltas": [{"id": d.id, "path": d.path, "sha256": d.sha256} for d in old],
        "deltas_seen": [d.id for d in deltas],
        "train_records": len(train), "new_records": len(fresh), "replay_records": len(replay),
        "strategy": settings["data"]["strategy"],
        "probes": {name: len(probes[name]) for name in ("recall", "generalize", "tone", "law")},
        "exam": {"ref": judged.ref, "commit": exam_commit, "digest": exam.digest()},
        "policy_source": judged.source(),
        "train_sha256": sha256_file(PREPARED / "train.jsonl"),
    }
    write_json(PREPARED / "summary.json", summary)
    log.info("prepare: %d new records from %s, %d replayed; probes %s", len(fresh),
             ", ".join(d.id for d in new), len(replay), summary["probes"])
