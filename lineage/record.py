"""Reading the record: show, status, checkout, diff, verify and the lineage.csv export."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import IntegrityError, UsageError
from .promotion import CANDIDATE_PREFIX, FROZEN_TAG, GENERATION_TAG


def _open(store):
    from .adapters import git
    from .api import find_store

    root = find_store(store)
    return root, git.open_repo(root)


def promoted_history(repo, protected: str) -> list[tuple[str, object, str]]:
    """(generation, commit, kind) along the protected branch's first-parent history, oldest first."""
    import pygit2

    from .adapters.git import tip, trailers

    head = tip(repo, protected)
    if head is None:
        return []
    walker = repo.walk(head.id, pygit2.enums.SortMode.TOPOLOGICAL)
    walker.simplify_first_parent()
    out = []
    for commit in walker:
        info = trailers(commit.message)
        if "Rollback-To" in info:
            out.append((info["Rollback-To"], commit, "rollback"))
        elif "Generation" in info:
            out.append((info["Generation"], commit, "promotion"))
    return list(reversed(out))


def generation_commit(repo, generation: str):
    """The commit of a generation: the one the protected branch promoted, else its (first) frozen candidate.

    Never the lineage/gen tag alone: a new tag can point anywhere (a hub accepts new tags from whoever
    may push), so the protected branch's own first-parent history decides what was promoted.
    """
    import pygit2

    from .adapters.git import protected_branch, trailers

    for gen, commit, kind in reversed(promoted_history(repo, protected_branch(repo))):
        if gen == generation and kind == "promotion":
            return commit
    names = sorted(n for n in repo.references if n.startswith(f"refs/tags/{FROZEN_TAG}{generation}-"))
    frozen = [repo[repo.references[name].target].peel(pygit2.Commit) for name in names]
    if not frozen:
        raise UsageError(f"unknown generation {generation}", "See 'lineage log' for generations.")
    return next((c for c in frozen if trailers(c.message).get("Generation") == generation), frozen[0])


def _json_at(repo, commit, path: str) -> dict | None:
    from .adapters.git import read_blob

    blob = read_blob(repo, commit, path)
    return json.loads(blob) if blob else None


@dataclass(frozen=True)
class GenerationView:
    """What `lineage show` prints about one generation."""

    generation: str
    commit: str
    verdict: str | None
    manifest: dict | None
    metrics: dict | None
    train: dict | None
    gate: dict | None
    card: str | None = field(repr=False, default=None)


def show(generation: str, store=".") -> GenerationView:
    """Manifest, metrics, verdict and card of a generation, read from its commit."""
    from .adapters.git import read_blob, trailers

    _, repo = _open(store)
    commit = generation_commit(repo, generation)
    card = read_blob(repo, commit, "MODEL_CARD.md")
    return GenerationView(generation, str(commit.id), trailers(commit.message).get("Verdict"),
                          _json_at(repo, commit, "reports/train/manifest.json"), _json_at(repo, commit, "metrics.json"),
                          _json_at(repo, commit, "reports/train/metrics.json"), _json_at(repo, commit, "reports/gate.json"),
                          card.decode() if card else None)


@dataclass(frozen=True)
class StoreStatus:
    """Where the store stands."""

    protected_branch: str
    head_generation: str | None
    head_commit: str | None
    open_candidates: list
    remote_in_sync: bool | None
    remote_detail: str


def status(store=".", check_remote: bool = True) -> StoreStatus:
    """HEAD generation, candidates not promoted, and whether the DVC remote has everything."""
    from .adapters import dvc, git
    from .arbiter import _generation_of

    root, repo = _open(store)
    protected = git.protected_branch(repo)
    head = git.tip(repo, protected)
    promoted = {g for g, _, kind in promoted_history(repo, protected) if kind == "promotion"}
    open_candidates = sorted(name[len("refs/heads/"):] for name in repo.references
                             if name.startswith("refs/heads/" + CANDIDATE_PREFIX)
                             and name.rsplit("/", 1)[-1].split("-")[0] not in promoted)
    in_sync, detail = None, "not checked"
    if check_remote:
        proc = dvc.dvc(["status", "-c", "--json"], cwd=root, check=False)
        if proc.returncode == 0:
            data = json.loads(proc.stdout or "{}")
            in_sync, detail = not data, "in sync" if not data else f"{len(data)} outputs not pushed"
        else:
            detail = (proc.stderr.strip().splitlines() or ["remote unreachable"])[-1]
    return StoreStatus(protected, _generation_of(repo, head) if head else None, str(head.id) if head else None,
                       open_candidates, in_sync, detail)


def _child_md5(repo, commit) -> str:
    from .adapters import dvc, git

    out = dvc.lock_outs(git.read_blob(repo, commit, "dvc.lock")).get("train", {}).get("models/child")
    if not out:
        raise IntegrityError(f"commit {str(commit.id)[:12]}", "dvc.lock records no models/child")
    return out["md5"]


def _fetch(root, commit, what: str) -> None:
    """Fetch a generation's weights from the DVC remote; a failure is an IntegrityError naming it."""
    from dvc.exceptions import DvcException

    from .pipeline.parent import _fetch_rev

    try:
        _fetch_rev(root, str(commit.id))
    except DvcException as exc:
        raise IntegrityError(what, f"its weights could not be fetched from the DVC remote ({exc})") from None


def checkout(generation: str, store=".", dest: str | None = None) -> Path:
    """Materialise a generation's weights read-only (fetched from the remote if needed), checked."""
    from .adapters import dvc
    from .pipeline.parent import check_against, parse_hashes_csv

    root, repo = _open(store)
    commit = generation_commit(repo, generation)
    from .adapters.git import read_blob, trailers

    if trailers(commit.message).get("Verdict") == "FAIL" and read_blob(repo, commit, "reports/train/hashes.csv") is None:
        raise IntegrityError(generation, "has no recorded weights (its training run failed)")
    md5 = _child_md5(repo, commit)
    cache = dvc.cache_dir(root)
    if not dvc.cache_path(cache, md5).exists():
        _fetch(root, commit, generation)
    target = Path(dest) if dest else root / "models" / "generations" / generation
    dvc.materialise(cache, md5, target)
    from .adapters.git import read_blob

    recorded = read_blob(repo, commit, "reports/train/hashes.csv")
    if recorded is None:
        raise IntegrityError(generation, "has no recorded weights (its training run failed)")
    check_against(target, parse_hashes_csv(recorded.decode()), generation)
    return target


def diff(a: str, b: str, store=".") -> dict:
    """Metrics, params, data and weight change between two generations."""
    from safetensors.torch import load_file

    va, vb = show(a, store), show(b, store)

    def flat(d, prefix=""):
        out = {}
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            elif not isinstance(v, list):
                out[f"{prefix}{k}"] = v
        return out

    ma, mb = flat((va.metrics or {}).get("child")), flat((vb.metrics or {}).get("child"))
    metrics = {k: {"a": ma.get(k), "b": mb.get(k)} for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)}
    pa, pb = flat((va.manifest or {}).get("params")), flat((vb.manifest or {}).get("params"))
    params = {k: {"a": pa.get(k), "b": pb.get(k)} for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)}
    da = {d["id"] for d in ((va.manifest or {}).get("data") or {}).get("new", [])}
    db = {d["id"] for d in ((vb.manifest or {}).get("data") or {}).get("new", [])}
    wa, wb = checkout(a, store, None), checkout(b, store, None)
    ta = {k: v for f in sorted(wa.glob("*.safetensors")) for k, v in load_file(f).items()}
    tb = {k: v for f in sorted(wb.glob("*.safetensors")) for k, v in load_file(f).items()}
    total = changed = changed_tensors = 0
    ranked = []
    for name, tensor in tb.items():
        total += tensor.numel()
        other = ta.get(name)
        if other is None or other.shape != tensor.shape:
            changed += tensor.numel()
            changed_tensors += 1
            continue
        delta = tensor.float() - other.float()
        n = int((delta != 0).sum())
        if n:
            changed += n
            changed_tensors += 1
            ranked.append((name, float(delta.norm() / (other.float().norm() + 1e-12))))
    ranked.sort(key=lambda r: -r[1])
    return {"a": a, "b": b, "metrics": metrics, "params": params,
            "data": {"only_in_a": sorted(da - db), "only_in_b": sorted(db - da)},
            "weights": {"params_changed_pct": round(100 * changed / max(total, 1), 4),
                        "tensors_changed_pct": round(100 * changed_tensors / max(len(tb), 1), 4),
                        "most_changed": [{"tensor": n, "relative_change": round(r, 6)} for n, r in ranked[:5]]}}


@dataclass(frozen=True)
class VerifyReport:
    """What `lineage verify` checked and what it found."""

    checked: list
    problems: list

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _sha256_files(paths: list[Path]) -> dict[Path, str]:
    """sha256 of each file, on up to one thread per core."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(len(paths), os.cpu_count() or 1))
    if workers == 1:
        return {p: _sha256_file(p) for p in paths}
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(paths, pool.map(_sha256_file, paths)))


def _served(root: Path, repo, protected: str, wanted: dict, problems: list) -> None:
    """Add the served weights (models/child) to what verify hashes, when the work tree claims to serve the tip.

    DVC links models/child from the cache, but a file there can be replaced by another (same size,
    valid safetensors) while the cache stays intact. Checked only when HEAD is the protected branch
    and the work tree's dvc.lock is the tip's: after a plain `dvc repro` models/child is a new candidate.
    """
    import os

    from .adapters import git
    from .arbiter import _generation_of
    from .pipeline.parent import parse_hashes_csv

    head = git.tip(repo, protected)
    child = root / "models" / "child"
    lock = root / "dvc.lock"
    if head is None or not child.is_dir() or not lock.is_file() or repo.head_is_unborn or repo.head_is_detached \
            or repo.head.name != f"refs/heads/{protected}" or lock.read_bytes() != (git.read_blob(repo, head, "dvc.lock") or b""):
        return
    recorded = git.read_blob(repo, head, "reports/train/hashes.csv")
    if recorded is None:
        return
    where = f"served {_generation_of(repo, head) or 'generation'} (models/child)"
    cached = {}  # (device, inode) of each cache file verify hashes anyway -> the sha256 it must have
    for path, entries in wanted.items():
        st = os.stat(path)
        cached.setdefault((st.st_dev, st.st_ino), set()).update(sha for _, _, sha in entries)
    for row in parse_hashes_csv(recorded.decode()):
        path = child / row["path"]
        if not path.is_file():
            problems.append(f"{where}: models/child/{row['path']} is missing")
            continue
        st = os.stat(path)
        if row["sha256"] in cached.get((st.st_dev, st.st_ino), ()):
            continue  # a link to a cache file hashed against this same record
        wanted.setdefault(path, []).append((where, f"models/child/{row['path']}", row["sha256"]))


def _generation_tag_problems(repo, protected: str) -> list[str]:
    """Every lineage/gen tag must point at the commit the protected branch promoted under that name."""
    import pygit2

    promoted = {gen: str(commit.id) for gen, commit, kind in promoted_history(repo, protected) if kind == "promotion"}
    prefix = f"refs/tags/{GENERATION_TAG}"
    problems = []
    for name in sorted(n for n in repo.references if n.startswith(prefix)):
        generation, target = name[len(prefix):], str(repo[repo.references[name].target].peel(pygit2.Commit).id)
        if promoted.get(generation) != target:
            where = f"{protected} promoted it as {promoted[generation][:12]}" if generation in promoted \
                else f"{protected} never promoted {generation}"
            problems.append(f"tag {GENERATION_TAG}{generation} points at {target[:12]}, but {where}")
    return problems


def verify(store=".") -> VerifyReport:
    """Re-hash every promoted generation, check its evidence and the log's chain."""
    from . import ledger
    from .adapters import dvc, git
    from .pipeline.parent import parse_hashes_csv

    root, repo = _open(store)
    protected = git.protected_branch(repo)
    cache = dvc.cache_dir(root)
    checked, problems = [], []
    seen = set()
    wanted: dict[Path, list[tuple[str, str, str]]] = {}  # cache file -> (where, relpath, recorded sha256)
    for generation, commit, kind in promoted_history(repo, protected):
        if (generation, str(commit.id)) in seen:
            continue
        seen.add((generation, str(commit.id)))
        where = f"{generation} ({kind} {str(commit.id)[:12]})"
        try:
            md5 = _child_md5(repo, commit)
            expected = {r["path"]: r["sha256"] for r in parse_hashes_csv(
                (git.read_blob(repo, commit, "reports/train/hashes.csv") or b"").decode())}
            if not dvc.cache_path(cache, md5).exists():
                _fetch(root, commit, generation)
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
            if report.get("hashes", {}).get("metrics") != "sha256:" + hashlib.sha256(metrics).hexdigest():
                problems.append(f"{where}: metrics.json does not match its gate report")
            checked.append(where)
        except IntegrityError as exc:
            problems.append(f"{where}: {exc}")
    _served(root, repo, protected, wanted, problems)
    # Each distinct cache file is hashed once (generations share files; a rollback shares all of
    # them), largest first, on as many threads as cores: hashlib releases the GIL on big reads.
    for path, digest in _sha256_files(sorted(wanted, key=lambda p: -p.stat().st_size)).items():
        for where, rel, sha in wanted[path]:
            if digest != sha:
                problems.append(f"{where}: {rel} sha256 {digest[:12]}… != recorded {sha[:12]}…")
    problems += _generation_tag_problems(repo, protected)
    try:
        events = ledger.read(root)
        checked.append(f"{ledger.LOG_REF}: {len(events)} events, linear chain")
    except IntegrityError as exc:
        problems.append(str(exc))
    return VerifyReport(checked, problems)


def lineage_csv(store=".") -> str:
    """One row per frozen candidate with the columns of lineage.csv."""
    from . import ledger
    from .adapters.git import read_blob
    from .pipeline.parent import parse_hashes_csv
    from .promotion import frozen_candidates

    root, repo = _open(store)
    timestamps = {}
    for event in ledger.read(root):
        timestamps.setdefault(event.generation, event.timestamp)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ledger.CSV_COLUMNS)
    for row in frozen_candidates(root):
        commit = repo[row["commit"]]
        train = _json_at(repo, commit, "reports/train/metrics.json") or {}
        manifest = _json_at(repo, commit, "reports/train/manifest.json") or {}
        metrics = _json_at(repo, commit, "metrics.json") or {}
        hashes = {r["path"]: r["sha256"] for r in parse_hashes_csv(
            (read_blob(repo, commit, "reports/train/hashes.csv") or b"path,sha256,bytes\n").decode())}
        child = metrics.get("child") or {}
        writer.writerow([row["generation"], row.get("parent") or "base", train.get("weights_sha256", ""),
                         hashes.get("tokenizer.json", ""),
                         ";".join(d["sha256"] for d in (manifest.get("data") or {}).get("new", [])),
                         train.get("steps", ""), ((manifest.get("params") or {}).get("train") or {}).get("learning_rate", ""),
                         train.get("loss_final", ""), child.get("recall", ""), child.get("generalize", ""),
                         metrics.get("tone_drift", ""), metrics.get("weight_change_pct", ""),
                         "yes" if row["promoted"] else "no", timestamps.get(row["generation"], "")])
    return buf.getvalue()
