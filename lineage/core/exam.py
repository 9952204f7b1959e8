"""The exam: the probe sets a candidate is judged on. They belong to the protected branch.

The exam lives in the store as ``exam/<kind>.jsonl`` on the protected branch, changes only by a
person's approved change, and is never read from a candidate. Items that test knowledge carry the
name of the delta they test (``"delta": "era1"``, the stem of ``d001-era1.jsonl``), so a candidate
is asked back what its parent learned (recall) and asked, in forms never trained, what its new
deltas taught (generalize).

``exam/sealed.json`` pins, by digest, the sealed exam the arbiter keeps outside the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .canonical import digest_obj
from .errors import MalformedDataError

EXAM_DIR = "exam"
KINDS = ("recall", "generalize", "tone", "law", "burnin")
SEALED_PIN = f"{EXAM_DIR}/sealed.json"
# the fields each kind of item needs
NEEDS: dict[str, tuple[str, ...]] = {
    "recall": ("delta", "prompt", "choices", "answer"),
    "generalize": ("delta", "prompt", "choices", "answer"),
    "tone": ("text",),
    "law": ("prompt", "rule"),
    "burnin": ("prompt", "rule"),
}
DELTA_STEM_RE = re.compile(r"^d\d{3}-(.+)$")


def exam_path(kind: str) -> str:
    """The path of one kind's file in the store, e.g. exam/recall.jsonl."""
    return f"{EXAM_DIR}/{kind}.jsonl"


def delta_stem(delta_id: str) -> str:
    """'era1' for 'd001-era1' (and for 'era1')."""
    match = DELTA_STEM_RE.match(delta_id)
    return match.group(1) if match else delta_id


def check_item(kind: str, item: Any, where: str, line: int) -> dict[str, Any]:
    """Validate one exam item of a kind; raise MalformedDataError naming file and line."""
    if not isinstance(item, dict):
        raise MalformedDataError(where, line, "not a JSON object")
    missing = [k for k in NEEDS[kind] if k not in item]
    if missing:
        raise MalformedDataError(where, line, f"{kind} item needs {', '.join(NEEDS[kind])} (missing {missing[0]})")
    if kind in ("recall", "generalize"):
        choices, answer = item.get("choices"), item.get("answer")
        if not isinstance(item.get("prompt"), str) or not isinstance(choices, list) or len(choices) < 2 \
                or not all(isinstance(c, str) for c in choices) or isinstance(answer, bool) \
                or not isinstance(answer, int) or not 0 <= answer < len(choices) \
                or not isinstance(item.get("delta"), str) or not item["delta"]:
            raise MalformedDataError(where, line, f"{kind} item needs 'delta', 'prompt', 'choices' (>=2 strings) "
                                                  "and 'answer' (an index)")
    elif kind == "tone":
        if not isinstance(item.get("text"), str):
            raise MalformedDataError(where, line, "tone item needs 'text'")
    else:
        rule = item.get("rule")
        if not isinstance(item.get("prompt"), str) or not isinstance(rule, dict) or not rule \
                or set(rule) - {"must_match", "must_not_match"}:
            raise MalformedDataError(where, line, f"{kind} item needs 'prompt' and 'rule' with must_match / "
                                                  "must_not_match")
        for pattern in rule.values():
            try:
                re.compile(pattern)
            except (re.error, TypeError):
                raise MalformedDataError(where, line, f"rule pattern {pattern!r} is not a valid regex") from None
    return item


def jsonl_records(text: str, where: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of each non-blank line of a JSONL text.

    Raises:
        MalformedDataError: a line is not JSON (where and the line named).
    """
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise MalformedDataError(where, number, f"unparsable JSON ({exc.msg})") from None


def parse_items(kind: str, text: str, where: str) -> list[dict[str, Any]]:
    """Items of one exam file's text (JSONL), validated; blank lines skipped."""
    return [check_item(kind, item, where, number) for number, item in jsonl_records(text, where)]


def render_items(items: list[dict[str, Any]]) -> str:
    """JSONL text of items (sorted keys: the same items give the same bytes)."""
    return "".join(json.dumps(item, sort_keys=True) + "\n" for item in items)


@dataclass(frozen=True)
class Exam:
    """The visible exam as the protected branch holds it: items by kind."""

    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return list(self.items.get(kind, []))

    def digest(self) -> str:
        """One digest for the whole visible exam (what a verdict binds)."""
        return digest_obj({kind: self.of(kind) for kind in KINDS})

    def deltas(self) -> set[str]:
        """The delta stems the exam has knowledge items for."""
        return {delta_stem(i["delta"]) for kind in ("recall", "generalize") for i in self.of(kind)}

    def probes_for(self, seen: list[str], new: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The probe sets a candidate is judged on, in the eval stage's layout.

        seen: ids of the deltas the parent learned; new: ids of the deltas this candidate adds.
        recall asks back what the parent learned (the first generation: what it learns now);
        generalize asks about the new deltas only; tone and law are asked of every candidate.
        Each knowledge probe carries the full delta id, for the per-delta recall.
        """
        by_stem_seen = {delta_stem(d): d for d in seen}
        by_stem_new = {delta_stem(d): d for d in new}
        recall_from = by_stem_seen or by_stem_new
        recall = [dict(i, delta=recall_from[delta_stem(i["delta"])]) for i in self.of("recall")
                  if delta_stem(i["delta"]) in recall_from]
        generalize = [dict(i, delta=by_stem_new[delta_stem(i["delta"])]) for i in self.of("generalize")
                      if delta_stem(i["delta"]) in by_stem_new]
        return {"recall": recall, "generalize": generalize, "tone": self.of("tone"), "law": self.of("law")}


# ---------------------------------------------------------------- items arriving by 'lineage exam add'

KEYS: dict[str, str] = {"recall": "prompt", "generalize": "prompt", "tone": "text", "law": "prompt",
                        "burnin": "prompt"}


def item_from_line(record: Any, where: str, line: int, delta: str | None = None) -> tuple[str, dict[str, Any]]:
    """(kind, stored item) of one line of a file given to 'lineage exam add'.

    Two formats are read: a plain item whose ``kind`` names the exam kind (recall, generalize,
    tone, law, burnin), or a probe record as deltas once carried (``{"kind": "probe", "probe":
    "recall", …}``). The stored item keeps the fields its kind needs, plus ``delta`` (as a stem);
    ``delta`` fills in the delta of knowledge items that name none.

    Raises:
        MalformedDataError: not an object, an unknown kind, a missing or bad field, or a delta that
            differs from the one given (file and line named).
    """
    if not isinstance(record, dict):
        raise MalformedDataError(where, line, "not a JSON object")
    kind = record.get("probe") if record.get("kind") == "probe" else record.get("kind")
    if kind not in KINDS:
        raise MalformedDataError(where, line, f"exam kind {kind!r} is not one of {', '.join(KINDS)}")
    item = dict(record)
    if delta is not None:
        given = delta_stem(delta)
        if "delta" not in item:
            if kind in ("recall", "generalize"):
                item["delta"] = given
        elif not isinstance(item["delta"], str) or delta_stem(item["delta"]) != given:
            raise MalformedDataError(where, line, f"item is for delta {item['delta']!r}, not {given!r}")
    check_item(kind, item, where, line)
    stored = {k: item[k] for k in NEEDS[kind]}
    if isinstance(item.get("delta"), str) and item["delta"]:
        stored["delta"] = delta_stem(item["delta"])
    return kind, stored


def item_key(kind: str, item: dict[str, Any]) -> str:
    """What makes two items of a kind the same question (the prompt; a tone item's text)."""
    return str(item[KEYS[kind]])


@dataclass(frozen=True)
class Merged:
    """An exam with new items merged in: the new exam, what was added, what it held already."""

    exam: Exam
    added: dict[str, int]
    unchanged: int


def merge(exam: Exam, additions: list[tuple[str, dict[str, Any], int]], where: str) -> Merged:
    """Append new (kind, item, line) additions after each kind's items, in the order given.

    An item equal to one the exam (or an earlier line) holds is kept once; the same question with
    other content (another answer, other choices) is refused.

    Raises:
        MalformedDataError: an item asks a question the exam already asks differently (line named).
    """
    items = {kind: exam.of(kind) for kind in KINDS}
    known = {kind: {item_key(kind, i): (i, 0) for i in items[kind]} for kind in KINDS}
    added = dict.fromkeys(KINDS, 0)
    unchanged = 0
    for kind, item, line in additions:
        key = item_key(kind, item)
        if key in known[kind]:
            held, held_line = known[kind][key]
            if held != item:
                origin = f"line {held_line} of {where}" if held_line else exam_path(kind)
                raise MalformedDataError(where, line, f"{kind} item {key[:60]!r} is already asked differently "
                                                      f"({origin})")
            unchanged += 1
            continue
        known[kind][key] = (item, line)
        items[kind].append(item)
        added[kind] += 1
    return Merged(Exam(items), {k: n for k, n in added.items() if n}, unchanged)


def counts(exam: Exam) -> dict[str, dict[str, int]]:
    """Items per kind, and per delta within each kind ('' for items of no delta)."""
    out: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        per: dict[str, int] = {}
        for item in exam.of(kind):
            stem = delta_stem(item["delta"]) if isinstance(item.get("delta"), str) else ""
            per[stem] = per.get(stem, 0) + 1
        out[kind] = per
    return out
