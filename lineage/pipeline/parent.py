"""parent stage: resolve the protected branch's generation and materialise it read-only.

With no generation yet, build the configured base: ``scratch`` (a tiny Llama from a seed with
a tokenizer trained on the bundled corpus) or a local model directory (safetensors only).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

from ..canonical import digest_obj, sha256_file, write_json
from ..errors import IntegrityError
from .common import PARENT_DIR, PARENT_INFO, log

HASHES = "hashes.csv"


def hash_dir(path: Path, skip: tuple[str, ...] = (HASHES,)) -> list[dict]:
    """sha256 and size of every file under path, sorted by relative path."""
    rows = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel in skip:
            continue
        rows.append({"path": rel, "sha256": sha256_file(file), "bytes": file.stat().st_size})
    return rows


def hashes_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["path", "sha256", "bytes"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def parse_hashes_csv(text: str) -> list[dict]:
    return [{"path": r["path"], "sha256": r["sha256"], "bytes": int(r["bytes"])}
            for r in csv.DictReader(io.StringIO(text))]


def weights_digest(rows: list[dict]) -> str:
    """One digest for a whole generation: the canonical list of (path, sha256)."""
    return digest_obj([[r["path"], r["sha256"]] for r in rows])


def check_against(path: Path, expected: list[dict], what: str) -> None:
    """Re-hash files and compare with our own sha256 record (DVC trusts its read-only cache)."""
    actual = {r["path"]: r["sha256"] for r in hash_dir(path)}
    for row in expected:
        got = actual.get(row["path"])
        if got is None:
            raise IntegrityError(f"{what}/{row['path']}", "missing")
        if got != row["sha256"]:
            raise IntegrityError(f"{what}/{row['path']}", f"sha256 {got[:12]}… != recorded {row['sha256'][:12]}…")


def resolve_generation(root: Path = Path(".")) -> dict | None:
    """Describe the protected tip's generation (commit, dvc md5, record), or None if there is none."""
    import json

    from ..adapters import dvc, git

    repo = git.open_repo(root)
    branch = git.protected_branch(repo)
    commit = git.tip(repo, branch)
    outs = dvc.lock_outs(git.read_blob(repo, commit, "dvc.lock")).get("train", {})
    child = outs.get("models/child")
    if not child:
        return None
    manifest = json.loads(git.read_blob(repo, commit, "reports/train/manifest.json") or b"{}")
    hashes = (git.read_blob(repo, commit, "reports/train/hashes.csv") or b"").decode()
    from ..arbiter import _generation_of

    # a rollback commit serves the generation it restored; an approved change, the one before it
    generation = _generation_of(repo, commit) or f"unnamed-{str(commit.id)[:7]}"
    return {"generation": generation, "commit": str(commit.id), "branch": branch, "md5": child["md5"],
            "manifest": manifest, "hashes": parse_hashes_csv(hashes) if hashes else []}


def materialise_generation(gen: dict, dest: Path, root: Path = Path(".")) -> None:
    """Put a generation's weights into dest from the DVC cache (fetching if needed), checked."""
    from ..adapters import dvc

    cache = dvc.cache_dir(root)
    if not dvc.cache_path(cache, gen["md5"]).exists():
        log.info("parent %s not in the local cache: fetching from the DVC remote", gen["generation"])
        _fetch_rev(root, gen["commit"])
    dvc.materialise(cache, gen["md5"], dest)
    if gen["hashes"]:
        check_against(dest, gen["hashes"], f"generation {gen['generation']}")


def _fetch_rev(root: Path, rev: str) -> None:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.fetch(targets=["models/child"], revs=[rev], workspace=False)


def build_base(base: str, settings, dest: Path) -> dict:
    """Make the first generation's parent: scratch from a seed, or a local model directory."""
    from ..adapters import model

    if dest.exists():
        shutil.rmtree(dest)
    if base == "scratch":
        from .. import corpus

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
    from ..settings import Settings

    settings = Settings.load()
    gen = resolve_generation()
    if gen:
        materialise_generation(gen, PARENT_DIR)
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
    if info["kind"] != "local":
        # a local base is hard-linked from the user's own directory: leave its modes alone
        for file in PARENT_DIR.rglob("*"):
            if file.is_file():
                os.chmod(file, 0o444)
    write_json(PARENT_INFO, info)
