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


def parse_items(kind: str, text: str, where: str) -> list[dict[str, Any]]:
    """Items of one exam file's text (JSONL), validated; blank lines skipped."""
    items = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MalformedDataError(where, number, f"unparsable JSON ({exc.msg})") from None
        items.append(check_item(kind, item, where, number))
    return items


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
