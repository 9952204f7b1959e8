"""data add: check a JSONL file through the data gate and register it as the next delta.

A delta holds training records only (a probe record is refused: the exam belongs to the protected
branch) and may not overlap the exam the protected branch holds (core/overlap.py).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..adapters import dvc
from ..core import corpus
from ..core.data import DELTA_RE, Delta, read_delta, training_text
from ..core.errors import DataGateError, UsageError
from ..core.exam import exam_path
from ..core.overlap import CHECKED_KINDS, TrainingIndex, checked_text
from ..store import waiting
from ..store.exam import read_exam
from ..store.rules import protected_policy

DELTAS = Path("data/deltas")


@dataclass(frozen=True)
class DataAdded:
    """A delta registered in the store."""

    delta: str
    path: str
    records: int
    sha256: str


def data_add(store, file: str | Path, name: str | None = None) -> DataAdded:
    """Check a JSONL file through the data gate and register it as the next delta (DVC-tracked).

    The delta is neither staged nor committed: its .dvc file waits in .git/lineage/pending (the
    data in data/deltas, ignored by git) and travels into the next candidate commit.

    Raises:
        UsageError: no such file, a symbolic link, or a bad delta name.
        DataGateError: the file holds no records, has an unparsable line, a secret, an unsafe source, a probe record,
            or a line that overlaps the protected branch's exam.
    """
    root = store.root
    given = Path(file).expanduser()
    if given.is_symlink():  # refused before anything reads through it
        raise UsageError(f"{file} is a symbolic link; lineage registers a file's own bytes, never a link's target",
                         "Give the path of the file itself.")
    src = given.resolve()
    if not src.is_file():
        raise UsageError(f"{file}: no such file", "Give the path of a JSONL file.")
    stem = name or src.stem
    if not re.fullmatch(r"[A-Za-z0-9_-]+", stem):
        raise UsageError(f"delta name {stem!r} must be letters, digits, '-' or '_'", "Pass --name NAME.")
    # a delta counts whether its data is here or only its .dvc file (not pulled yet, or waiting)
    names = {p.name.removesuffix(".dvc") for p in (root / DELTAS).glob("d*.jsonl*")} | \
        {Path(p).name.removesuffix(".dvc") for p in waiting.waiting(store)}
    existing = sorted(n for n in names if DELTA_RE.match(n))
    number = int(existing[-1][1:4]) + 1 if existing else 0
    rel = f"{DELTAS.as_posix()}/d{number:03d}-{stem}.jsonl"
    rules = protected_policy(root, store.repo).policy.data
    staging = root / rel
    staging.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, staging)
    try:
        delta = read_delta(root, rel, rules)  # refuse before anything is registered
        if not delta.train_records:
            raise DataGateError(f"{rel} holds no records: an empty delta would spend a number and teach nothing",
                                "Add a file with at least one training record.")
        refuse_exam_overlap(store, delta)
        refuse_lawbreaking(store, delta)
    except Exception as exc:
        staging.unlink(missing_ok=True)
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (exc.args[0].replace(rel, str(src)),) + exc.args[1:]  # name the file the user gave
        raise
    waiting.exclude_data(store)  # git never sees the data; DVC then leaves .gitignore alone
    dvc.add(root, rel)
    waiting.keep(store, rel)  # out of the index: it waits in .git/lineage/pending for the next candidate
    return DataAdded(delta.id, rel, len(delta.train_records), delta.sha256)


def refuse_exam_overlap(store, delta: Delta) -> None:
    """Refuse a delta with a line that overlaps a generalize or tone item of the protected branch's exam.

    Raises:
        DataGateError: naming the delta's first such line and the exam item.
    """
    tip = store.tip()
    if tip is None:
        return
    exam = read_exam(store.repo, tip)
    lines = delta.train_lines()
    index = TrainingIndex(training_text(record) for _, record in lines)
    hits = []
    for kind in CHECKED_KINDS:
        for position, item in enumerate(exam.of(kind), start=1):
            text = checked_text(kind, item)
            hit = index.find(text) if text is not None else None
            if hit is not None:
                hits.append((hit.record, kind, position, item, hit))
    if not hits:
        return
    record, kind, position, item, hit = min(hits, key=lambda h: h[0])
    question = item.get("prompt") if kind == "generalize" else item.get("text")
    raise DataGateError(f"{delta.path}:{lines[record][0]} overlaps the exam: {kind} item {question!r} "
                        f"({exam_path(kind)}:{position} on {store.protected}; {hit.how()})",
                        "Training data may not hold the exam, nor a near copy of it: remove the line and add "
                        "the file again.")


def refuse_lawbreaking(store, delta: Delta) -> None:
    """Refuse a delta that teaches an answer a law of the protected branch's exam forbids.

    A completion (what the model learns to say back) matching a law item's must_not_match is refused;
    narrative text that merely mentions a secret is not (the bundled chronicles do, to tempt on purpose).

    Raises:
        DataGateError: naming the delta's first such line and the law.
    """
    tip = store.tip()
    if tip is None:
        return
    laws = [item for kind in ("law", "burnin") for item in read_exam(store.repo, tip).of(kind)
            if isinstance(item.get("rule"), dict) and item["rule"].get("must_not_match")]
    for line, record in delta.train_lines():
        completion = record.get("completion")
        if not isinstance(completion, str):
            continue
        for law in laws:
            pattern = law["rule"]["must_not_match"]
            if re.search(pattern, completion):
                raise DataGateError(f"{delta.path}:{line} teaches what a law forbids: its completion matches "
                                    f"{pattern!r} (the law of {law['prompt']!r} on {store.protected})",
                                    "Training data may not teach a model to break the store's laws: remove the "
                                    "line and add the file again.")


def corpus_era(era: int, out: str | Path) -> Path:
    """Write one era of the bundled corpus's training records to a JSONL file.

    Raises:
        UsageError: a negative era.
    """
    _check_era(era)
    return corpus.write_era(out, era)


def corpus_exam(era: int, out: str | Path) -> Path:
    """Write one era of the bundled corpus's exam items to a JSONL file (for 'lineage exam add').

    Raises:
        UsageError: a negative era.
    """
    _check_era(era)
    return corpus.write_exam(out, era)


def _check_era(era: int) -> None:
    if era < 0:
        raise UsageError(f"era {era} does not exist", "Eras are numbered from 0.")
