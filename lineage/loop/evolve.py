"""The evolution loop: one window proposes K candidates and at most one proposal; the gate decides.

State machine per window: IDLE → PROPOSE → TRAIN → VERIFY → COMMIT | REJECT → IDLE. The state is
written to ``.lineage/evolve/state.json`` before each step, so a window killed mid-way is found
on the next run: candidates already frozen are kept, an interrupted one is frozen as ABORTED,
and the window goes on from there. An exclusive lock keeps two `evolve` runs apart.
"""

from __future__ import annotations

import fcntl
import json
import string
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..adapters import git
from ..core.canonical import write_json
from ..core.data import STRATEGIES, delta_id_of, list_deltas, read_delta
from ..core.errors import LineageError, UsageError
from ..guard import verdict
from ..guard.signers import SIGNERS_FILE, requires
from ..moves.promote import promote
from ..moves.propose import propose
from ..store import ledger, refs
from ..store.rules import protected_policy, protected_settings
from .risk import classify_risk

STATE = Path(".lineage/evolve/state.json")
PROPOSAL = Path(".lineage/proposal.json")
LOCK = Path(".lineage/evolve.lock")
DELTAS = Path("data/deltas")


@dataclass(frozen=True)
class WindowResult:
    """What one call of `evolve` did."""

    state: str                      # closed | refused | proposed | no-proposal | promoted
    reason: str
    window: str | None = None
    ranked: list = field(default_factory=list)
    proposal: dict | None = None


def _write_state(root: Path, state: dict) -> None:
    write_json(root / STATE, state)


def _read_state(root: Path) -> dict:
    path = root / STATE
    return json.loads(path.read_text()) if path.exists() else {"state": "IDLE"}


@contextmanager
def window_lock(root: Path) -> Iterator[None]:
    """One evolve at a time per store; the second is told, never blocked into corruption."""
    path = root / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UsageError("another 'lineage evolve' is running in this store", "Wait for it to finish.") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def new_data_since_head(store) -> tuple[int, float]:
    """Training records (and their summed score) registered but not learned by HEAD."""
    root = store.root
    manifest = json.loads(git.read_blob(store.repo, store.tip(), "reports/train/manifest.json") or b"{}")
    seen = set(manifest.get("deltas_seen", []))
    rules = protected_policy(root, store.repo).policy.data
    count, score = 0, 0.0
    for rel in list_deltas(root, DELTAS):
        delta = read_delta(root, rel, rules, legacy_probes=delta_id_of(rel) in seen)
        if delta.id not in seen:
            count += len(delta.train_records)
            score += sum(float(r.get("score", 0)) for r in delta.train_records)
    return count, score


def _cycles_since(events, kinds: tuple[str, ...], cycle: int | None) -> int | None:
    for event in reversed(events):
        if event.event in kinds and event.data.get("cycle") is not None and cycle is not None:
            return cycle - int(event.data["cycle"])
    return None


def check_preconditions(store, settings, cycle: int | None) -> str | None:
    """The first precondition that fails, or None when a window may run."""
    evo = settings["evolve"]
    since = _cycles_since(ledger.read(store.repo), ("COMMIT", "ROLLBACK"), cycle)
    if since is not None and since < evo["cooldown_cycles"]:
        return f"cool-down: {since} cycles since the last promotion or rollback, need {evo['cooldown_cycles']}"
    if "Rollback-To" in git.trailers(store.tip().message) and evo["cooldown_cycles"] and since is None:
        return "the last generation is not stable: it was rolled back and no cool-down has been counted since"
    count, score = new_data_since_head(store)
    if count < evo["min_new_examples"] and score < max(evo["min_new_score"], 1e-12):
        return (f"not enough new data since HEAD: {count} new examples (need {evo['min_new_examples']}) "
                f"scoring {score:.1f} (need {evo['min_new_score']})")
    if count == 0:
        return "not enough new data since HEAD: no new examples"
    return None


def plan(settings, k: int | None, seeds: list[int] | None, strategies: list[str] | None) -> list[dict]:
    """K candidates with distinct seeds and data strategies, validated against the hard cap.

    Raises:
        UsageError: k over the cap, an unknown strategy, or seeds that do not fit k.
    """
    evo = settings["evolve"]
    k = k or evo["k"]
    cap = evo["max_concurrent_experiments"]
    if not 1 <= k <= cap:
        raise UsageError(f"k={k} is outside 1..{cap} (evolve.max_concurrent_experiments)",
                         f"Ask for at most {cap} candidates.")
    strategies = strategies or [s.strip() for s in evo["strategies"].split(",") if s.strip()]
    for name in strategies:
        if name not in STRATEGIES:
            raise UsageError(f"data strategy {name!r} does not exist", f"Use one of: {', '.join(STRATEGIES)}.")
    seeds = seeds or [settings["seed"] + i for i in range(k)]
    if len(seeds) != k:
        raise UsageError(f"{len(seeds)} seeds given for k={k}", "Give one seed per candidate.")
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"duplicate seeds {seeds}", "Each candidate needs its own seed.")
    return [{"name": string.ascii_lowercase[i], "seed": seeds[i], "strategy": strategies[i % len(strategies)]}
            for i in range(k)]


def evolve(store, cycle: int | None = None, k: int | None = None, seeds: list[int] | None = None,
           strategies: list[str] | None = None, progress=None) -> WindowResult:
    """Run one evolution window (or say why not). Killed commands were recovered before (api)."""
    root = store.root
    settings, policy = protected_settings(store)
    if cycle is not None and cycle % settings["evolve"]["evo_period_cycles"]:
        return WindowResult("closed",
                            f"cycle {cycle} is not a window (every {settings['evolve']['evo_period_cycles']})")
    with window_lock(root):
        waited = _promote_judged_proposal(store, policy, progress)
        state = _read_state(root)
        if state.get("state", "IDLE") != "IDLE":
            window, candidates = state["window"], state["candidates"]
            current = git.current_branch(root)
            if current and current != store.protected:
                # killed inside a candidate: go home, keeping the registered data it carried
                carried = [p for p in git.names_changed(root, store.protected, current, "data/deltas")
                           if p.endswith((".dvc", ".gitignore"))]
                git.checkout(root, store.protected, force=True)
                if carried:
                    git.checkout_paths(root, current, carried)
            _freeze_interrupted(store, window, candidates)
        else:
            reason = check_preconditions(store, settings, cycle)
            if reason:
                ledger.append(store, "WINDOW_REFUSED", None, {"cycle": cycle, "reason": reason})
                return WindowResult("refused", reason)
            candidates = plan(settings, k, seeds, strategies)
            window = refs.next_generation(store.repo)
            ledger.append(store, "WINDOW_OPEN", window, {"cycle": cycle, "candidates": candidates})
        state = {"state": "TRAIN", "window": window, "cycle": cycle, "candidates": candidates,
                 "started": time.time()}
        _write_state(root, state)
        for cand in candidates:
            if cand.get("status"):
                continue
            cand["status"] = "running"
            _write_state(root, state)
            if progress:
                progress(f"window {window}: candidate {cand['name']} (seed {cand['seed']}, {cand['strategy']})")
            # again: a refusal here would leave the window half-run; skipping a candidate whose recipe is a
            # rolled-back generation's is the window's own decision to make (not made yet)
            proposal = propose(store, cand["name"], [f"seed={cand['seed']}", f"data.strategy={cand['strategy']}"],
                               progress=progress, generation=window, again=True)
            cand.update(status="frozen", verdict=proposal.verdict, composite=proposal.composite,
                        failed=proposal.failed, commit=proposal.commit, branch=proposal.branch)
            _write_state(root, state)
        state["state"] = "VERIFY"
        _write_state(root, state)
        result = _rank_and_propose(store, window, candidates, cycle, policy, progress)
        state["state"] = "IDLE"
        _write_state(root, state)
        ledger.append(store, "WINDOW_CLOSE", window, {"cycle": cycle, "outcome": result.state})
        if waited:
            result = WindowResult(result.state, f"{waited}; {result.reason}", result.window, result.ranked,
                                  result.proposal)
        return result


def _freeze_interrupted(store, window: str, candidates: list[dict]) -> None:
    """Freeze an interrupted candidate as ABORTED so the record has no half-done attempt."""
    repo = store.repo
    for cand in candidates:
        if cand.get("status") != "running":
            continue
        branch = refs.candidate_branch(window, cand["name"])
        data = refs.frozen_record(repo, window, cand["name"])
        if data is not None:
            cand.update(status="frozen", verdict=data["verdict"], composite=data.get("composite"),
                        failed=data.get("failed", []), commit=data["commit"], branch=branch)
            continue
        target = git.ref_commit(repo, f"refs/heads/{branch}") or git.ref_commit(repo, store.protected_ref)
        assert target is not None  # the protected branch exists in a store
        frozen = {"schema_version": 1, "generation": window, "branch": branch, "commit": target, "verdict": "ABORTED",
                  "failed": ["interrupted"], "composite": None, "reason": "the window was interrupted mid-run"}
        git.tag(store.root, refs.frozen_tag(window, cand["name"]), target, json.dumps(frozen, sort_keys=True),
                env=store.env())
        ledger.append(store, "REJECT", window, {"candidate": cand["name"], "reason": "interrupted; frozen as ABORTED"})
        cand.update(status="frozen", verdict="ABORTED", composite=None, failed=["interrupted"], commit=target,
                    branch=branch)


def _read(repo, commit: str, path: str) -> bytes:
    return git.read_blob(repo, repo[commit], path) or b"{}"


def _signed(store) -> bool:
    return requires(git.read_blob(store.repo, store.tip(), SIGNERS_FILE))


def _promote_judged_proposal(store, policy, progress) -> str | None:
    """With autonomy auto in a store with signers: promote the open low-risk proposal once the arbiter's
    verdict on it is PASS (the window that proposed it could not wait for the arbiter). Say what happened."""
    path = store.root / PROPOSAL
    if policy.autonomy != "auto" or not _signed(store) or not path.exists():
        return None
    proposal = json.loads(path.read_text())
    tip = store.tip()
    if proposal.get("status") != "open" or proposal.get("risk") != "low" or tip is None \
            or proposal.get("current_head") != str(tip.id):
        return None
    found = verdict.for_policy(verdict.read(store.repo, proposal["commit"]), str(tip.id))
    if found is None:
        return f"{proposal['candidate']} still awaits the arbiter's verdict"
    if not found.passed:
        proposal["status"] = "refused"
        proposal["reason"] = "; ".join(found.predicate.get("reasons") or ["the arbiter's verdict is FAIL"])
        write_json(path, proposal)
        return f"{proposal['candidate']} was refused by the arbiter: {proposal['reason']}"
    if progress:
        progress(f"autonomy auto: the arbiter passed {proposal['candidate']}; promoting it")
    try:
        promote(store, proposal["candidate"], approved_by="autonomy:auto", cycle=proposal.get("cycle"))
    except LineageError as exc:
        return f"{proposal['candidate']} could not be promoted: {exc}"
    proposal["status"] = "promoted"
    write_json(path, proposal)
    return f"{proposal['candidate']} promoted without a person after the arbiter's PASS"


def _rank_and_propose(store, window, candidates, cycle, policy, progress) -> WindowResult:
    repo, root = store.repo, store.root
    ranked = sorted(candidates, key=lambda c: (c.get("verdict") != "PASS", -(c.get("composite") or 0.0)))
    passing = [c for c in ranked if c.get("verdict") == "PASS"]
    if not passing:
        return WindowResult("no-proposal", "no candidate passed the gate", window, ranked)
    best = passing[0]
    report = json.loads(_read(repo, best["commit"], "reports/gate.json"))
    old = git.ref_commit(repo, store.protected_ref)
    assert old is not None  # the protected branch exists in a store
    # HEAD's score on today's probes (parent_composite re-measures its recall and generalize)
    # with the tone drift HEAD itself was promoted with: both pay for the change they made.
    head_score = report.get("parent_composite")
    head_metrics = json.loads(_read(repo, old, "metrics.json"))
    if head_score is not None and head_metrics.get("tone_drift") is not None:
        head_score = round(head_score - 0.2 * float(head_metrics["tone_drift"]), 12)
    if head_score is not None and best["composite"] <= head_score:
        return WindowResult("no-proposal", f"best candidate {best['name']} scores {best['composite']:.4f}, "
                                           f"not above HEAD's {head_score:.4f}", window, ranked)
    risk, reasons = classify_risk(repo, old, best["commit"])
    proposal = {"schema_version": 1, "window": window, "candidate": best["branch"], "commit": best["commit"],
                "current_head": old, "improvement": round(best["composite"] - (head_score or 0.0), 6),
                "composite": best["composite"], "head_composite": head_score, "risk": risk, "risk_reasons": reasons,
                "criteria": report.get("criteria"), "hashes": report.get("hashes"), "status": "open",
                "cycle": cycle}
    write_json(root / PROPOSAL, proposal)
    ledger.append(store, "PROPOSAL", window, {k: proposal[k] for k in ("candidate", "commit", "improvement", "risk")})
    if policy.autonomy == "auto" and risk == "low" and _signed(store):
        # The arbiter judges first: the hub and the hook refuse a move without its verdict.
        waiting = (f"{best['branch']} proposed (low risk: {'; '.join(reasons)}); with autonomy auto it is promoted "
                   "by the next 'lineage evolve' once the arbiter's verdict is PASS "
                   f"(lineage arbiter evaluate {best['branch']})")
        return WindowResult("proposed", waiting, window, ranked, proposal)
    if policy.autonomy == "auto" and risk == "low":
        if progress:
            progress(f"autonomy auto, low risk ({'; '.join(reasons)}): promoting {best['branch']}")
        promote(store, best["branch"], approved_by="autonomy:auto", cycle=cycle)
        proposal["status"] = "promoted"
        write_json(root / PROPOSAL, proposal)
        return WindowResult("promoted", f"{best['branch']} promoted without a person: {'; '.join(reasons)}",
                            window, ranked, proposal)
    why = "needs a person's approval" if risk != "blocked" else "blocked"
    return WindowResult("proposed", f"{best['branch']} proposed ({risk} risk: {'; '.join(reasons)}); {why}",
                        window, ranked, proposal)
