"""A generation's weights: where dvc.lock says they are, how to get them, checked against hashes.csv."""

from __future__ import annotations

import json
from pathlib import Path

from ..adapters import dvc, git
from ..core.errors import IntegrityError
from ..core.hashes import check_against, parse_hashes_csv
from . import refs

CHILD = "models/child"
HASHES_CSV = "reports/train/hashes.csv"
MANIFEST = "reports/train/manifest.json"


def lock_child(repo, commit) -> dict | None:
    """The train stage's models/child entry in a commit's dvc.lock (its DVC md5 and size), or None."""
    return dvc.lock_outs(git.read_blob(repo, commit, "dvc.lock")).get("train", {}).get(CHILD) or None


def child_md5(repo, commit) -> str:
    """The DVC directory md5 of a commit's trained weights.

    Raises:
        IntegrityError: dvc.lock records no models/child.
    """
    out = lock_child(repo, commit)
    if not out:
        raise IntegrityError(f"commit {str(commit.id)[:12]}", "dvc.lock records no models/child")
    return str(out["md5"])


def recorded_hashes(repo, commit) -> list[dict] | None:
    """The rows of a commit's hashes.csv, or None when it has none (a failed run)."""
    blob = git.read_blob(repo, commit, HASHES_CSV)
    return None if blob is None else parse_hashes_csv(blob.decode())


def ensure_cached(root: Path, commit, md5: str, what: str) -> None:
    """Fetch a commit's weights from the DVC remote unless the local cache has them.

    Raises:
        IntegrityError: they are in neither.
    """
    path = dvc.cache_path(dvc.cache_dir(root), md5)
    if not path.exists():
        dvc.fetch_rev(root, str(commit.id), what)
        if not path.exists():
            raise IntegrityError(what, "its weights are neither in the local cache nor in the DVC remote")


def served(store) -> dict | None:
    """The generation the protected tip serves (commit, DVC md5, manifest, hashes), or None."""
    commit = store.tip()
    child = lock_child(store.repo, commit)
    if not child:
        return None
    manifest = json.loads(git.read_blob(store.repo, commit, MANIFEST) or b"{}")
    # a rollback commit serves the generation it restored; an approved change, the one before it
    generation = refs.served_generation(commit) or f"unnamed-{str(commit.id)[:7]}"
    return {"generation": generation, "commit": str(commit.id), "branch": store.protected, "md5": child["md5"],
            "manifest": manifest, "hashes": recorded_hashes(store.repo, commit) or []}


def materialise(root: Path, gen: dict, dest: Path) -> None:
    """Put a generation (as served() describes it) into dest from the DVC cache, fetched if needed, checked."""
    cache = dvc.cache_dir(root)
    if not dvc.cache_path(cache, gen["md5"]).exists():
        dvc.fetch_rev(root, gen["commit"], f"generation {gen['generation']}")
    dvc.materialise(cache, gen["md5"], dest)
    if gen["hashes"]:
        check_against(dest, gen["hashes"], f"generation {gen['generation']}")


def checkout(store, generation: str, dest: str | Path | None = None) -> Path:
    """Materialise a generation's weights read-only (fetched from the remote if needed), checked.

    Raises:
        IntegrityError: it has no recorded weights, they cannot be fetched, or a hash differs.
    """
    commit = refs.generation_commit(store.repo, store.protected, generation)
    recorded = recorded_hashes(store.repo, commit)
    if recorded is None:
        raise IntegrityError(generation, "has no recorded weights (its training run failed)")
    md5 = child_md5(store.repo, commit)
    ensure_cached(store.root, commit, md5, generation)
    target = Path(dest) if dest else store.root / "models" / "generations" / generation
    dvc.materialise(dvc.cache_dir(store.root), md5, target)
    check_against(target, recorded, generation)
    return target
