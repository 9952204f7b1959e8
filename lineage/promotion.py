"""Candidates and promotion: propose, promote, rollback, and the frozen record (tags)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ArbiterRefusedError, DirtyTreeError, IntegrityError, UsageError

CANDIDATE_PREFIX = "candidates/"
FROZEN_TAG = "lineage/frozen/"      # one annotated tag per candidate, pass or fail, never moved
GENERATION_TAG = "lineage/gen/"     # one annotated tag per promoted generation
GEN_RE = re.compile(r"G(\d{3,})")
ALLOWED_DIRTY = ("data/deltas/",)


def _pending_data(path: str) -> bool:
    """A registered delta waiting for its candidate: its .dvc file or the DVC-written .gitignore."""
    return path.startswith(ALLOWED_DIRTY) and (path.endswith(".dvc") or path.endswith("/.gitignore"))


@dataclass(frozen=True)
class Proposal:
    """A frozen candidate and what its gate said."""

    generation: str
    branch: str
    commit: str
    parent: str | None
    verdict: str
    failed: list = field(default_factory=list)
    criteria: list = field(default_factory=list)
    composite: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Promotion:
    """A move of the protected branch."""

    generation: str
    kind: str
    old: str
    new: str
    composite: float | None = None


def _git(args, root, **kw):
    from .adapters.git import git

    return git(args, cwd=root, **kw)


def _env(root):
    from .api import _identity_env

    return _identity_env(Path(root))


def _open_clean(store):
    """The store's root, repo and protected branch; refuse a work tree with changes of its own."""
    from .adapters import git
    from .api import find_store
    from .recovery import recover, work_tree_lock

    root = find_store(store)
    recover(root)  # a command killed earlier is finished or undone first
    repo = git.open_repo(root)
    with work_tree_lock(root, exclusive=False):  # never mid-way through another command's checkout
        dirty = [p for p in git.work_tree_dirty(root) if not _pending_data(p)]
    if dirty:
        raise DirtyTreeError(str(root), dirty)
    return root, repo, git.protected_branch(repo)


def used_generation_numbers(repo) -> set[int]:
    """Every generation number ever allocated: branches, tags and trailers on the protected branch."""
    numbers = set()
    for name in repo.references:
        for match in GEN_RE.finditer(name):
            numbers.add(int(match.group(1)))
    return numbers


def next_generation(repo) -> str:
    used = used_generation_numbers(repo)
    return f"G{(max(used) + 1) if used else 0:03d}"


def _apply_overrides(root: Path, overrides: list[str]) -> None:
    from .policy import Policy
    from .settings import Settings, parse_overrides

    if not overrides:
        return
    params = yaml.safe_load((root / "params.yaml").read_text()) or {}

    def merge(dst, src):
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = v

    merge(params, parse_overrides(overrides))
    Settings.from_dict(params)
    Policy.from_params(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def propose(store=".", name: str = "a", overrides: list[str] | None = None, progress=None,
            generation: str | None = None) -> Proposal:
    """Fork a candidate from the protected tip, run the pipeline, commit, push data, freeze.

    A failed or over-budget run is committed and frozen the same way, with its reason.
    """
    from .adapters import dvc, git
    from .canonical import digest_bytes

    root, repo, protected = _open_clean(store)
    from . import recovery

    done = recovery.finished("propose", name=name, overrides=list(overrides or []), generation=generation)
    if done is not None:
        return done  # this very command was killed and recovery has just finished it
    if not re.fullmatch(r"[a-z0-9]+", name):
        raise UsageError(f"candidate name {name!r} must be lowercase letters or digits", "Use e.g. --name a.")
    tip = git.tip(repo, protected)
    parent_gen = None
    if tip is not None:
        from .arbiter import _generation_of

        parent_gen = _generation_of(repo, tip)
    generation = generation or next_generation(repo)  # a window's candidates share one number
    branch = f"{CANDIDATE_PREFIX}{generation}-{name}"
    if repo.references.get(f"refs/heads/{branch}") is not None or \
            repo.references.get(f"refs/tags/{FROZEN_TAG}{generation}-{name}") is not None:
        raise UsageError(f"{branch} exists already", "Pick another --name; candidate names are never reused.")
    pending = [p for p in git.work_tree_dirty(root) if _pending_data(p)]
    saved = {p: (root / p).read_text() for p in pending if (root / p).is_file()}
    from . import faults, ledger

    with recovery.operation(root, "propose", keep_on_error=True, protected=protected, branch=branch,
                            generation=generation, name=name, overrides=list(overrides or []), parent=parent_gen,
                            base=str(tip.id), pending=saved) as op:
        _git(["checkout", "-q", "-b", branch, protected], root)
        faults.point("propose:branched")
        try:
            _apply_overrides(root, overrides or [])
            ledger.append(root, "PROPOSE", generation, {"branch": branch, "parent": parent_gen,
                                                         "overrides": list(overrides or [])})
            faults.point("propose:logged")
            if progress:
                progress(f"{branch}: running the pipeline (dvc repro)")
            run = dvc.dvc(["repro"], cwd=root, check=False, echo=progress)
            failure_path = root / "reports" / "train_failure.json"
            report_path = root / "reports" / "gate.json"
            reason = None
            if run.returncode != 0:
                lines = [ln for ln in (run.stderr + run.stdout).splitlines() if ln.startswith(("error:", "ERROR:"))]
                reason = lines[-1][7:].strip() if lines else "the pipeline failed"
                verdict, failed, criteria, composite = "FAIL", ["pipeline"], [], None
                # Nothing the parent left behind may pass for this run's evidence.
                for stale in ("metrics.json", "reports/gate.json", "EVAL.md", "MODEL_CARD.md"):
                    (root / stale).unlink(missing_ok=True)
                import shutil as _shutil

                _shutil.rmtree(root / "reports" / "eval", ignore_errors=True)
                if failure_path.exists():
                    failure = json.loads(failure_path.read_text())
                    reason = failure["reason"]
                    failed = ["budget." + failure["limit"].split()[0].replace("max_", "")]
                    # keep the failure record in the fossil record of this candidate
                    (root / "reports" / "train_failure.record.json").write_text(failure_path.read_text())
            else:
                report = json.loads(report_path.read_text())
                verdict, failed, criteria, composite = (report["verdict"], report["failed"], report["criteria"],
                                                        report["composite"])
            _log_run(root, generation, run.returncode == 0, verdict, failed, reason)
            gate_hash = digest_bytes(report_path.read_bytes()) if report_path.exists() and run.returncode == 0 else "none"
            message = (f"{generation}-{name}: {verdict}{' (' + ', '.join(failed) + ')' if failed else ''}\n\n"
                       f"Generation: {generation}\nParent: {parent_gen or 'base'}\nVerdict: {verdict}\n"
                       f"Gate-Report: {gate_hash}")
            frozen = {"schema_version": 1, "generation": generation, "branch": branch, "parent": parent_gen,
                      "verdict": verdict, "failed": failed, "composite": composite, "reason": reason}
            # From here on the run is complete: a death before the freeze is finished by recovery.
            op.update(phase="reproduced", completed=run.returncode == 0, message=message, frozen=frozen)
            faults.point("propose:reproduced")
        except BaseException:
            recovery.go_home(root, protected, saved, None)
            raise
        commit = finish_propose(root, op)
    return Proposal(generation, branch, commit, parent_gen, verdict, failed, criteria, composite, reason)


def finish_propose(root: Path, op) -> str:
    """Push the run's data, commit, freeze, go home: each step once, also when recovery resumes it.

    Data goes to the DVC remote before the commit exists, so the candidate branch never points
    at weights the remote lacks; a death in between leaves only unreferenced data there.
    """
    from . import faults, recovery
    from .adapters import dvc

    d = op.data
    if recovery._ref(root, f"refs/heads/{d['branch']}") == d["base"]:
        if d["completed"]:
            pushed = dvc.dvc(["push", "-q"], cwd=root, check=False)
            if pushed.returncode != 0:
                recovery.log.warning("dvc push failed; the data stays in the local cache until 'lineage push'")
        faults.point("propose:pushed")
        _git(["add", "-A"], root)
        _git(["commit", "-q", "--allow-empty", "-m", d["message"]], root, env=_env(root))
        faults.point("propose:committed")
    commit = _git(["rev-parse", f"refs/heads/{d['branch']}"], root).stdout.strip()
    tag = f"{FROZEN_TAG}{d['generation']}-{d['name']}"
    if recovery._ref(root, f"refs/tags/{tag}") is None:
        frozen = {**d["frozen"], "commit": commit}
        _git(["tag", "-a", tag, "-m", json.dumps(frozen, sort_keys=True), commit], root, env=_env(root))
        faults.point("propose:frozen")
    recovery.go_home(root, d["protected"], d.get("pending") or {}, commit)
    return commit


def proposal_of(root: Path, journal: dict) -> Proposal:
    """The Proposal a finished candidate stands for, read back from its frozen tag and gate report."""
    from .adapters import git

    repo = git.open_repo(root)
    frozen = json.loads(repo[repo.references[f"refs/tags/{FROZEN_TAG}{journal['generation']}-{journal['name']}"]
                             .target].message)
    report = git.read_blob(repo, repo[frozen["commit"]], "reports/gate.json") if frozen["verdict"] == "PASS" else None
    criteria = json.loads(report)["criteria"] if report else []
    return Proposal(frozen["generation"], frozen["branch"], frozen["commit"], frozen.get("parent"), frozen["verdict"],
                    frozen.get("failed") or [], criteria, frozen.get("composite"), frozen.get("reason"))


def promote(candidate: str, store=".", approved_by: str | None = None, cycle: int | None = None,
            burn_in: bool = True) -> Promotion:
    """Fast-forward the protected branch to a gated candidate (compare-and-swap), then check out.

    The branch, the generation tag and the COMMIT event move in one ref transaction: all or none.
    """
    from . import faults, ledger, recovery
    from .adapters import git
    from .arbiter import check_move

    root, repo, protected = _open_clean(store)
    ref = repo.references.get(f"refs/heads/{candidate}") or repo.references.get(f"refs/heads/{CANDIDATE_PREFIX}{candidate}")
    if ref is None:
        raise UsageError(f"unknown candidate {candidate}", "List candidates with 'git branch --list candidates/*'.")
    new = str(ref.peel().id)
    old = str(git.tip(repo, protected).id)
    done = recovery.finished("promote", new=new)
    if done is not None:
        return done  # this very command was killed and recovery has just finished it
    if new == old:
        return _record_plain_git_promotion(root, repo, protected, candidate, new, approved_by, cycle, burn_in)
    with recovery.operation(root, "promote", candidate=candidate, protected=protected, old=old, new=new,
                            approved_by=approved_by, cycle=cycle, burn_in=burn_in) as op:
        faults.point("promote:journaled")
        import pygit2

        planted = None
        try:
            decision = check_move(repo, old, new, protected)
            tag = f"{GENERATION_TAG}{decision.generation}"
            planted = repo.references.get(f"refs/tags/{tag}")
            if planted is not None and str(planted.peel(pygit2.Commit).id) != new:
                raise ArbiterRefusedError(
                    f"refs/tags/{tag}", f"already points at {str(planted.peel(pygit2.Commit).id)[:12]}, not at the "
                    f"candidate {new[:12]}: a generation tag made outside 'lineage promote'",
                    f"Inspect it (git show {tag}); delete it locally (git tag -d {tag}) if the hub does not hold "
                    "it, then promote again.")
        except ArbiterRefusedError as exc:
            ledger.append(root, "ARBITER_VERIFY", _generation_of_branch(candidate),
                          {"candidate": candidate, "commit": new, "verdict": "REFUSED", "reason": exc.reason})
            raise
        ledger.append(root, "ARBITER_VERIFY", decision.generation,
                      {"candidate": candidate, "commit": new, "verdict": "PASS", "composite": decision.composite})
        faults.point("promote:verified")
        from .attest import attest

        attest(root, new, "promote", approved_by)  # signed and logged before anything moves
        updates = [(f"refs/heads/{protected}", new, old)]
        if planted is None:
            message = json.dumps({"generation": decision.generation, "commit": new, "previous": old,
                                  "approved_by": approved_by})
            updates.append((f"refs/tags/{tag}", recovery.make_tag(root, tag, new, message), None))
        with recovery.work_tree_lock(root, exclusive=True):
            try:
                # compare-and-swap: git refuses if the tip moved since we read it (a racing promoter).
                recovery.move_refs(root, updates, "COMMIT", decision.generation,
                                   {"old": old, "new": new, "ref": protected, "approved_by": approved_by,
                                    "cycle": cycle})
            except recovery.RefMovedError as exc:
                raise ArbiterRefusedError(f"refs/heads/{protected}", f"the protected branch moved while promoting "
                                          f"(now {str(exc.actual)[:12]})",
                                          "Another promotion won; re-gate the candidate with 'lineage propose'.") from None
            op.update(durable=True, generation=decision.generation, kind=decision.kind, composite=decision.composite)
            faults.point("promote:moved")
            recovery.sync_work_tree(root, protected, old, new)
        return finish_promote(root, op)


def _record_plain_git_promotion(root: Path, repo, protected: str, candidate: str, new: str, approved_by, cycle,
                                burn_in: bool) -> Promotion:
    """The protected branch already holds the candidate: record what a plain git merge skipped.

    `git merge --ff-only` passes the hook's arbiter but writes no generation tag, no COMMIT event,
    no weights and no burn-in. Promoting the same candidate again adds them (once), after the
    arbiter has judged the move once more. lineage writes the tag and the event in one
    transaction, and tags travel with every clone, so a tagged generation is recorded already.
    """
    from . import recovery
    from .arbiter import _generation_of, check_move

    commit = repo[new]
    parent = str(commit.parents[0].id) if commit.parents else None
    tag = f"refs/tags/{GENERATION_TAG}{_generation_of(repo, commit)}"
    if repo.references.get(tag) is not None:
        return Promotion(_generation_of(repo, commit), "already-promoted", parent, new)
    decision = check_move(repo, parent, new, protected)
    generation = decision.generation
    with recovery.operation(root, "promote", candidate=candidate, protected=protected, old=parent, new=new,
                            approved_by=approved_by, cycle=cycle, burn_in=burn_in) as op:
        updates = [(tag, recovery.make_tag(root, tag[len("refs/tags/"):], new, json.dumps(
            {"generation": generation, "commit": new, "previous": parent, "approved_by": approved_by})), None)]
        recovery.move_refs(root, updates, "COMMIT", generation, {"old": parent, "new": new, "ref": protected,
                                                                 "approved_by": approved_by, "cycle": cycle,
                                                                 "recorded_after": "a plain git move"})
        op.update(durable=True, generation=generation, kind=decision.kind, composite=decision.composite)
        return finish_promote(root, op)


def finish_promote(root: Path, op) -> Promotion:
    """After the move: work tree, weights, burn-in (rolling back on failure); also what recovery resumes."""
    from . import faults, ledger, recovery

    d = op.data
    recovery.sync_work_tree(root, d["protected"], d["old"], d["new"])
    from .adapters import dvc

    dvc.dvc(["checkout", "-q", "--force"], cwd=root, check=False)
    faults.point("promote:checked-out")
    generation = d["generation"]
    failure = None
    if d["burn_in"]:
        fresh = "burn_in_failure" not in d
        if fresh:
            from .burnin import run_burn_in

            op.update(burn_in_failure=run_burn_in(root), burn_in_logged=False)
        failure = d["burn_in_failure"]
        if not d["burn_in_logged"]:
            # resumed after a death between the append and the mark: the event may be there already
            if fresh or not any(e.event == "BURN_IN" and e.generation == generation and e.timestamp >= d["started"]
                                for e in ledger.read(root)):
                ledger.append(root, "BURN_IN", generation, {"passed": failure is None, "reason": failure,
                                                            "cycle": d["cycle"]})
            op.update(burn_in_logged=True)
        faults.point("promote:burned-in")
        if failure:
            if recovery._ref(root, f"refs/heads/{d['protected']}") == d["new"]:
                rollback(f"burn-in failed: {failure}", None, root, cycle=d["cycle"])
            return Promotion(generation, "rolled-back", d["old"], d["new"], d["composite"])
    return Promotion(generation, d["kind"], d["old"], d["new"], d["composite"])


def frozen_candidates(store=".") -> list[dict]:
    """Every frozen candidate (pass or fail) from its tag's JSON, oldest generation first."""
    from .adapters import git
    from .api import find_store
    from .arbiter import _generation_of

    root = find_store(store)
    repo = git.open_repo(root)
    gen_prefix, frozen_prefix = "refs/tags/" + GENERATION_TAG, "refs/tags/" + FROZEN_TAG
    promoted, frozen = set(), []
    for ref in repo.references.iterator():  # one pass over the refs: stores hold tens of thousands
        name = ref.name
        if name.startswith(gen_prefix):
            promoted.add(name[len(gen_prefix):])
        elif name.startswith(frozen_prefix):
            frozen.append(ref.target)
    tip = git.tip(repo, git.protected_branch(repo))
    head = _generation_of(repo, tip) if tip else None
    rows = []
    for target in frozen:
        try:
            data = json.loads(repo[target].message)
        except (ValueError, AttributeError):
            continue
        data["promoted"] = data.get("generation") in promoted
        data["head"] = data.get("generation") == head and data["promoted"]
        rows.append(data)
    return sorted(rows, key=lambda r: (r.get("generation", ""), r.get("branch", "")))

@dataclass(frozen=True)
class Rollback:
    """A forward commit on the protected branch restoring an earlier generation."""

    to: str
    frm: str | None
    commit: str
    reason: str


RESTORED = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md", "reports")


def rollback(reason: str, to: str | None = None, store=".", cycle: int | None = None) -> Rollback:
    """Restore a previously promoted generation as a new commit on the protected branch."""
    import pygit2

    from .adapters import dvc, git
    from .arbiter import _generation_of

    if not reason or not reason.strip():
        raise UsageError("a rollback needs a reason", "Pass --reason TEXT.")
    root, repo, protected = _open_clean(store)
    from . import recovery

    done = recovery.finished("rollback", reason=reason, to=to)
    if done is not None:
        return done  # this very command was killed and recovery has just finished it
    tip = git.tip(repo, protected)
    current = _generation_of(repo, tip) if tip else None
    promoted = []  # (generation, commit) along the first-parent history, newest first
    served = []    # generations main served, newest first, rollbacks included
    walker = repo.walk(tip.id, pygit2.enums.SortMode.TOPOLOGICAL)
    walker.simplify_first_parent()
    for commit in walker:
        info = git.trailers(commit.message)
        gen = info.get("Generation")
        if info.get("Rollback-To") or gen:
            served.append(info.get("Rollback-To") or gen)
        if gen and "Rollback-To" not in info and not any(g == gen for g, _ in promoted):
            promoted.append((gen, commit))
    if to is None:
        # the generation served just before the current one
        earlier = [g for g in served if g != current]
        if not earlier:
            raise UsageError("there is no earlier promoted generation to roll back to")
        to = earlier[0]
    target = dict(promoted).get(to)
    if target is None:
        raise ArbiterRefusedError(f"refs/heads/{protected}", f"{to} was never promoted on {protected}",
                                  "Roll back only to a generation listed as promoted by 'lineage log'.")
    if to == current:
        raise UsageError(f"{to} is already the served generation")
    md5 = (dvc.lock_outs(git.read_blob(repo, target, "dvc.lock")).get("train", {}).get("models/child") or {}).get("md5")
    cache = dvc.cache_dir(root)
    if not md5 or not dvc.cache_path(cache, md5).exists():
        from .pipeline.parent import _fetch_rev

        try:  # the target's weights, not the work tree's
            _fetch_rev(root, str(target.id))
        except Exception:  # noqa: BLE001 - any fetch failure ends in the one error below
            pass
        if not md5 or not dvc.cache_path(cache, md5).exists():
            raise IntegrityError(f"{to} weights", "not in the local cache nor the DVC remote; cannot restore")
    if _git(["symbolic-ref", "-q", "HEAD"], root, check=False).stdout.strip() != f"refs/heads/{protected}":
        _git(["checkout", "-q", protected], root)
    from . import faults

    old = str(tip.id)
    with recovery.operation(root, "rollback", protected=protected, old=old, to=to, frm=current, reason=reason,
                            cycle=cycle) as op:
        faults.point("rollback:journaled")
        # The restoring commit is built from trees, not the index: nothing moves until the transaction.
        builder = repo.TreeBuilder(tip.tree)
        for name in RESTORED:
            if name in target.tree:
                builder.insert(name, target.tree[name].id, target.tree[name].filemode)
            elif name in tip.tree:
                builder.remove(name)
        message = (f"rollback: {current} -> {to}\n\n{reason.strip()}\n\n"
                   f"Rollback-From: {current}\nRollback-To: {to}\nReason: {' '.join(reason.split())}")
        commit = _git(["commit-tree", str(builder.write()), "-p", old, "-m", message], root,
                      env=_env(root)).stdout.strip()
        op.update(new=commit)
        faults.point("rollback:built")
        from .attest import attest

        attest(root, commit, "rollback")  # signed and logged before anything moves
        with recovery.work_tree_lock(root, exclusive=True):
            try:
                recovery.move_refs(root, [(f"refs/heads/{protected}", commit, old)], "ROLLBACK", to,
                                   {"from": current, "to": to, "reason": reason, "commit": commit, "cycle": cycle})
            except recovery.RefMovedError as exc:
                raise ArbiterRefusedError(f"refs/heads/{protected}", f"the protected branch moved while rolling back "
                                          f"(now {str(exc.actual)[:12]})", "Run the rollback again.") from None
            op.update(durable=True)
            faults.point("rollback:moved")
            recovery.sync_work_tree(root, protected, old, commit)
        dvc.dvc(["checkout", "-q", "--force"], cwd=root, check=False)
        faults.point("rollback:checked-out")
    return Rollback(to, current, commit, reason)


def _generation_of_branch(name: str) -> str | None:
    match = GEN_RE.search(name)
    return match.group(0) if match else None


def _log_run(root: Path, generation: str, completed: bool, verdict: str, failed: list, reason: str | None) -> None:
    """Record what the pipeline run produced, step by step, in the evolution log."""
    from . import ledger

    reports = root / "reports"
    manifest = reports / "train" / "manifest.json"
    if manifest.exists():
        from .canonical import digest_obj

        ledger.append(root, "MANIFEST_FROZEN", generation, {"manifest": digest_obj(json.loads(manifest.read_text()))})
    failure = reports / "train_failure.json"
    if failure.exists():
        data = json.loads(failure.read_text())
        ledger.append(root, "BUDGET_EXCEEDED", generation, {"reason": data["reason"], "used": data.get("budget_used")})
    elif completed:
        train = json.loads((reports / "train" / "metrics.json").read_text())
        ledger.append(root, "TRAIN_COMPLETE", generation, {k: train.get(k) for k in
                      ("steps", "tokens", "wall_minutes", "peak_memory_mb", "loss_final", "weights_sha256")})
        metrics = json.loads((root / "metrics.json").read_text())
        child = metrics["child"]
        ledger.append(root, "EVAL_COMPLETE", generation, {"recall": child["recall"], "generalize": child["generalize"],
                                                          "tone_drift": metrics["tone_drift"],
                                                          "law_violations": child["law_violations"],
                                                          "verdict": verdict})
    if verdict != "PASS":
        ledger.append(root, "REJECT", generation, {"failed": failed, "reason": reason})


@dataclass(frozen=True)
class Change:
    """A person's approved change to policy, stages or code on the protected branch."""

    commit: str
    approver: str
    reason: str
    paths: list


def change(reason: str, store=".") -> Change:
    """Commit the staged changes on the protected branch as an approved change, logged APPROVE.

    Raises:
        UsageError: nothing is staged, or no reason was given.
    """
    from . import ledger
    from .adapters import git
    from .api import find_store

    if not reason or not reason.strip():
        raise UsageError("an approved change needs a reason", "Pass --reason TEXT.")
    root = find_store(store)
    repo = git.open_repo(root)
    protected = git.protected_branch(repo)
    if _git(["symbolic-ref", "-q", "HEAD"], root, check=False).stdout.strip() != f"refs/heads/{protected}":
        raise UsageError(f"check out {protected} first", f"git checkout {protected}")
    paths = _git(["diff", "--cached", "--name-only"], root).stdout.split()
    if not paths:
        raise UsageError("nothing is staged to change", "git add the policy, stage or code change first.")
    env = _env(root)
    name = env.get("GIT_AUTHOR_NAME") or _git(["config", "user.name"], root).stdout.strip()
    email = env.get("GIT_AUTHOR_EMAIL") or _git(["config", "user.email"], root).stdout.strip()
    approver = f"{name} <{email}>"
    one_line = " ".join(reason.split())
    message = f"change: {one_line[:60]}\n\n{reason.strip()}\n\nApproved-Change: 1\nApproved-By: {approver}\nReason: {one_line}"
    from .attest import commit_attested

    commit = commit_attested(root, message, "change", env)  # built, signed and logged, then moved
    ledger.append(root, "APPROVE", None, {"commit": commit, "approver": approver, "reason": one_line, "paths": paths})
    return Change(commit, approver, one_line, paths)
