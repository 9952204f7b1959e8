"""Reading the record: show, status, diff and the lineage.csv export."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field

from ..adapters import dvc, git
from ..adapters.model import compare_weights
from ..core.errors import UsageError
from . import ledger, refs, transaction, waiting, weights


def json_at(repo, commit, path: str) -> dict | None:
    """A JSON file of a commit, or None when absent."""
    blob = git.read_blob(repo, commit, path)
    return json.loads(blob) if blob else None


ATTEMPT_RE = re.compile(r"^(G\d{3,})-([a-z0-9]+)$")
GENERATION_RE = re.compile(r"^G\d{3,}$")


@dataclass(frozen=True)
class GenerationView:
    """What `lineage show` prints about one generation or one attempt (candidate).

    Only the attempt's own evidence is shown: an attempt interrupted before its commit has none, and
    never its parent's.
    """

    generation: str
    commit: str | None
    verdict: str | None
    manifest: dict | None
    metrics: dict | None
    train: dict | None
    gate: dict | None
    card: str | None = field(repr=False, default=None)
    name: str = ""                    # what was asked for: G002 or G002-a
    candidate: str | None = None      # candidates/G002-a
    reason: str | None = None         # why it failed or was aborted
    failed: list = field(default_factory=list)
    promoted: bool = False
    served: bool = False
    parent: str | None = None
    attempts: list = field(default_factory=list)  # the other attempts at this generation number


def _attempts(store, generation: str) -> list[dict]:
    return [r for r in refs.frozen_candidates(store.repo, store.protected) if r.get("generation") == generation]


def _view(store, name: str, row: dict | None, commit, attempts: list[dict]) -> GenerationView:
    repo = store.repo
    generation = (row or {}).get("generation") or name.split("-")[0]
    own = commit is not None and git.trailers(commit.message).get("Generation") == generation \
        and (row is None or row.get("verdict") != "ABORTED")
    card = git.read_blob(repo, commit, "MODEL_CARD.md") if own else None
    failure = json_at(repo, commit, "reports/train_failure.record.json") if own else None
    verdict = (row or {}).get("verdict") or (git.trailers(commit.message).get("Verdict") if own else None)
    reason = (row or {}).get("reason") or (failure or {}).get("reason")
    parent = (row or {}).get("parent") or (git.trailers(commit.message).get("Parent") if own else None)
    return GenerationView(
        generation, str(commit.id) if own else None, verdict,
        json_at(repo, commit, "reports/train/manifest.json") if own else None,
        json_at(repo, commit, "metrics.json") if own else None,
        json_at(repo, commit, "reports/train/metrics.json") if own else None,
        json_at(repo, commit, "reports/gate.json") if own else None,
        card.decode() if card else None, name, (row or {}).get("branch"), reason, list((row or {}).get("failed") or []),
        bool((row or {}).get("promoted")) if row else True, bool((row or {}).get("head")), parent,
        [{k: r.get(k) for k in ("branch", "verdict", "promoted")} for r in attempts])


def show(store, name: str) -> GenerationView:
    """A generation (G002: the one main promoted) or an attempt (G002-a), from its own commit.

    Raises:
        UsageError: no such generation or attempt, or a generation never promoted with several attempts.
    """
    repo = store.repo
    attempt = ATTEMPT_RE.match(name)
    if attempt:
        row = refs.frozen_record(repo, attempt.group(1), attempt.group(2))
        if row is None:
            raise UsageError(f"unknown attempt {name}", "See 'lineage log' for every attempt.")
        rows = [r for r in refs.frozen_candidates(repo, store.protected) if r.get("branch") == row.get("branch")]
        row = rows[0] if rows else row
        commit = repo[row["commit"]] if row.get("commit") else None
        return _view(store, name, row, commit, _attempts(store, attempt.group(1)))
    if not GENERATION_RE.match(name):
        raise UsageError(f"{name!r} is neither a generation (G002) nor an attempt (G002-a)",
                         "See 'lineage log' for generations and attempts.")
    attempts = _attempts(store, name)
    promoted = refs.promotion_commits(repo, store.protected).get(name)
    if promoted is not None:
        row = next((r for r in attempts if r.get("commit") == promoted), None)
        return _view(store, name, row, repo[promoted], attempts)
    if len(attempts) == 1:
        return _view(store, name, attempts[0], repo[attempts[0]["commit"]], attempts)
    if not attempts:
        raise UsageError(f"unknown generation {name}", "See 'lineage log' for generations.")
    listed = ", ".join(f"{r['branch'].split('/', 1)[-1]} ({r.get('verdict')})" for r in attempts)
    raise UsageError(f"{name} was never promoted; its attempts are {listed}",
                     f"Show one attempt: lineage show {attempts[0]['branch'].split('/', 1)[-1]}")


@dataclass(frozen=True)
class StoreStatus:
    """Where the store stands."""

    protected_branch: str
    head_generation: str | None
    head_commit: str | None
    open_candidates: list      # PASS, not promoted, trained from what main serves now: promotable
    remote_in_sync: bool | None
    remote_detail: str
    not_promoted: list = field(default_factory=list)  # every other attempt that main never took, with its verdict
    work_tree: str = "clean"  # or what is in the way and the command that clears it
    pending_data: list = field(default_factory=list)  # registered deltas waiting for the next candidate
    pending_where: str = ""  # where they wait, and who takes them


def status(store, check_remote: bool = True) -> StoreStatus:
    """HEAD generation, candidates awaiting a decision and the rest, and whether the DVC remote has everything."""
    repo = store.repo
    head = store.tip()
    served = refs.served_generation(head) if head else None
    open_candidates, not_promoted = [], []
    for row in refs.frozen_candidates(repo, store.protected):
        if row.get("promoted"):
            continue
        branch = row.get("branch") or ""
        commit = repo.get(row["commit"]) if row.get("commit") else None
        on_tip = commit is not None and head is not None and [str(p.id) for p in commit.parents] == [str(head.id)]
        if row.get("verdict") == "PASS" and on_tip and row.get("parent") == served:
            open_candidates.append(branch)
        else:
            not_promoted.append(f"{branch} ({row.get('verdict')})")
    stray = transaction.stray_evidence(store)
    work_tree = (f"holds a candidate's {', '.join(sorted({p.split('/')[0] for p in stray}))} left by a git "
                 "command the hook refused: run 'lineage repair'") if stray else "clean"
    pending = waiting.names(store, transaction.pending_data(store))
    where = (f"in {waiting.folder(store).relative_to(store.root)} (its data in data/deltas, ignored by git), not in "
             "the git index: the next 'lineage propose' commits it into its candidate, and it waits until one is "
             "promoted") if pending else ""
    in_sync, detail = None, "not checked"
    if check_remote:
        missing, reason = dvc.remote_status(store.root)
        if missing is None:
            detail = reason
        else:
            in_sync, detail = not missing, "in sync" if not missing else f"{len(missing)} outputs not pushed"
    return StoreStatus(store.protected, served, str(head.id) if head else None, open_candidates, in_sync, detail,
                       not_promoted, work_tree, pending, where)


def _flat(d: dict | None, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


CRITERIA = ("recall", "generalize", "tone_drift", "law_violations")
TRAINING = ("steps", "tokens", "wall_minutes", "loss_final")


def _observed(view: GenerationView, name: str):
    metrics = view.metrics or {}
    if name == "tone_drift":
        return metrics.get("tone_drift")
    return (metrics.get("child") or {}).get(name)


def diff(store, a: str, b: str) -> dict:
    """A forensic comparison of two generations or attempts: criteria against B's thresholds, the
    exam each was judged on, training, data added, params changed, weights changed, verdicts."""
    va, vb = show(store, a), show(store, b)
    result = compare(va, vb)
    missing = [f"{v.name} has no weights: {v.reason or 'its run did not complete'}" for v in (va, vb)
               if v.train is None or (v.train or {}).get("status") not in (None, "COMPLETE") or v.commit is None]
    if missing:
        result["weights"] = {"available": False, "why": "; ".join(missing)}
    else:
        wa, wb = weights.checkout(store, _checkout_name(va)), weights.checkout(store, _checkout_name(vb))
        result["weights"] = {"available": True, **compare_weights(wa, wb)}
    return result


def compare(va: GenerationView, vb: GenerationView) -> dict:
    """What `diff` says of A and B but the weights, from their committed evidence alone (no checkout)."""
    a, b = va.name, vb.name
    gate_b = {c["name"]: c for c in (vb.gate or {}).get("criteria") or []}
    criteria = []
    for name in CRITERIA:
        old, new = _observed(va, name), _observed(vb, name)
        crit = gate_b.get(name) or {}
        change = round(new - old, 6) if isinstance(old, (int, float)) and isinstance(new, (int, float)) else None
        criteria.append({"name": name, "a": old, "b": new, "change": change, "op": crit.get("op"),
                         "threshold": crit.get("threshold"), "passed": crit.get("passed") if crit else None,
                         "applicable": crit.get("applicable", True) if crit else None})
    probes_a = ((va.gate or {}).get("hashes") or {}).get("probes")
    probes_b = ((vb.gate or {}).get("hashes") or {}).get("probes")
    new_a = {d["id"]: d for d in ((va.manifest or {}).get("data") or {}).get("new", [])}
    new_b = {d["id"]: d for d in ((vb.manifest or {}).get("data") or {}).get("new", [])}
    ma, mb = _flat((va.metrics or {}).get("child")), _flat((vb.metrics or {}).get("child"))
    pa, pb = _flat((va.manifest or {}).get("params")), _flat((vb.manifest or {}).get("params"))
    params = {k: {"a": pa[k], "b": pb[k]} for k in sorted(set(pa) & set(pb))
              if pa[k] != pb[k] and pa[k] is not None and pb[k] is not None}
    result = {
        "a": a, "b": b,
        "verdict": {"a": va.verdict, "b": vb.verdict, "a_promoted": va.promoted, "b_promoted": vb.promoted,
                    "b_failed": vb.failed, "b_reason": vb.reason},
        "criteria": criteria,
        "same_exam": probes_a == probes_b if probes_a and probes_b else None,
        "training": {"a": {k: (va.train or {}).get(k) for k in TRAINING},
                     "b": {k: (vb.train or {}).get(k) for k in TRAINING}},
        "data_added": [{"delta": d, "records": new_b[d].get("records")} for d in new_b if d not in new_a],
        "data": {"only_in_a": sorted(set(new_a) - set(new_b)), "only_in_b": sorted(set(new_b) - set(new_a))},
        "params": params,
        "metrics": {k: {"a": ma.get(k), "b": mb.get(k)} for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)},
    }
    return result


def parent_diffs(store, rows: list[dict]) -> dict[str, dict | None]:
    """Each frozen attempt (rows from `refs.frozen_candidates`) against the generation it was trained from,
    by branch: `compare`'s facts, as `lineage diff PARENT ATTEMPT` shows them less the weights (comparing
    weights checks both out: too slow for every attempt of a store). None: trained from the base, or the
    parent generation is not in the record."""
    repo = store.repo
    promoted = refs.promotion_commits(repo, store.protected)
    by_generation: dict[str, list[dict]] = {}
    for row in rows:
        by_generation.setdefault(row.get("generation") or "", []).append(row)
    parents: dict[str, GenerationView | None] = {}

    def generation_view(generation: str) -> GenerationView | None:
        # as `show` resolves a generation: the commit main promoted it as, else its only attempt
        if generation not in parents:
            attempts = by_generation.get(generation, [])
            commit = promoted.get(generation) or (attempts[0].get("commit") if len(attempts) == 1 else None)
            row = next((r for r in attempts if r.get("commit") == commit), None)
            parents[generation] = _view(store, generation, row, repo[commit], attempts) if commit else None
        return parents[generation]

    out: dict[str, dict | None] = {}
    for row in rows:
        parent = generation_view(row["parent"]) if row.get("parent") else None
        name = (row.get("branch") or "").split("/", 1)[-1]
        attempt = _view(store, name, row, repo[row["commit"]], by_generation.get(row.get("generation") or "", []))
        out[row.get("branch") or name] = compare(parent, attempt) if parent is not None else None
    return out


def _checkout_name(view: GenerationView) -> str:
    return view.candidate.split("/", 1)[-1] if view.candidate and not view.promoted else view.generation


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
