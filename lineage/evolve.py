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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import LineageError, UsageError

STATE = Path(".lineage/evolve/state.json")
PROPOSAL = Path(".lineage/proposal.json")
LOCK = Path(".lineage/evolve.lock")
LOW_RISK_PARAMS = {"seed", "data.strategy", "data.replay_fraction"}


@dataclass(frozen=True)
class WindowResult:
    """What one call of `evolve` did."""

    state: str                      # closed | refused | proposed | no-proposal | promoted
    reason: str
    window: str | None = None
    ranked: list = field(default_factory=list)
    proposal: dict | None = None


def _write_state(root: Path, state: dict) -> None:
    from .canonical import write_json

    write_json(root / STATE, state)


def _read_state(root: Path) -> dict:
    path = root / STATE
    return json.loads(path.read_text()) if path.exists() else {"state": "IDLE"}


@contextmanager
def window_lock(root: Path):
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


def protected_settings(root: Path):
    """Settings and policy as the protected branch holds them: the loop's rules are not the candidate's."""
    from .adapters import git
    from .policy import Policy
    from .settings import Settings

    repo = git.open_repo(root)
    blob = git.read_blob(repo, git.tip(repo, git.protected_branch(repo)), "params.yaml")
    raw = yaml.safe_load(blob or (root / "params.yaml").read_text()) or {}
    return Settings.from_dict(raw), Policy.from_params(raw)


def new_data_since_head(root: Path) -> tuple[int, float]:
    """Training records (and their summed score) registered but not learned by HEAD."""
    from .adapters import git
    from .data import list_deltas, read_delta
    from .pipeline.common import DELTAS, protected_policy

    repo = git.open_repo(root)
    head = git.tip(repo, git.protected_branch(repo))
    manifest = json.loads(git.read_blob(repo, head, "reports/train/manifest.json") or b"{}")
    seen = set(manifest.get("deltas_seen", []))
    rules = protected_policy(root).policy.data
    count, score = 0, 0.0
    for rel in list_deltas(root, DELTAS):
        delta = read_delta(root, rel, rules)
        if delta.id not in seen:
            count += len(delta.train_records)
            score += sum(float(r.get("score", 0)) for r in delta.train_records)
    return count, score


def _cycles_since(events, kinds: tuple[str, ...], cycle: int | None) -> int | None:
    for event in reversed(events):
        if event.event in kinds and event.data.get("cycle") is not None and cycle is not None:
            return cycle - int(event.data["cycle"])
    return None


def check_preconditions(root: Path, settings, cycle: int | None) -> str | None:
    """The first precondition that fails, or None when a window may run."""
    from . import ledger
    from .adapters import git

    evo = settings["evolve"]
    events = ledger.read(root)
    since = _cycles_since(events, ("COMMIT", "ROLLBACK"), cycle)
    if since is not None and since < evo["cooldown_cycles"]:
        return f"cool-down: {since} cycles since the last promotion or rollback, need {evo['cooldown_cycles']}"
    repo = git.open_repo(root)
    head = git.tip(repo, git.protected_branch(repo))
    if "Rollback-To" in git.trailers(head.message) and evo["cooldown_cycles"] and since is None:
        return "the last generation is not stable: it was rolled back and no cool-down has been counted since"
    count, score = new_data_since_head(root)
    if count < evo["min_new_examples"] and score < max(evo["min_new_score"], 1e-12):
        return (f"not enough new data since HEAD: {count} new examples (need {evo['min_new_examples']}) "
                f"scoring {score:.1f} (need {evo['min_new_score']})")
    if count == 0:
        return "not enough new data since HEAD: no new examples"
    return None


def plan(settings, k: int | None, seeds: list[int] | None, strategies: list[str] | None) -> list[dict]:
    """K candidates with distinct seeds and data strategies, validated against the hard cap."""
    from .data import STRATEGIES

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


def classify_risk(repo, old_id: str, new_id: str) -> tuple[str, list[str]]:
    """low: data and weights (and sampling choices) only; medium: training params; high: anything else."""
    from .adapters.git import read_blob
    from .safety import scan_secrets

    old, new = repo[old_id], repo[new_id]
    diff = repo.diff(old.tree, new.tree)
    reasons, level = [], "low"
    for patch in diff:
        path = patch.delta.new_file.path
        if patch.delta.is_binary is False:
            added = "\n".join(line.content for hunk in patch.hunks for line in hunk.lines if line.origin == "+")
            found = scan_secrets(added)
            if found:
                return "blocked", [f"secret in {path} ({found[0][0]})"]
        if path == "params.yaml":
            before = yaml.safe_load(read_blob(repo, old, "params.yaml") or b"") or {}
            after = yaml.safe_load(read_blob(repo, new, "params.yaml") or b"") or {}
            if before.get("policy") != after.get("policy"):
                return "high", ["edits the policy"]
            flat_before, flat_after = _flatten(before), _flatten(after)
            changed = {k for k in set(flat_before) | set(flat_after) if flat_before.get(k) != flat_after.get(k)}
            params = sorted(changed - LOW_RISK_PARAMS)
            if params:
                level = "medium"
                reasons.append(f"training params changed: {', '.join(params)}")
        elif not (path in ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md") or path.startswith("reports/")
                  or path.startswith("data/")):
            return "high", [f"changes {path}"]
    return level, reasons or ["data and weights only"]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in (d or {}).items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def evolve(store=".", cycle: int | None = None, k: int | None = None, seeds: list[int] | None = None,
           strategies: list[str] | None = None, progress=None) -> WindowResult:
    """Run one evolution window (or say why not)."""
    from . import ledger, promotion
    from .adapters import git
    from .api import find_store

    root = find_store(store)
    settings, policy = protected_settings(root)
    if cycle is not None and cycle % settings["evolve"]["evo_period_cycles"]:
        return WindowResult("closed", f"cycle {cycle} is not a window (every {settings['evolve']['evo_period_cycles']})")
    with window_lock(root):
        from . import recovery

        recovery.recover(root)  # a killed propose is finished (or undone) before the window looks at it
        state = _read_state(root)
        repo = git.open_repo(root)
        protected = git.protected_branch(repo)
        if state.get("state", "IDLE") != "IDLE":
            window, candidates = state["window"], state["candidates"]
            current = git.git(["symbolic-ref", "-q", "--short", "HEAD"], cwd=root, check=False).stdout.strip()
            if current and current != protected:
                # killed inside a candidate: go home, keeping the registered data it carried
                carried = [p for p in git.git(["diff", "--name-only", protected, current, "--", "data/deltas"],
                                              cwd=root).stdout.split() if p.endswith((".dvc", ".gitignore"))]
                git.git(["checkout", "-q", "-f", protected], cwd=root)
                if carried:
                    git.git(["checkout", current, "--", *carried], cwd=root)
            _recover(root, repo, window, candidates)
        else:
            reason = check_preconditions(root, settings, cycle)
            if reason:
                ledger.append(root, "WINDOW_REFUSED", None, {"cycle": cycle, "reason": reason})
                return WindowResult("refused", reason)
            candidates = plan(settings, k, seeds, strategies)
            window = promotion.next_generation(repo)
            ledger.append(root, "WINDOW_OPEN", window, {"cycle": cycle, "candidates": candidates})
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
            proposal = promotion.propose(root, cand["name"], [f"seed={cand['seed']}", f"data.strategy={cand['strategy']}"],
                                         progress=progress, generation=window)
            cand.update(status="frozen", verdict=proposal.verdict, composite=proposal.composite,
                        failed=proposal.failed, commit=proposal.commit, branch=proposal.branch)
            _write_state(root, state)
        state["state"] = "VERIFY"
        _write_state(root, state)
        result = _rank_and_propose(root, repo, window, candidates, cycle, policy, progress)
        state["state"] = "IDLE"
        _write_state(root, state)
        ledger.append(root, "WINDOW_CLOSE", window, {"cycle": cycle, "outcome": result.state})
        return result


def _recover(root: Path, repo, window: str, candidates: list[dict]) -> None:
    """Freeze an interrupted candidate as ABORTED so the record has no half-done attempt."""
    from . import ledger
    from .promotion import CANDIDATE_PREFIX, FROZEN_TAG, _env, _git

    for cand in candidates:
        if cand.get("status") != "running":
            continue
        branch = f"{CANDIDATE_PREFIX}{window}-{cand['name']}"
        tag = f"{FROZEN_TAG}{window}-{cand['name']}"
        ref = repo.references.get(f"refs/tags/{tag}")
        if ref is not None:
            data = json.loads(repo[ref.target].message)
            cand.update(status="frozen", verdict=data["verdict"], composite=data.get("composite"),
                        failed=data.get("failed", []), commit=data["commit"], branch=branch)
            continue
        head = repo.references.get(f"refs/heads/{branch}")
        target = str(head.target) if head is not None else str(repo.references[f"refs/heads/{_protected(repo)}"].target)
        frozen = {"schema_version": 1, "generation": window, "branch": branch, "commit": target, "verdict": "ABORTED",
                  "failed": ["interrupted"], "composite": None, "reason": "the window was interrupted mid-run"}
        _git(["tag", "-a", tag, "-m", json.dumps(frozen, sort_keys=True), target], root, env=_env(root))
        ledger.append(root, "REJECT", window, {"candidate": cand["name"], "reason": "interrupted; frozen as ABORTED"})
        cand.update(status="frozen", verdict="ABORTED", composite=None, failed=["interrupted"], commit=target,
                    branch=branch)


def _protected(repo) -> str:
    from .adapters.git import protected_branch

    return protected_branch(repo)


def _rank_and_propose(root, repo, window, candidates, cycle, policy, progress) -> WindowResult:
    from . import ledger, promotion

    ranked = sorted(candidates, key=lambda c: (c.get("verdict") != "PASS", -(c.get("composite") or 0.0)))
    passing = [c for c in ranked if c.get("verdict") == "PASS"]
    if not passing:
        return WindowResult("no-proposal", "no candidate passed the gate", window, ranked)
    best = passing[0]
    report = json.loads(_read(repo, best["commit"], "reports/gate.json"))
    # HEAD's score on today's probes (parent_composite re-measures its recall and generalize)
    # with the tone drift HEAD itself was promoted with: both pay for the change they made.
    head_score = report.get("parent_composite")
    head_metrics = json.loads(_read(repo, str(repo.references[f"refs/heads/{_protected(repo)}"].target),
                                    "metrics.json"))
    if head_score is not None and head_metrics.get("tone_drift") is not None:
        head_score = round(head_score - 0.2 * float(head_metrics["tone_drift"]), 12)
    if head_score is not None and best["composite"] <= head_score:
        return WindowResult("no-proposal", f"best candidate {best['name']} scores {best['composite']:.4f}, "
                                           f"not above HEAD's {head_score:.4f}", window, ranked)
    old = str(repo.references[f"refs/heads/{_protected(repo)}"].target)
    risk, reasons = classify_risk(repo, old, best["commit"])
    proposal = {"schema_version": 1, "window": window, "candidate": best["branch"], "commit": best["commit"],
                "current_head": old, "improvement": round(best["composite"] - (head_score or 0.0), 6),
                "composite": best["composite"], "head_composite": head_score, "risk": risk, "risk_reasons": reasons,
                "criteria": report.get("criteria"), "hashes": report.get("hashes"), "status": "open",
                "cycle": cycle}
    from .canonical import write_json

    write_json(root / PROPOSAL, proposal)
    ledger.append(root, "PROPOSAL", window, {k: proposal[k] for k in ("candidate", "commit", "improvement", "risk")})
    if policy.autonomy == "auto" and risk == "low":
        if progress:
            progress(f"autonomy auto, low risk ({'; '.join(reasons)}): promoting {best['branch']}")
        promotion.promote(best["branch"], root, approved_by="autonomy:auto", cycle=cycle)
        proposal["status"] = "promoted"
        write_json(root / PROPOSAL, proposal)
        return WindowResult("promoted", f"{best['branch']} promoted without a person: {'; '.join(reasons)}",
                            window, ranked, proposal)
    why = "needs a person's approval" if risk != "blocked" else "blocked"
    return WindowResult("proposed", f"{best['branch']} proposed ({risk} risk: {'; '.join(reasons)}); {why}",
                        window, ranked, proposal)


def _read(repo, commit: str, path: str) -> bytes:
    from .adapters.git import read_blob

    return read_blob(repo, repo[commit], path) or b"{}"


def proposal_show(store=".") -> dict:
    from .api import find_store

    root = find_store(store)
    if not (root / PROPOSAL).exists():
        raise UsageError("there is no proposal", "Run 'lineage evolve' first.")
    return json.loads((root / PROPOSAL).read_text())


def proposal_decide(approve: bool, reason: str | None = None, store=".") -> dict:
    """Approve (promote through the arbiter, approval recorded) or reject (reason recorded)."""
    from . import ledger, promotion
    from .api import find_store
    from .canonical import write_json

    root = find_store(store)
    proposal = proposal_show(root)
    if proposal["status"] != "open":
        raise UsageError(f"the proposal for {proposal['candidate']} is already {proposal['status']}",
                         "Run 'lineage evolve' for a new one.")
    if proposal.get("risk") == "blocked" and approve:
        raise LineageError(f"{proposal['candidate']} is blocked: {'; '.join(proposal['risk_reasons'])}",
                           "Remove the secret and train a new candidate.")
    if approve:
        from .promotion import _env, _git

        env = _env(root)
        who = (env.get("GIT_AUTHOR_NAME") or _git(["config", "user.name"], root).stdout.strip()) + " <" + \
              (env.get("GIT_AUTHOR_EMAIL") or _git(["config", "user.email"], root).stdout.strip()) + ">"
        from .attest import attest

        # with a signing key the approval is signed, and refused if allowed_signers does not let it approve
        signed = attest(root, proposal["commit"], "approve", approved_by=who)
        ledger.append(root, "APPROVE", proposal["window"], {"candidate": proposal["candidate"], "approver": who,
                                                            "signed_by": signed.payload["key"] if signed else None})
        promotion.promote(proposal["candidate"], root, approved_by=who, cycle=proposal.get("cycle"))
        proposal["status"] = "promoted"
    else:
        if not reason:
            raise UsageError("a rejection needs a reason", "Pass --reason TEXT.")
        ledger.append(root, "REJECT", proposal["window"], {"candidate": proposal["candidate"], "reason": reason,
                                                            "by": "person"})
        proposal["status"] = "rejected"
        proposal["reason"] = reason
    write_json(root / PROPOSAL, proposal)
    return proposal


def shadow(candidate: str, store=".", limit: int = 64) -> dict:
    """Run HEAD and a candidate side by side on everyday prompts; report parity and differences."""
    from .adapters import dvc, evaluate, git, model
    from .api import find_store
    from .pipeline.evaluate import load_probes
    from .record import _child_md5

    root = find_store(store)
    repo = git.open_repo(root)
    ref = repo.references.get(f"refs/heads/{candidate}") or repo.references.get(f"refs/heads/candidates/{candidate}")
    if ref is None:
        raise UsageError(f"unknown candidate {candidate}", "List candidates with 'lineage log'.")
    head = git.tip(repo, git.protected_branch(repo))
    cache = dvc.cache_dir(root)
    dirs = {}
    for label, commit in (("head", head), ("candidate", repo[ref.target])):
        target = root / ".lineage" / "shadow" / label
        dvc.materialise(cache, _child_md5(repo, commit), target)
        dirs[label] = target
    probes = load_probes(root / "data" / "prepared" / "probes")
    prompts = [p["prompt"] for p in probes["recall"] + probes["generalize"]][:limit]
    a, tok = model.load(dirs["head"])
    b, _ = model.load(dirs["candidate"])
    result = evaluate.shadow_parity(a, b, tok, prompts, 16, 32)
    result["candidate"] = candidate
    return result
