"""`lineage verify`: re-hash every promoted generation against our own sha256 record.

DVC trusts read-only cache files without rehashing them, so verify hashes each cache file a
promoted generation lists (once per file, largest first, on every core), the weights the work
tree serves, checks each gate report against its metrics, the generation tags against the
protected branch's history, and the evolution log's chain.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..adapters import dvc, git
from ..core.canonical import digest_bytes
from ..core.errors import IntegrityError
from ..core.hashes import sha256_files
from . import ledger, refs, weights


@dataclass(frozen=True)
class VerifyReport:
    """What `lineage verify` checked and what it found."""

    checked: list
    problems: list

    @property
    def ok(self) -> bool:
        return not self.problems


Wanted = dict[Path, list[tuple[str, str, str]]]  # cache file -> (where, relpath, recorded sha256)


def _served(store, wanted: Wanted, problems: list) -> None:
    """Add the served weights (models/child) to what verify hashes, when the work tree claims to serve the tip.

    DVC links models/child from the cache, but a file there can be replaced by another (same size,
    valid safetensors) while the cache stays intact. Checked only when HEAD is the protected branch
    and the work tree's dvc.lock is the tip's: after a plain `dvc repro` models/child is a new candidate.
    """
    repo, root = store.repo, store.root
    head = store.tip()
    child = root / "models" / "child"
    lock = root / "dvc.lock"
    if head is None or not child.is_dir() or not lock.is_file() or not store.on_protected() \
            or lock.read_bytes() != (git.read_blob(repo, head, "dvc.lock") or b""):
        return
    recorded = weights.recorded_hashes(repo, head)
    if recorded is None:
        return
    where = f"served {refs.served_generation(head) or 'generation'} (models/child)"
    cached: dict = {}  # (device, inode) of each cache file verify hashes anyway -> the sha256 it must have
    for path, entries in wanted.items():
        st = os.stat(path)
        cached.setdefault((st.st_dev, st.st_ino), set()).update(sha for _, _, sha in entries)
    for row in recorded:
        path = child / row["path"]
        if not path.is_file():
            problems.append(f"{where}: models/child/{row['path']} is missing")
            continue
        st = os.stat(path)
        if row["sha256"] in cached.get((st.st_dev, st.st_ino), ()):
            continue  # a link to a cache file hashed against this same record
        wanted.setdefault(path, []).append((where, f"models/child/{row['path']}", row["sha256"]))


def generation_tag_problems(repo, protected: str) -> list[str]:
    """Every lineage/gen tag must point at the commit the protected branch promoted under that name."""
    promoted = {gen: str(commit.id) for gen, commit, kind in refs.promoted_history(repo, protected)
                if kind == "promotion"}
    prefix = f"refs/tags/{refs.GENERATION_TAG}"
    problems = []
    for name in sorted(n for n in repo.references if n.startswith(prefix)):
        generation, target = name[len(prefix):], git.ref_commit(repo, name)
        if promoted.get(generation) != target:
            where = f"{protected} promoted it as {promoted[generation][:12]}" if generation in promoted \
                else f"{protected} never promoted {generation}"
            problems.append(f"tag {refs.GENERATION_TAG}{generation} points at {str(target)[:12]}, but {where}")
    return problems


def verify(store) -> VerifyReport:
    """Re-hash every promoted generation, check its evidence and the log's chain."""
    repo, root = store.repo, store.root
    cache = dvc.cache_dir(root)
    checked, problems = [], []
    seen = set()
    wanted: Wanted = {}
    for generation, commit, kind in refs.promoted_history(repo, store.protected):
        if (generation, str(commit.id)) in seen:
            continue
        seen.add((generation, str(commit.id)))
        where = f"{generation} ({kind} {str(commit.id)[:12]})"
        try:
            md5 = weights.child_md5(repo, commit)
            expected = {r["path"]: r["sha256"] for r in weights.recorded_hashes(repo, commit) or []}
            weights.ensure_cached(root, commit, md5, generation)
            listing = {e["relpath"]: e["md5"] for e in dvc.dir_listing(cache, md5)}
            for rel, sha in expected.items():
                if rel not in listing:
                    problems.append(f"{where}: {rel} is in hashes.csv but not in dvc.lock's directory")
                    continue
                path = dvc.cache_path(cache, listing[rel])
                if not path.exists():
                    problems.append(f"{where}: {rel} is missing from the DVC cache")
                    continue
                wanted.setdefault(path, []).append((where, rel, sha))
            metrics = git.read_blob(repo, commit, "metrics.json") or b""
            report = json.loads(git.read_blob(repo, commit, "reports/gate.json") or b"{}")
            if report.get("hashes", {}).get("metrics") != digest_bytes(metrics):
                problems.append(f"{where}: metrics.json does not match its gate report")
            checked.append(where)
        except IntegrityError as exc:
            problems.append(f"{where}: {exc}")
    _served(store, wanted, problems)
    # Each distinct cache file is hashed once (generations share files; a rollback shares all of
    # them), largest first, on as many threads as cores: hashlib releases the GIL on big reads.
    for path, digest in sha256_files(sorted(wanted, key=lambda p: -p.stat().st_size)).items():
        for where, rel, sha in wanted[path]:
            if digest != sha:
                problems.append(f"{where}: {rel} sha256 {digest[:12]}… != recorded {sha[:12]}…")
    problems += generation_tag_problems(repo, store.protected)
    try:
        events = ledger.read(repo)
        checked.append(f"{ledger.LOG_REF}: {len(events)} events, linear chain")
    except IntegrityError as exc:
        problems.append(str(exc))
    return VerifyReport(checked, problems)
