"""exam add / exam show: the exam on the protected branch, changed only by an approved change.

``exam add FILE`` checks a JSONL file of exam items, refuses any that overlap registered training
data, merges them into ``exam/<kind>.jsonl`` in the work tree and stages those files;
``lineage change`` (an approver) then commits them on the protected branch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters import git
from ..core.data import list_deltas, read_delta, training_text
from ..core.errors import DataGateError, MalformedDataError, UsageError
from ..core.exam import KINDS, Exam, counts, exam_path, item_from_line, jsonl_records, merge, parse_items, render_items
from ..core.overlap import TrainingIndex, checked_text
from ..store.exam import read_exam
from ..store.rules import protected_policy

DELTAS = Path("data/deltas")
ITEM_HINT = ("Each line: a JSON object with 'kind' (recall, generalize, tone, law or burnin) and its fields, "
             "e.g. {\"kind\": \"generalize\", \"delta\": \"era1\", \"prompt\": …, \"choices\": […], \"answer\": 0}.")


@dataclass(frozen=True)
class ExamAdded:
    """Items merged into the work tree's exam and staged for 'lineage change'."""

    file: str
    added: dict[str, int]
    unchanged: int
    staged: list[str]
    digest: str


@dataclass(frozen=True)
class ExamView:
    """The exam the protected branch holds, and how the work tree's differs."""

    branch: str
    commit: str | None
    counts: dict[str, dict[str, int]]
    digest: str
    pending: dict[str, int] = field(default_factory=dict)


def work_tree_exam(root: Path) -> Exam:
    """The exam as the work tree holds it (what 'exam add' merges into).

    Raises:
        MalformedDataError: an exam file has a bad line (named).
    """
    items: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        path = root / exam_path(kind)
        items[kind] = parse_items(kind, path.read_text(), exam_path(kind)) if path.is_file() else []
    return Exam(items)


def read_items(file: Path, shown: str, delta: str | None) -> list[tuple[str, dict[str, Any], int]]:
    """(kind, item, line) of each line of an exam file given to 'exam add'."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MalformedDataError(shown, 1, "not valid UTF-8") from None
    additions = []
    for number, record in jsonl_records(text, shown):
        kind, item = item_from_line(record, shown, number, delta)
        additions.append((kind, item, number))
    if not additions:
        raise UsageError(f"{shown} holds no exam items", "Give a JSONL file with one exam item per line.")
    return additions


def refuse_training_overlap(store, additions: list[tuple[str, dict[str, Any], int]], shown: str) -> None:
    """Refuse items that overlap any registered delta (pending or committed) in the work tree.

    Raises:
        DataGateError: naming the item's line and the delta's line.
    """
    root = store.root
    rules = protected_policy(root, store.repo).policy.data
    # Deltas learned before deltas lost their probes may still hold some: only training text counts.
    deltas = [read_delta(root, rel, rules, legacy_probes=True) for rel in list_deltas(root, DELTAS)]
    where = [(d.path, line) for d in deltas for line, _ in d.train_lines()]
    index = TrainingIndex(training_text(r) for d in deltas for r in d.train_records)
    for kind, item, line in additions:
        text = checked_text(kind, item)
        hit = index.find(text) if text is not None else None
        if hit is not None:
            path, at = where[hit.record]
            question = item.get("prompt") if kind == "generalize" else item.get("text")
            raise DataGateError(f"{shown}:{line}: {kind} item {question!r} overlaps training data {path}:{at} "
                                f"({hit.how()})",
                                "An exam item must be a question the model was never trained on: ask it in "
                                "another form, or leave it out.")


def exam_add(store, file: str | Path, delta: str | None = None) -> ExamAdded:
    """Check exam items, merge them into exam/<kind>.jsonl and stage them for 'lineage change'.

    Raises:
        UsageError: no such file, or a file without items.
        MalformedDataError: a bad line (file and line named), an unknown kind, or a question the
            exam already asks differently.
        DataGateError: an item overlaps registered training data.
    """
    root = store.root
    src = Path(file).expanduser()
    if not src.is_file():
        raise UsageError(f"{file}: no such file", "Give the path of a JSONL file of exam items.")
    shown = str(file)
    try:
        additions = read_items(src, shown, delta)
        merged = merge(work_tree_exam(root), additions, shown)
    except MalformedDataError as exc:
        exc.hint = ITEM_HINT
        raise
    refuse_training_overlap(store, additions, shown)
    staged = []
    for kind in KINDS:
        if kind not in merged.added:
            continue
        path = root / exam_path(kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_items(merged.exam.of(kind)))
        staged.append(exam_path(kind))
    if staged:
        git.add(root, staged)
    return ExamAdded(shown, merged.added, merged.unchanged, staged, merged.exam.digest())


def exam_show(store) -> ExamView:
    """The exam on the protected branch: items per kind and per delta, its digest, what is pending."""
    tip = store.tip()
    exam = read_exam(store.repo, tip) if tip is not None else Exam()
    pending: dict[str, int] = {}
    try:
        local = work_tree_exam(store.root)
    except MalformedDataError as exc:
        exc.hint = f"Restore it: git checkout {store.protected} -- exam/"
        raise
    for kind in KINDS:
        held = {json.dumps(i, sort_keys=True) for i in exam.of(kind)}
        extra = sum(1 for i in local.of(kind) if json.dumps(i, sort_keys=True) not in held)
        if extra:
            pending[kind] = extra
    return ExamView(store.protected, str(tip.id) if tip is not None else None, counts(exam), exam.digest(), pending)
