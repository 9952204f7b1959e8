"""Recipes read from the record: a generation's from its own commit, the next run's from the protected tip.

A generation's commit holds everything its stages consumed: params.yaml and overrides.yaml, the
.dvc files of the deltas it trained on, reports/parent.json (the parent's DVC md5), dvc.yaml and
the stage scripts. The next propose forks from the protected tip with the registered data waiting
for it and its own -S overrides. core/recipe.py compares the two.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from ..adapters import git
from ..core.canonical import digest_bytes
from ..core.errors import ParamsError, RolledBackRecipeError, UsageError
from ..core.recipe import RECIPE_PARAMS, Recipe, rolled_back_twin
from ..core.settings import OVERRIDES, Settings, merge_params, parse_overrides
from . import refs, waiting, weights

DELTAS = "data/deltas"
PIPELINE = ("dvc.yaml", "stages")


def _params(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The recipe's params: the sections the stages read, effective values with defaults filled in."""
    values = Settings.from_dict(merge_params(params, overrides)).values
    return {key: values[key] for key in RECIPE_PARAMS}


def _data(dvc_files: Mapping[str, bytes | str]) -> dict[str, str]:
    """data/deltas/NAME.jsonl.dvc -> md5 of the data it tracks."""
    out = {}
    for path, text in dvc_files.items():
        if path.endswith(".dvc"):
            outs = (yaml.safe_load(text) or {}).get("outs") or [{}]
            out[path] = str(outs[0].get("md5", ""))
    return out


def _pipeline(repo, commit) -> dict[str, str]:
    files = {"dvc.yaml": git.read_blob(repo, commit, "dvc.yaml") or b"", **git.files_in(repo, commit, "stages")}
    return {path: digest_bytes(blob) for path, blob in files.items()}


def recipe_at(repo, commit) -> Recipe | None:
    """The recipe a candidate's commit trained with, from its own record; None when it cannot tell."""
    parent = json.loads(git.read_blob(repo, commit, "reports/parent.json") or b"null")
    params = yaml.safe_load(git.read_blob(repo, commit, "params.yaml") or b"") or {}
    overrides = yaml.safe_load(git.read_blob(repo, commit, OVERRIDES) or b"") or {}
    if not isinstance(parent, dict) or not isinstance(params, dict) or not isinstance(overrides, dict):
        return None
    try:
        effective = _params(params, overrides)
    except ParamsError:
        return None  # settings lineage no longer knows: not comparable
    return Recipe(parent.get("dvc_md5") if parent.get("kind") == "generation" else None, effective,
                  _data(git.files_in(repo, commit, DELTAS)), _pipeline(repo, commit))


def next_recipe(store, overrides: list[str]) -> Recipe:
    """The recipe `propose` would train now: the protected tip, the data waiting for it, these -S overrides.

    Run on the protected branch with a clean work tree (propose checks), so the work tree's
    params.yaml and deltas are the tip's, with deltas staged by hand among them.
    """
    tip = store.tip()
    child = weights.lock_child(store.repo, tip) or {}
    params = yaml.safe_load((store.root / "params.yaml").read_text()) or {}
    dvc_files: dict[str, bytes | str] = {f"{DELTAS}/{p.name}": p.read_text()
                                         for p in sorted((store.root / DELTAS).glob("*.dvc"))}
    dvc_files.update(waiting.waiting(store))
    return Recipe(child.get("md5"), _params(params, parse_overrides(overrides)), _data(dvc_files),
                  _pipeline(store.repo, tip))


def rolled_back(store) -> list[tuple[str, str | None, Recipe | None]]:
    """(generation, reason, recipe) for each generation the protected branch rolled back away from, newest first."""
    out: list[tuple[str, str | None, Recipe | None]] = []
    for event in reversed(refs.rollbacks(store.repo, store.protected)):
        generation = event["from"]
        if not generation or any(generation == g for g, _, _ in out):
            continue
        try:
            commit = refs.generation_commit(store.repo, store.protected, generation)
        except UsageError:  # a name the branch never promoted: nothing to compare
            continue
        out.append((generation, event["reason"], recipe_at(store.repo, commit)))
    return out


def refuse_rolled_back(store, overrides: list[str]) -> None:
    """Refuse a run that would train exactly the recipe of a generation the protected branch rolled back.

    Raises:
        RolledBackRecipeError: naming the generation and the rollback's reason.
    """
    earlier = rolled_back(store)
    if not earlier:
        return
    twin = rolled_back_twin(next_recipe(store, overrides), earlier)
    if twin is not None:
        raise RolledBackRecipeError(*twin)
