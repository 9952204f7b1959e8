"""Reading the record: show, status, diff and the lineage.csv export."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from ..adapters import dvc, git
from ..adapters.model import compare_weights
from . import ledger, refs, weights


def json_at(repo, commit, path: str) -> dict | None:
    """A JSON file of a commit, or None when absent."""
    blob = git.read_blob(repo, commit, path)
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


def show(store, generation: str) -> GenerationView:
    """Manifest, metrics, verdict and card of a generation, read from its commit."""
    repo = store.repo
    commit = refs.generation_commit(repo, store.protected, generation)
    card = git.read_blob(repo, commit, "MODEL_CARD.md")
    return GenerationView(generation, str(commit.id), git.trailers(commit.message).get("Verdict"),
                          json_at(repo, commit, "reports/train/manifest.json"), json_at(repo, commit, "metrics.json"),
                          json_at(repo, commit, "reports/train/metrics.json"),
                          json_at(repo, commit, "reports/gate.json"),
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


def status(store, check_remote: bool = True) -> StoreStatus:
    """HEAD generation, candidates not promoted, and whether the DVC remote has everything."""
    repo = store.repo
    head = store.tip()
    promoted = {g for g, _, kind in refs.promoted_history(repo, store.protected) if kind == "promotion"}
    open_candidates = sorted(name[len("refs/heads/"):] for name in repo.references
                             if name.startswith("refs/heads/" + refs.CANDIDATE_PREFIX)
                             and name.rsplit("/", 1)[-1].split("-")[0] not in promoted)
    in_sync, detail = None, "not checked"
    if check_remote:
        missing, reason = dvc.remote_status(store.root)
        if missing is None:
            detail = reason
        else:
            in_sync, detail = not missing, "in sync" if not missing else f"{len(missing)} outputs not pushed"
    return StoreStatus(store.protected, refs.served_generation(head) if head else None,
                       str(head.id) if head else None, open_candidates, in_sync, detail)


def _flat(d: dict | None, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def diff(store, a: str, b: str) -> dict:
    """Metrics, params, data and weight change between two generations."""
    va, vb = show(store, a), show(store, b)
    ma, mb = _flat((va.metrics or {}).get("child")), _flat((vb.metrics or {}).get("child"))
    metrics = {k: {"a": ma.get(k), "b": mb.get(k)} for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)}
    pa, pb = _flat((va.manifest or {}).get("params")), _flat((vb.manifest or {}).get("params"))
    params = {k: {"a": pa.get(k), "b": pb.get(k)} for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)}
    da = {d["id"] for d in ((va.manifest or {}).get("data") or {}).get("new", [])}
    db = {d["id"] for d in ((vb.manifest or {}).get("data") or {}).get("new", [])}
    wa, wb = weights.checkout(store, a), weights.checkout(store, b)
    return {"a": a, "b": b, "metrics": metrics, "params": params,
            "data": {"only_in_a": sorted(da - db), "only_in_b": sorted(db - da)},
            "weights": compare_weights(wa, wb)}


def lineage_csv(store) -> str:
    """One row per frozen candidate with the columns of lineage.csv."""
    repo = store.repo
    timestamps: dict = {}
    for event in ledger.read(repo):
        timestamps.setdefault(event.generation, event.timestamp)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ledger.CSV_COLUMNS)
    for row in refs.frozen_candidates(repo, store.protected):
        commit = repo[row["commit"]]
        train = json_at(repo, commit, "reports/train/metrics.json") or {}
        manifest = json_at(repo, commit, "reports/train/manifest.json") or {}
        metrics = json_at(repo, commit, "metrics.json") or {}
        hashes = {r["path"]: r["sha256"] for r in weights.recorded_hashes(repo, commit) or []}
        child = metrics.get("child") or {}
        writer.writerow([row["generation"], row.get("parent") or "base", train.get("weights_sha256", ""),
                         hashes.get("tokenizer.json", ""),
                         ";".join(d["sha256"] for d in (manifest.get("data") or {}).get("new", [])),
                         train.get("steps", ""),
                         ((manifest.get("params") or {}).get("train") or {}).get("learning_rate", ""),
                         train.get("loss_final", ""), child.get("recall", ""), child.get("generalize", ""),
                         metrics.get("tone_drift", ""), metrics.get("weight_change_pct", ""),
                         "yes" if row["promoted"] else "no", timestamps.get(row["generation"], "")])
    return buf.getvalue()
