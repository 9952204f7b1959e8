"""A training recipe: everything a run's stages consume that decides what they train.

Training is seeded, so two runs with the same recipe make the same weights (up to float rounding
when the CPU thread count differs: adapters/training.py): a propose whose recipe equals a
rolled-back generation's would only make that generation again.
The recipe is read from records both sides have (a generation's own commit; the protected tip and
the registered data for the next run), never from a new field, so every generation ever promoted
can be compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .canonical import digest_obj

# The params.yaml sections dvc.yaml's stages declare (with overrides.yaml on top); evolve, card,
# serve and the policy are read elsewhere (the policy from the protected branch, never the run's).
RECIPE_PARAMS = ("base", "seed", "scratch", "data", "train", "eval")


@dataclass(frozen=True)
class Recipe:
    """What a run trains from: parent weights, effective params, registered data, pipeline code."""

    parent: str | None            # the parent generation's DVC md5; None: the configured base
    params: dict[str, Any]        # RECIPE_PARAMS of params.yaml + overrides.yaml, defaults filled in
    data: dict[str, str]          # data/deltas/NAME.jsonl.dvc -> md5 of the delta's data
    pipeline: dict[str, str]      # dvc.yaml and stages/*.py -> git blob id

    def digest(self) -> str:
        return digest_obj(asdict(self))


def rolled_back_twin(recipe: Recipe, rolled_back: Iterable[tuple[str, str | None, Recipe | None]]
                     ) -> tuple[str, str | None] | None:
    """(generation, reason) of the first rolled-back generation trained with exactly this recipe, or None.

    rolled_back: (generation, rollback reason, its recipe or None when its record cannot say).
    """
    for generation, reason, theirs in rolled_back:
        if theirs is not None and theirs == recipe:
            return generation, reason
    return None
