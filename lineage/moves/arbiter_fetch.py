"""What the arbiter reads before it measures: weights and deltas fetched by content, checked.

A candidate's weights are fetched from the DVC remote by the md5 its ``dvc.lock`` names, into the
arbiter's own cache; the file set of that DVC directory must be exactly what ``hashes.csv`` lists
(an extra file is one transformers might load), and every file is re-hashed (sha256) on a
materialised copy under ``.lineage/arbiter/``. The served generation is materialised and checked
the same way. A new delta's contents are fetched by the md5 of its ``.dvc`` file and checked
against it, for the overlap check.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..adapters import dvc, git
from ..core.data import training_text
from ..core.errors import ArbiterRefusedError, IntegrityError, MalformedDataError
from ..core.hashes import HASHES, check_against, weights_digest
from ..store import refs, weights

WORK = Path(".lineage") / "arbiter"
DELTAS = "data/deltas/"


@dataclass(frozen=True)
class Weights:
    """A generation's weights, materialised and checked: where, their hashes.csv rows and digest."""

    path: Path
    rows: list[dict[str, Any]]
    digest: str
    output_mb: float


def work_dir(root: Path, name: str) -> Path:
    """A fresh folder for one evaluation's copies (ignored by git: .lineage/)."""
    path = root / WORK / name
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def file_set_problem(listed: list[str], rows: list[dict[str, Any]], what: str) -> str | None:
    """Why a DVC directory's files are not exactly hashes.csv's (its own copy of hashes.csv aside), or None."""
    expected = {r["path"] for r in rows}
    held = set(listed) - {HASHES}
    extra = sorted(held - expected)
    if extra:
        return (f"{what} holds {', '.join(extra[:3])}{' …' if len(extra) > 3 else ''}, which hashes.csv does not "
                "list: a file nobody vouches for (transformers could load it)")
    missing = sorted(expected - held)
    if missing:
        return f"hashes.csv lists {', '.join(missing[:3])}, which the weights of {what} do not hold"
    return None


def ensure_cached(root: Path, cache: Path, commit, md5: str, what: str, target: str = weights.CHILD) -> Path:
    """The cache file of md5, fetched from the DVC remote (as target of commit) unless the cache has it.

    store/weights.ensure_cached, with the cache directory asked once per evaluation, not per object.

    Raises:
        IntegrityError: it is in neither.
    """
    path = dvc.cache_path(cache, md5)
    if not path.exists():
        dvc.fetch_rev(root, str(commit.id), what, target=target)
        if not path.exists():
            raise IntegrityError(what, "its weights are neither in the local cache nor in the DVC remote")
    return path


def checked_weights(store, cache: Path, commit, rows: list[dict[str, Any]], csv_bytes: bytes | None, what: str,
                    dest: Path) -> Weights:
    """Fetch a commit's models/child by content, check its file set and every sha256, materialised in dest.

    Raises:
        IntegrityError: dvc.lock names no weights, the DVC remote lacks them, the file set differs from
            hashes.csv, or a sha256 differs.
    """
    root = store.root
    md5 = weights.child_md5(store.repo, commit)
    ensure_cached(root, cache, commit, md5, what)
    listing = dvc.dir_listing(cache, md5)
    problem = file_set_problem([e["relpath"] for e in listing], rows, what)
    if problem:
        raise IntegrityError(what, problem)
    for entry in listing:
        ensure_cached(root, cache, commit, entry["md5"], what)  # a partial cache: fetch the rest
    dvc.materialise(cache, md5, dest)
    check_against(dest, rows, what)
    own = dest / HASHES
    if csv_bytes is not None and own.is_file() and own.read_bytes() != csv_bytes:
        raise IntegrityError(f"{what}/{HASHES}", "differs from the commit's reports/train/hashes.csv")
    return Weights(dest, rows, weights_digest(rows), round(sum(int(r["bytes"]) for r in rows) / 2**20, 3))


def served_at(store, commit) -> dict[str, Any] | None:
    """The generation a protected commit serves: its name, its hashes.csv rows and manifest; None before any."""
    lock = dvc.lock_outs(git.read_blob(store.repo, commit, "dvc.lock"))
    if not lock.get("train", {}).get(weights.CHILD):
        return None
    manifest = json.loads(git.read_blob(store.repo, commit, weights.MANIFEST) or b"{}")
    return {"generation": refs.served_generation(commit) or f"unnamed-{str(commit.id)[:7]}",
            "commit": str(commit.id), "manifest": manifest, "hashes": weights.recorded_hashes(store.repo, commit),
            "csv": git.read_blob(store.repo, commit, weights.HASHES_CSV)}


def delta_files(repo, commit) -> dict[str, bytes]:
    """Every registered delta's .dvc file in a commit: path -> bytes."""
    return {path: blob for path, blob in git.files_in(repo, commit, DELTAS.rstrip("/")).items()
            if path.endswith(".dvc")}


def delta_id(dvc_path: str) -> str:
    """'d001-era1' for 'data/deltas/d001-era1.jsonl.dvc'."""
    name = posixpath.basename(dvc_path).removesuffix(".dvc")
    return name.rsplit(".", 1)[0] if "." in name else name


def registered_change(main: dict[str, bytes], candidate: dict[str, bytes], ref: str) -> None:
    """Refuse a candidate that modifies or removes a delta main has registered (the set only grows)."""
    for path, blob in sorted(main.items()):
        if path not in candidate:
            raise ArbiterRefusedError(ref, f"the candidate removes the registered delta {path}",
                                      "Registered deltas stay: re-propose from main.")
        if candidate[path] != blob:
            raise ArbiterRefusedError(ref, f"the candidate modifies the registered delta {path}",
                                      "A candidate may add a delta, never change one: re-propose from main.")


def delta_records(store, cache: Path, commit, dvc_path: str, blob: bytes) -> list[tuple[str, int, str]]:
    """(path, line, training text) of a new delta, its contents fetched by the .dvc's md5 and checked.

    Raises:
        IntegrityError: the .dvc names no single file beside it, the DVC remote lacks it, or the bytes differ.
        MalformedDataError: a line is not a JSON record.
    """
    try:
        outs = (yaml.safe_load(blob) or {}).get("outs") or []
    except yaml.YAMLError:
        outs = []
    name = posixpath.basename(dvc_path).removesuffix(".dvc")
    if len(outs) != 1 or not isinstance(outs[0], dict) or outs[0].get("path") != name \
            or not isinstance(outs[0].get("md5"), str):
        raise IntegrityError(dvc_path, f"does not track exactly the file {name} beside it")
    md5, data_path = outs[0]["md5"], f"{DELTAS}{name}"
    raw = ensure_cached(store.root, cache, commit, md5, f"delta {data_path}", target=data_path).read_bytes()
    if hashlib.md5(raw).hexdigest() != md5:
        raise IntegrityError(data_path, f"the bytes fetched for md5 {md5} do not have that md5 (a tampered cache "
                                        "or remote)")
    found: list[tuple[str, int, str]] = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise MalformedDataError(data_path, number, "unparsable JSON") from None
        if not isinstance(record, dict):
            raise MalformedDataError(data_path, number, "not a JSON object")
        if record.get("kind") == "probe":
            continue  # a delta registered before deltas lost their probes: never trained on
        if isinstance(record.get("text"), str) or (isinstance(record.get("prompt"), str)
                                                   and isinstance(record.get("completion"), str)):
            found.append((data_path, number, training_text(record)))
    return found
