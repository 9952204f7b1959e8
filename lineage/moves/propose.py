"""propose: fork a candidate from the protected tip, run the pipeline, commit, push data, freeze.

A failed or over-budget run is committed and frozen the same way, with its reason: the record
keeps every attempt.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..adapters import dvc, git
from ..core import faults
from ..core.canonical import digest_bytes, digest_obj
from ..core.errors import UsageError
from ..core.policy import Policy
from ..core.settings import OVERRIDES, Settings, load_yaml, merge_params, overrides_text, parse_overrides
from ..store import journal, ledger, protected_state, recipe, refs, transaction, waiting
from ..store.journal import Operation

log = logging.getLogger("lineage")


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


def overridden_params(root: Path, overrides: list[str]) -> dict | None:
    """params.yaml with -S key=value overrides merged in, validated; None when there are none.

    Raises:
        ParamsError: an override names an unknown key or a bad value (a typo is caught here, before
            any branch, log event or generation number is spent).
    """
    if not overrides:
        return None
    params = merge_params(load_yaml(root / "params.yaml"), parse_overrides(overrides))
    Settings.from_dict(params)
    Policy.from_params(params)
    return params


def write_overrides(root: Path, overrides: list[str], candidate: str) -> None:
    """Record the candidate's own -S overrides in overrides.yaml (validated first; {} without any).

    params.yaml is left as the protected branch has it, comments and all: a promotion never turns
    one experiment's overrides into the store's settings.
    """
    overridden_params(root, overrides)
    (root / OVERRIDES).write_text(overrides_text(parse_overrides(overrides), candidate))


def propose(store, name: str = "a", overrides: list[str] | None = None, progress=None,
            generation: str | None = None, again: bool = False) -> Proposal:
    """Fork a candidate from the protected tip, run the pipeline, commit, push data, freeze.

    A failed or over-budget run is committed and frozen the same way, with its reason.

    again: train even when the recipe is exactly that of a generation the protected branch rolled back.

    Raises:
        UsageError: a bad candidate name, or the candidate exists already.
        RolledBackRecipeError: the recipe is exactly a rolled-back generation's (and not again).
        DirtyTreeError: the work tree has changes of its own.
    """
    carried = transaction.require_clean(store, allow_outputs=True)
    done = journal.finished("propose", name=name, overrides=list(overrides or []), generation=generation)
    if done is not None:
        return done  # this very command was killed and recovery has just finished it
    if not re.fullmatch(r"[a-z0-9]+", name):
        raise UsageError(f"candidate name {name!r} must be lowercase letters or digits", "Use e.g. --name a.")
    root, repo = store.root, store.repo
    overridden_params(root, overrides or [])  # refuse a typo in -S before anything is created
    if not again:  # training is seeded: the same recipe would only make that generation again
        recipe.refuse_rolled_back(store, overrides or [])
    tip = store.tip()
    parent_gen = refs.served_generation(tip) if tip is not None else None
    generation = generation or refs.next_generation(repo)  # a window's candidates share one number
    branch = refs.candidate_branch(generation, name)
    if repo.references.get(f"refs/heads/{branch}") is not None or \
            repo.references.get(f"refs/tags/{refs.frozen_tag(generation, name)}") is not None:
        raise UsageError(f"{branch} exists already", "Pick another --name; candidate names are never reused.")
    pending = transaction.pending_data(store)
    saved = {p: (root / p).read_text() for p in pending if (root / p).is_file()}
    waiting.place(store)  # registered data, staged just now: the candidate branch takes the index along
    with journal.operation(store, "propose", keep_on_error=True, protected=store.protected, branch=branch,
                           generation=generation, name=name, overrides=list(overrides or []), parent=parent_gen,
                           base=str(tip.id), pending=saved) as op:
        git.checkout(root, branch, create_from=store.protected)
        faults.point("propose:branched")
        try:
            write_overrides(root, overrides or [], branch)
            ledger.append(store, "PROPOSE", generation, {"branch": branch, "parent": parent_gen,
                                                         "overrides": list(overrides or [])})
            faults.point("propose:logged")
            if progress:
                progress(f"{branch}: running the pipeline (dvc repro)" + (
                    "; it takes the outputs of the dvc repro you ran and re-runs only what changed"
                    if carried else ""))
            # DVC learns from this file whether the protected branch moved since the outputs were made
            protected_state.refresh(store)
            if carried:  # the gate names the attempt in its card: judge again on this branch
                (root / "reports" / "gate.json").unlink(missing_ok=True)
            run = dvc.repro(root, echo=progress)
            verdict, failed, criteria, composite, reason = _outcome(root, run)
            _log_run(store, generation, run.returncode == 0, verdict, failed, reason)
            report_path = root / "reports" / "gate.json"
            gate_hash = (digest_bytes(report_path.read_bytes())
                         if report_path.exists() and run.returncode == 0 else "none")
            message = (f"{generation}-{name}: {verdict}{' (' + ', '.join(failed) + ')' if failed else ''}\n\n"
                       f"Generation: {generation}\nParent: {parent_gen or 'base'}\nVerdict: {verdict}\n"
                       f"Gate-Report: {gate_hash}")
            frozen = {"schema_version": 1, "generation": generation, "branch": branch, "parent": parent_gen,
                      "verdict": verdict, "failed": failed, "composite": composite, "reason": reason}
            # From here on the run is complete: a death before the freeze is finished by recovery.
            op.update(phase="reproduced", completed=run.returncode == 0, message=message, frozen=frozen)
            faults.point("propose:reproduced")
        except BaseException:
            transaction.go_home(store, saved, None)
            raise
        commit = finish_propose(store, op)
    return Proposal(generation, branch, commit, parent_gen, verdict, failed, criteria, composite, reason)


def _outcome(root: Path, run) -> tuple[str, list, list, float | None, str | None]:
    """(verdict, failed, criteria, composite, reason) of a pipeline run, from its reports."""
    if run.returncode == 0:
        report = json.loads((root / "reports" / "gate.json").read_text())
        return report["verdict"], report["failed"], report["criteria"], report["composite"], None
    # The stage's own error line (run_stage prints "error: …") says why; DVC's "ERROR: failed to
    # reproduce 'train': … exited with 1" only says which stage.
    output = (run.stderr + run.stdout).splitlines()
    ours = [ln.strip()[len("error:"):].strip() for ln in output if ln.strip().startswith("error:")]
    dvcs = [ln.strip()[len("ERROR:"):].strip() for ln in output if ln.strip().startswith("ERROR:")]
    reason = ours[-1] if ours else dvcs[-1] if dvcs else "the pipeline failed"
    failed = ["pipeline"]
    # Nothing the parent left behind may pass for this run's evidence.
    for stale in ("metrics.json", "reports/gate.json", "EVAL.md", "MODEL_CARD.md"):
        (root / stale).unlink(missing_ok=True)
    shutil.rmtree(root / "reports" / "eval", ignore_errors=True)
    failure_path = root / "reports" / "train_failure.json"
    if failure_path.exists():
        failure = json.loads(failure_path.read_text())
        reason = failure["reason"]
        failed = ["budget." + failure["limit"].split()[0].replace("max_", "")]
        # keep the failure record in the fossil record of this candidate
        (root / "reports" / "train_failure.record.json").write_text(failure_path.read_text())
    return "FAIL", failed, [], None, reason


def finish_propose(store, op: Operation) -> str:
    """Push the run's data, commit, freeze, go home: each step once, also when recovery resumes it.

    Data goes to the DVC remote before the commit exists, so the candidate branch never points
    at weights the remote lacks; a death in between leaves only unreferenced data there.
    """
    root, d = store.root, op.data
    if git.rev_parse(root, f"refs/heads/{d['branch']}") == d["base"]:
        if d["completed"] and not dvc.push(root):
            log.warning("dvc push failed; the data stays in the local cache until 'lineage push'")
        faults.point("propose:pushed")
        git.add_all(root)
        git.commit(root, d["message"], env=store.env(), allow_empty=True)
        faults.point("propose:committed")
    commit = git.rev_parse(root, f"refs/heads/{d['branch']}")
    assert commit is not None  # the candidate branch holds the run's commit
    tag = refs.frozen_tag(d["generation"], d["name"])
    if git.rev_parse(root, f"refs/tags/{tag}") is None:
        frozen = {**d["frozen"], "commit": commit}
        git.tag(root, tag, commit, json.dumps(frozen, sort_keys=True), env=store.env())
        faults.point("propose:frozen")
    transaction.go_home(store, d.get("pending") or {}, commit)
    return commit


def proposal_of(store, data: dict) -> Proposal:
    """The Proposal a finished candidate stands for, read back from its frozen tag and gate report."""
    repo = store.repo
    frozen = refs.frozen_record(repo, data["generation"], data["name"]) or {}
    report = git.read_blob(repo, repo[frozen["commit"]], "reports/gate.json") if frozen["verdict"] == "PASS" else None
    criteria = json.loads(report)["criteria"] if report else []
    return Proposal(frozen["generation"], frozen["branch"], frozen["commit"], frozen.get("parent"), frozen["verdict"],
                    frozen.get("failed") or [], criteria, frozen.get("composite"), frozen.get("reason"))


def _log_run(store, generation: str, completed: bool, verdict: str, failed: list, reason: str | None) -> None:
    """Record what the pipeline run produced, step by step, in the evolution log."""
    reports = store.root / "reports"
    manifest = reports / "train" / "manifest.json"
    if manifest.exists():
        ledger.append(store, "MANIFEST_FROZEN", generation, {"manifest": digest_obj(json.loads(manifest.read_text()))})
    failure = reports / "train_failure.json"
    if failure.exists():
        data = json.loads(failure.read_text())
        ledger.append(store, "BUDGET_EXCEEDED", generation, {"reason": data["reason"], "used": data.get("budget_used")})
    elif completed:
        train = json.loads((reports / "train" / "metrics.json").read_text())
        ledger.append(store, "TRAIN_COMPLETE", generation, {k: train.get(k) for k in
                      ("steps", "tokens", "wall_minutes", "peak_memory_mb", "loss_final", "weights_sha256")})
        metrics = json.loads((store.root / "metrics.json").read_text())
        child = metrics["child"]
        ledger.append(store, "EVAL_COMPLETE", generation, {"recall": child["recall"], "generalize": child["generalize"],
                                                           "tone_drift": metrics["tone_drift"],
                                                           "law_violations": child["law_violations"],
                                                           "verdict": verdict})
    if verdict != "PASS":
        ledger.append(store, "REJECT", generation, {"failed": failed, "reason": reason})
