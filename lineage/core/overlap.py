"""Overlap between exam items and training data, after normalisation (pure).

An exam item a model was trained on measures memory, not learning. Text is normalised
(casefolded, punctuation removed, whitespace collapsed) and cut into character 5-gram shingles;
an item overlaps a training record when its normalised text is contained in the record's, or
when their shingle sets have a Jaccard similarity of at least 0.8 (a near copy: one character
changed, a word added). Which text of an item is checked:

- ``generalize``: the prompt followed by the right answer (the question in a never-trained form
  with its answer is exactly what must not be trained);
- ``tone``: the text;
- ``recall`` and ``law`` (and ``burnin``) are the trained forms by design: exempt.

``TrainingIndex`` indexes the records once (shingle -> records) and finds candidates by prefix
filtering (a record at Jaccard >= t must share one of the item's rarest ``|A| - ceil(t|A|) + 1``
shingles), so checking hundreds of items against thousands of records stays fast.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SHINGLE = 5
THRESHOLD = 0.8
CHECKED_KINDS = ("generalize", "tone")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Casefold, drop punctuation, collapse whitespace: 'Q: Who?\\nA:' -> 'q who a'."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if ch.isspace() else ch for ch in folded if not unicodedata.category(ch).startswith("P"))
    return _SPACE.sub(" ", kept).strip()


def shingles(normalised: str, size: int = SHINGLE) -> frozenset[str]:
    """The character shingles of a normalised text (a text shorter than size is one shingle)."""
    if not normalised:
        return frozenset()
    if len(normalised) <= size:
        return frozenset((normalised,))
    return frozenset(normalised[i:i + size] for i in range(len(normalised) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a & b| / |a | b| (0.0 for two empty sets)."""
    if not a and not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


def checked_text(kind: str, item: dict[str, Any]) -> str | None:
    """The text of an exam item that must not be trained on, or None when its kind is exempt."""
    if kind == "generalize":
        choices, answer = item.get("choices"), item.get("answer")
        right = choices[answer] if isinstance(choices, list) and isinstance(answer, int) \
            and 0 <= answer < len(choices) else ""
        return f"{item.get('prompt', '')}{right}"
    if kind == "tone":
        text = item.get("text")
        return text if isinstance(text, str) else None
    return None


@dataclass(frozen=True)
class Hit:
    """One overlap: which record (by its position in the index) and how."""

    record: int
    contained: bool
    similarity: float

    def how(self) -> str:
        return "contained in it" if self.contained else f"a near copy, similarity {self.similarity:.2f}"


class TrainingIndex:
    """Training texts indexed by shingle, to ask which one an exam text overlaps."""

    def __init__(self, texts: Iterable[str], threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self.texts: list[str] = []
        self.sets: list[frozenset[str]] = []
        self.postings: dict[str, list[int]] = {}
        for number, text in enumerate(texts):
            norm = normalise(text)
            grams = shingles(norm)
            self.texts.append(norm)
            self.sets.append(grams)
            for gram in grams:
                self.postings.setdefault(gram, []).append(number)

    def __len__(self) -> int:
        return len(self.texts)

    def find(self, text: str) -> Hit | None:
        """The first training text (lowest index) the given exam text overlaps, or None."""
        norm = normalise(text)
        if not norm:
            return None
        if len(norm) < SHINGLE:  # too short to shingle: only containment can tell
            return next((Hit(n, True, 1.0) for n, t in enumerate(self.texts) if norm in t), None)
        grams = shingles(norm)
        needed = math.ceil(self.threshold * len(grams))
        rarest = sorted(grams, key=lambda g: (len(self.postings.get(g, ())), g))[:len(grams) - needed + 1]
        candidates = sorted({n for g in rarest for n in self.postings.get(g, ())})
        for number in candidates:
            if norm in self.texts[number]:
                return Hit(number, True, 1.0)
            similarity = jaccard(grams, self.sets[number])
            if similarity >= self.threshold:
                return Hit(number, False, similarity)
        return None


def first_overlap(items: Iterable[tuple[str, dict[str, Any]]], index: TrainingIndex) -> tuple[int, Hit] | None:
    """(position of the item, hit) for the first (kind, item) that overlaps the index, or None."""
    for position, (kind, item) in enumerate(items):
        text = checked_text(kind, item)
        if text is None:
            continue
        hit = index.find(text)
        if hit is not None:
            return position, hit
    return None
