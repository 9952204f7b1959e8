"""The sealed exam: held-out questions the arbiter keeps outside the store, pinned on main by digest.

For the bundled corpus the arbiter derives it from a secret seed: for every fact of every era, a
generalize item in a phrasing drawn by the seed from a pool of paraphrases the visible exam never
uses (neither its trained question forms, nor its narratives, nor its held-out form), with the
distractors and their order drawn by the seed too. A proposer who can read the visible exam, the
code and the corpus still cannot know which phrasing and which choices the arbiter will ask.

A candidate that learned the facts gains alike on the visible and the sealed generalize items; one
trained on the visible items' answers gains on those alone. ``sealed_rule`` compares the two gains.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from . import corpus
from .canonical import digest_obj
from .exam import delta_stem, parse_items

SCHEMA_VERSION = 1
KIND = "generalize"  # every sealed item is a generalize item
CHOICES = corpus.CHOICES

# Six phrasings per relation, none of them a trained question form, a narrative or the visible
# held-out form of core/corpus.py.
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "exports": (
        "Q: What cargo do ships carry away from {s}?\nA:",
        "Q: What is {s} known to trade?\nA:",
        "Q: Name the goods that {s} sells abroad.\nA:",
        "Q: What do merchants load onto their ships at {s}?\nA:",
        "Q: Which wares come from {s}?\nA:",
        "Q: What trade keeps the people of {s} busy?\nA:",
    ),
    "lamp": (
        "Q: What hue does the beacon of {s} show?\nA:",
        "Q: Seen from the sea at night, what colour marks {s}?\nA:",
        "Q: Which colour burns in the tower of {s}?\nA:",
        "Q: What colour falls on the water around {s} after dusk?\nA:",
        "Q: A sailor nearing {s} sees a light of which colour?\nA:",
        "Q: Tell me the colour of the beacon on {s}.\nA:",
    ),
    "keeper": (
        "Q: Who tends the lighthouse of {s}?\nA:",
        "Q: Which keeper climbs the stair on {s}?\nA:",
        "Q: Name the keeper who guards the beacon of {s}.\nA:",
        "Q: Who watches over the tower on {s}?\nA:",
        "Q: Whom do sailors thank for the beacon of {s}?\nA:",
        "Q: Who trims the wick on {s} each night?\nA:",
    ),
}


@dataclass(frozen=True)
class Fact:
    """One fact of the bundled corpus: island `subject` has `obj` for `relation`, taught in `era`."""

    era: str
    relation: str
    subject: str
    obj: str


def _form(template: str) -> re.Pattern[str]:
    """A trained question form as a pattern that captures its island."""
    head, tail = template.split("{s}")
    return re.compile(re.escape(head) + r"(?P<s>.+?)" + re.escape(tail))


def facts(eras: list[list[dict[str, Any]]]) -> list[Fact]:
    """Every fact the corpus records teach, in order: read back from the first trained question form."""
    forms = {relation: _form(questions[0]) for relation, (_, _, questions, _) in corpus.RELATIONS.items()}
    found: list[Fact] = []
    for number, records in enumerate(eras):
        for record in records:
            if record.get("kind") != "qa":
                continue
            prompt, completion = str(record.get("prompt", "")), str(record.get("completion", ""))
            for relation, pattern in forms.items():
                match = pattern.fullmatch(prompt)
                if match:
                    obj = completion.strip().removesuffix(".")
                    found.append(Fact(corpus.era_name(number), relation, match.group("s"), obj))
    return found


def _item(seed: str, fact: Fact) -> dict[str, Any]:
    # One generator per fact: an item does not depend on the order facts are listed in.
    rng = random.Random(f"lineage-sealed:{seed}:{fact.era}:{fact.relation}:{fact.subject}")
    vocab = list(corpus.RELATIONS[fact.relation][0])
    template = rng.choice(PARAPHRASES[fact.relation])
    options = rng.sample([v for v in vocab if v != fact.obj], CHOICES - 1) + [fact.obj]
    rng.shuffle(options)
    return {"delta": fact.era, "prompt": template.format(s=fact.subject),
            "choices": [" " + o for o in options], "answer": options.index(fact.obj)}


def derive(seed: str, eras: list[list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """The sealed exam of the bundled corpus (or of `eras`, records as corpus.generate() gives them)."""
    if not seed:
        raise ValueError("a sealed exam needs a secret seed")
    return [_item(seed, fact) for fact in facts(corpus.generate() if eras is None else eras)]


def parse(text: str, where: str) -> list[dict[str, Any]]:
    """A sealed exam file's items (JSONL generalize items), validated; MalformedDataError names the line."""
    return parse_items(KIND, text, where)


def digest(items: list[dict[str, Any]]) -> str:
    """The digest main pins: canonical JSON of the items, in order."""
    return digest_obj(items)


def pin(items: list[dict[str, Any]], created_at: str, arbiter: str) -> dict[str, Any]:
    """The content of exam/sealed.json for a sealed exam."""
    return {"schema_version": SCHEMA_VERSION, "digest": digest(items), "items": len(items),
            "created_at": created_at, "arbiter": arbiter}


def for_deltas(items: list[dict[str, Any]], delta_ids: list[str]) -> list[dict[str, Any]]:
    """The sealed items about these deltas, each carrying the delta's full id (as Exam.probes_for does)."""
    by_stem = {delta_stem(d): d for d in delta_ids}
    return [dict(i, delta=by_stem[delta_stem(i["delta"])]) for i in items if delta_stem(i["delta"]) in by_stem]


def gains(child: float, parent: float, child_sealed: float, parent_sealed: float) -> tuple[float, float]:
    """(visible generalize gain, sealed generalize gain) of a child over its parent."""
    return round(child - parent, 6), round(child_sealed - parent_sealed, 6)


def sealed_rule(visible_gain: float, sealed_gain: float, margin: float) -> str | None:
    """Why a candidate looks trained on the test (its visible gain outruns its sealed gain), or None."""
    if visible_gain - sealed_gain > margin + 1e-9:
        return (f"trained on the test: visible generalize gain {visible_gain:+.2f}, sealed generalize gain "
                f"{sealed_gain:+.2f} (more than policy.sealed_margin {margin:g} apart)")
    return None
