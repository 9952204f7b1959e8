"""parent stage: resolve the protected branch's generation and materialise it read-only.

With no generation yet, build the configured base: ``scratch`` (a tiny Llama from a seed with
a tokenizer trained on the bundled corpus) or a local model directory (safetensors only).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core import corpus
from ..core.canonical import write_json
from ..core.hashes import hash_dir, weights_digest
from ..core.settings import Settings
from ..store import weights
from ..store.exam import read_exam
from ..store.root import Store
from .common import PARENT_DIR, PARENT_INFO, log


def build_base(base: str, settings, dest: Path) -> dict:
    """Make the first generation's parent: scratch from a seed, or a local model directory."""
    from ..adapters import model

    if dest.exists():
        shutil.rmtree(dest)
    if base == "scratch":
        model.build_scratch(dest, settings["seed"], settings["scratch"], corpus.all_text())
        return {"kind": "scratch", "base_model": "scratch", "seed": settings["seed"]}
    source = model.check_model_dir(Path(base).expanduser())
    dest.mkdir(parents=True)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        target = dest / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, target)
        except OSError:
            shutil.copy2(file, target)
    return {"kind": "local", "base_model": str(source.resolve())}


def main() -> None:
    settings = Settings.load()
    store = Store.open(".")
    gen = weights.served(store)
    if gen:
        weights.materialise(Path("."), gen, PARENT_DIR)
        info = {"kind": "generation", "generation": gen["generation"], "commit": gen["commit"],
                "dvc_md5": gen["md5"], "base_model": gen["manifest"].get("base_model", "unknown"),
                "deltas_seen": gen["manifest"].get("deltas_seen", [])}
        log.info("parent: %s (commit %s)", gen["generation"], gen["commit"][:12])
    else:
        info = build_base(settings["base"], settings, PARENT_DIR)
        info.update(generation=None, commit=None, deltas_seen=[])
        log.info("parent: no generation on the protected branch yet; base is %s", info["base_model"])
    rows = hash_dir(PARENT_DIR)
    info["weights_sha256"] = weights_digest(rows)
    # The exam main holds now: a new exam on main changes this file, so DVC re-runs prepare (which
    # depends on it) and every stage after it, though no data changed.
    tip = store.tip()
    info["exam"] = read_exam(store.repo, tip).digest() if tip is not None else None
    if info["kind"] != "local":
        # a local base is hard-linked from the user's own directory: leave its modes alone
        for file in PARENT_DIR.rglob("*"):
            if file.is_file():
                os.chmod(file, 0o444)
    write_json(PARENT_INFO, info)
