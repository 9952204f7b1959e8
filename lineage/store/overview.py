"""An overview of the whole record, as plain JSON-ready data: what `lineage report` draws.

Every frozen candidate with its own evidence (metrics, criteria, the digest of the probe set it was
judged on, budget, loss curve, card) and its diff against its parent (`record.parent_diffs`), the
protected branch's history (promotions and rollbacks) and the evolution log.
"""

from __future__ import annotations

import json
import math

import yaml

from ..adapters import git
from ..core.errors import IntegrityError, LineageError
from ..core.policy import Policy
from . import ledger, record, refs

SCHEMA_VERSION = 1
# (key in reports/train/metrics.json, policy.budget key, unit): the budget bars of the report
BUDGET = (("steps", "max_steps", "steps"), ("tokens", "max_tokens", "tokens"),
          ("wall_minutes", "max_wall_minutes", "min"), ("peak_memory_mb", "max_memory_mb", "MB memory"),
          ("output_mb", "max_output_mb", "MB out"))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _own_blob(repo, commit, path: str) -> bytes | None:
    """path's bytes in commit, unless inherited unchanged from its first parent (not this run's evidence)."""
    try:
        entry = commit.tree[path]
    except KeyError:
        return None
    if commit.parents:
        try:
            if commit.parents[0].tree[path].id == entry.id:
                return None
        except KeyError:
            pass
    obj = repo[entry.id]
    return obj.data if obj.type_str == "blob" else None


def _own_json(repo, commit, path: str):
    blob = _own_blob(repo, commit, path)
    if blob is None:
        return None
    try:
        return json.loads(blob)
    except ValueError:
        return None


def _policy_at(repo, commit) -> dict | None:
    """The policy in commit's params.yaml (what the gate and the budget read from the protected tip)."""
    try:
        return Policy.from_params(yaml.safe_load(git.read_blob(repo, commit, "params.yaml") or b"")).to_dict()
    except (LineageError, yaml.YAMLError):
        return None


def _loss_curve(repo, commit, failure: dict | None) -> list:
    data = _own_json(repo, commit, "reports/train/loss_curve.json") or {}
    points = [(p.get("step"), p.get("loss")) for p in data.get("loss") or [] if isinstance(p, dict)]
    if not points and failure:
        points = [tuple(p[:2]) for p in failure.get("loss_curve") or [] if isinstance(p, list) and len(p) >= 2]
    return [[s, v] for s, v in points if _finite(s) and _finite(v)]


def _candidate(repo, row: dict, times: dict, diff: dict | None) -> dict:
    commit = repo[row["commit"]]
    gate = _own_json(repo, commit, "reports/gate.json")
    metrics = _own_json(repo, commit, "metrics.json")
    train = _own_json(repo, commit, "reports/train/metrics.json")
    failure = _own_json(repo, commit, "reports/train_failure.record.json")
    card = _own_blob(repo, commit, "MODEL_CARD.md")
    policy = (gate or {}).get("policy") or (_policy_at(repo, commit.parents[0]) if commit.parents else None)
    used = {k: (train or {}).get(k) for k, _, _ in BUDGET} if train else (failure or {}).get("budget_used") or {}
    limits = (policy or {}).get("budget") or {}
    budget = [{"name": k, "used": used.get(k), "limit": limits.get(lim), "unit": unit} for k, lim, unit in BUDGET]
    child, parent = (metrics or {}).get("child") or {}, (metrics or {}).get("parent") or {}
    scores = None
    if metrics:
        scores = {"recall": child.get("recall"), "generalize": child.get("generalize"),
                  "tone_drift": metrics.get("tone_drift"), "law_violations": child.get("law_violations"),
                  "recall_by_delta": child.get("recall_by_delta") or {},
                  "parent": {"recall": parent.get("recall"), "generalize": parent.get("generalize"),
                             "law_violations": parent.get("law_violations"),
                             "recall_by_delta": parent.get("recall_by_delta") or {}}}
    name = row.get("branch", "").split("/", 1)[-1]
    return {"generation": row.get("generation"), "name": name, "branch": row.get("branch"),
            "commit": row["commit"], "parent": row.get("parent"), "verdict": row.get("verdict"),
            "failed": list(row.get("failed") or []), "reason": row.get("reason"),
            "composite": row.get("composite"), "promoted": bool(row.get("promoted")), "head": bool(row.get("head")),
            "subject": commit.message.strip().splitlines()[0] if commit.message.strip() else "",
            "time": times.get(row.get("generation"), commit.commit_time),
            "metrics": scores, "criteria": list((gate or {}).get("criteria") or []),
            "probes": ((gate or {}).get("hashes") or {}).get("probes"), "diff": diff,
            "budget": budget, "budget_status": (train or failure or {}).get("status"),
            "loss_curve": _loss_curve(repo, commit, failure), "card": card.decode("utf-8", "replace") if card else None}


def gather(store) -> dict:
    """Everything the report shows, read from the store's record, as plain JSON-ready data."""
    root, repo, protected = store.root, store.repo, store.protected
    tip = store.tip()
    problems = []
    try:
        events = ledger.read(repo)
    except IntegrityError as exc:
        events, problems = [], [str(exc)]
    proposed: dict[str, float] = {}
    rolled: dict[str, float] = {}
    for e in events:
        if e.event == "PROPOSE" and e.generation:
            proposed.setdefault(e.generation, e.timestamp)
        elif e.event == "ROLLBACK" and e.data.get("commit"):
            rolled[e.data["commit"]] = e.timestamp
    candidates = []
    rows = refs.frozen_candidates(repo, protected)
    try:
        diffs = record.parent_diffs(store, rows)
    except (KeyError, ValueError, TypeError, LineageError) as exc:
        diffs, problems = {}, [*problems, f"the diffs against each attempt's parent could not be read: {exc}"]
    for row in rows:
        try:
            candidates.append(_candidate(repo, row, proposed, diffs.get(row.get("branch") or "")))
        except (KeyError, ValueError, TypeError):
            problems.append(f"the frozen tag of {row.get('branch')!r} names a commit this store lacks: "
                            f"{row.get('commit')!r}")
    history = []
    for generation, commit, kind in refs.promoted_history(repo, protected):
        info = git.trailers(commit.message)
        history.append({"generation": generation, "kind": kind, "commit": str(commit.id),
                        "from": info.get("Rollback-From"), "reason": info.get("Reason"),
                        "time": rolled.get(str(commit.id), commit.commit_time)})
    log_ref = repo.references.get(ledger.LOG_REF)
    return {"schema_version": SCHEMA_VERSION, "store": root.name, "protected_branch": protected,
            "head": {"generation": refs.served_generation(tip) if tip else None,
                     "commit": str(tip.id) if tip else None},
            "log_tip": str(log_ref.target) if log_ref is not None else None,
            "policy": _policy_at(repo, tip) if tip else None,
            "candidates": candidates, "history": history,
            "events": [e.to_dict() for e in events], "problems": problems}
