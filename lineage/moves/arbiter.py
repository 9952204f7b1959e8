"""`lineage arbiter evaluate`: the arbiter measures a candidate itself and signs what it found.

Run by the arbiter, under its own identity and key, in its own clone of the store. Everything that
judges comes from main's tip (the candidate's parent): the policy, the visible exam, the evaluation
settings (batch size, max_new_tokens, seed) and the served generation; the sealed exam comes from
the arbiter's own directory and must be the one main pins. From the candidate it takes only its
weights (fetched by content and checked file by file), its registered deltas (which are new) and
its claims (metrics.json and the training record), which it compares with its own numbers.

    resolve → stale? → key → rules from main → sealed pin → deltas → weights (candidate, served)
    → overlap → measure (pipeline/evaluate.measure) → judge (moves/arbiter_judge.py) → sign → store
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from ..adapters import dvc, git, ssh
from ..core import sealed
from ..core.errors import ArbiterRefusedError, IntegrityError, LineageError, UsageError
from ..core.exam import SEALED_PIN
from ..core.hashes import parse_hashes_csv
from ..core.policy import Policy
from ..core.settings import OVERRIDES, Settings, merge_params
from ..guard import signers, verdict
from ..store import refs, weights
from ..store.exam import pin_digest, read_exam, sealed_pin
from . import arbiter_fetch as fetch
from . import arbiter_home as home_
from .arbiter_judge import Judgement, judge, overlaps

log = logging.getLogger("lineage")
TRAIN_METRICS = "reports/train/metrics.json"
PIN_HINT = ("Run 'lineage arbiter init' (or 'lineage arbiter seal FILE') and ask an approver to pin it: "
            "'lineage change --reason \"pin the sealed exam\"'.")


@dataclass(frozen=True)
class ArbiterKey:
    """The key the arbiter signs with, and who it is in the store."""

    path: Path
    fingerprint: str
    principal: str


@dataclass(frozen=True)
class Evaluation:
    """One signed verdict and what the summary shows."""

    verdict: str
    candidate: str
    generation: str | None
    commit: str
    ref: str
    ref_commit: str
    policy_commit: str
    served: dict[str, Any]
    new_deltas: list[str]
    failed: list[str]
    reasons: list[str]
    metrics: dict[str, Any]
    claimed: Any
    divergences: list[str]
    overlaps: list[str]
    gains: dict[str, Any]
    sealed_exam: str | None
    arbiter: str
    key: str
    pushed: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def arbiter_key(store, main) -> ArbiterKey:
    """The arbiter's signing key, listed with the arbiter role on main when main lists anyone.

    Raises:
        UsageError: no key is configured, or main's allowed_signers does not let it act as arbiter.
    """
    key = signers.signing_key(store.root)
    if key is None:
        raise UsageError("no signing key: the arbiter signs every verdict; run 'lineage keys init' and have an "
                         "approver list its .pub with the arbiter role (lineage-arbiter)",
                         "'lineage keys init' makes the key; an approver adds its line to allowed_signers on main "
                         "with the arbiter role and runs 'lineage change'.")
    public = ssh.public_key(key)
    print_ = ssh.fingerprint(public)
    listed = git.read_blob(store.repo, main, signers.SIGNERS_FILE)
    if not signers.requires(listed):
        return ArbiterKey(key, print_, signers.identity(store.root))
    for entry in signers.parse_signers(listed.decode(errors="replace")):
        if entry.public.split()[:2] == public.split()[:2] and \
                (entry.namespaces is None or verdict.NAMESPACE in entry.namespaces):
            principal = next((p for p in entry.principals if "*" not in p and "?" not in p), None)
            if principal:
                return ArbiterKey(key, print_, principal)
    raise UsageError(f"this store has no arbiter key {print_}: allowed_signers on main does not list it with the "
                     "arbiter role (lineage-arbiter)",
                     "Have an approver list its .pub with the arbiter role and run 'lineage change', or run "
                     "'lineage keys init' for the arbiter's own key.")


def resolve(store, candidate: str) -> tuple[str, str]:
    """(name, commit id) of a candidate given as a branch ('candidates/G001-a', 'G001-a') or a commit.

    Raises:
        UsageError: nothing by that name.
    """
    try:
        return candidate, refs.candidate_commit(store.repo, candidate)
    except UsageError:
        found = git.rev_parse(store.root, f"{candidate}^{{commit}}")
        if found is None:
            raise
        return candidate, found


def _blob_json(repo, commit, path: str) -> Any:
    blob = git.read_blob(repo, commit, path)
    if blob is None:
        return None
    try:
        return json.loads(blob)
    except ValueError:
        return None


def _main_rules(repo, main) -> tuple[Settings, Policy]:
    raw = git.read_blob(repo, main, "params.yaml")
    params = yaml.safe_load(raw) if raw is not None else {}
    return Settings.from_dict(params or {}), Policy.from_params(params or {})


def _sealed_items(store, main, home: Path) -> tuple[list[dict[str, Any]] | None, str | None]:
    """(the arbiter's sealed exam, the digest of main's pin file) or (None, None) when main pins none.

    Raises:
        UsageError: the arbiter's sealed exam is not the one main pins (rotated or expired), or it has none.
    """
    pin = sealed_pin(store.repo, main)
    if pin is None:
        return None, None
    items = home_.load_sealed(home)
    mine = sealed.digest(items) if items is not None else None
    if mine != pin.get("digest"):
        held = f"the arbiter holds {mine}" if mine else f"the arbiter holds none in {home}"
        raise UsageError(f"the sealed exam is rotated or expired: main's {SEALED_PIN} pins {pin.get('digest')}, "
                         f"{held}", PIN_HINT)
    return items, pin_digest(store.repo, main)


def _parent_dir(store, cache: Path, main, served: dict[str, Any] | None, settings: Settings, work: Path) -> Path:
    """The served generation, fetched by content and checked; the configured base before any."""
    if served is None:
        from ..pipeline.parent import build_base  # the scratch base, rebuilt from main's seed

        dest = work / "base"
        build_base(settings["base"], settings, dest)
        return dest
    if served["hashes"] is None:
        raise IntegrityError(f"generation {served['generation']}", "main serves it without a hashes.csv")
    return fetch.checked_weights(store, cache, main, served["hashes"], served["csv"],
                                 f"generation {served['generation']}", work / "parent").path


def evaluate(store, candidate: str, home: str | Path | None = None, push: str | None = None,
             main_commit: str | None = None, progress=None, name: str | None = None) -> Evaluation:
    """Measure a candidate against main's tip (or main_commit: a hub's main), judge, sign, store the verdict.

    name: what to call the candidate in the verdict (its branch) when `candidate` is a commit id.

    Raises:
        UsageError: the candidate is stale, no arbiter key, or the sealed exam is rotated or missing.
        IntegrityError: its weights are missing from the DVC remote or are not what hashes.csv lists.
        ArbiterRefusedError: it changes a registered delta, or its training record is missing.
    """
    say = progress or (lambda _message: None)
    repo, root = store.repo, store.root
    given, commit_id = resolve(store, candidate)
    name = name or given
    cand = git.peel_commit(repo, commit_id)
    main = git.peel_commit(repo, main_commit) if main_commit else store.tip()
    if main is None:
        raise UsageError("the protected branch has no commit yet", "Run 'lineage init' first.")
    ref = verdict.verdict_ref(str(cand.id))
    parents = [str(p.id) for p in cand.parents]
    if parents != [str(main.id)]:
        raise UsageError(f"{name} is stale: its parent {parents[0][:12] if parents else 'none'} is not the tip of "
                         f"{store.protected} ({str(main.id)[:12]}); re-propose it from there",
                         f"Train it again from {store.protected}: 'lineage propose'.")
    key = arbiter_key(store, main)
    settings, policy = _main_rules(repo, main)
    exam = read_exam(repo, main)
    home_path = home_.home_dir(home)
    sealed_all, sealed_exam = _sealed_items(store, main, home_path)

    main_deltas, cand_deltas = fetch.delta_files(repo, main), fetch.delta_files(repo, cand)
    fetch.registered_change(main_deltas, cand_deltas, name)
    served = fetch.served_at(store, main)
    seen = list((served or {}).get("manifest", {}).get("deltas_seen") or [])
    new = sorted(d for d in (fetch.delta_id(p) for p in cand_deltas) if d not in seen)
    probes = exam.probes_for(seen, new)
    sealed_probes = sealed.for_deltas(sealed_all, new) if sealed_all is not None else None
    asked = {i["delta"] for i in probes["generalize"]}
    unasked = [d for d in new if d not in asked]

    rows_blob = git.read_blob(repo, cand, weights.HASHES_CSV)
    train = _blob_json(repo, cand, TRAIN_METRICS)
    if rows_blob is None or not isinstance(train, dict) or train.get("status") != "COMPLETE":
        raise ArbiterRefusedError(name, "it has no trained weights to judge (no hashes.csv or no complete training "
                                        f"record in {TRAIN_METRICS}): its run failed",
                                  "Nothing to evaluate; propose a new candidate.")
    rows = parse_hashes_csv(rows_blob.decode())
    work = fetch.work_dir(root, f"{str(cand.id)[:12]}-{os.getpid()}")
    try:
        say(f"{name}: fetching and checking its weights")
        cache = dvc.cache_dir(root)
        child = fetch.checked_weights(store, cache, cand, rows, rows_blob, f"{name} models/child", work / "child")
        if train.get("weights_sha256") != child.digest:
            raise IntegrityError(f"{name} {TRAIN_METRICS}", f"claims weights {train.get('weights_sha256')}, but "
                                                            f"hashes.csv is {child.digest}")
        say(f"{name}: fetching and checking the served generation")
        parent_dir = _parent_dir(store, cache, main, served, settings, work)
        records = [r for path, blob in sorted(cand_deltas.items()) if fetch.delta_id(path) in new
                   for r in fetch.delta_records(store, cache, cand, path, blob)]
        exam_items = [("visible", kind, item) for kind in ("generalize", "tone") for item in exam.of(kind)]
        exam_items += [("sealed", "generalize", item) for item in (sealed_all or [])]
        found = overlaps(exam_items, records)
        say(f"{name}: measuring child and parent on main's exam"
            + (f" and {len(sealed_probes)} sealed items" if sealed_probes else ""))
        from ..pipeline.evaluate import measure

        measured = measure(child.path, parent_dir, probes, seed=settings["seed"],
                           batch_size=settings["eval"]["batch_size"],
                           max_new_tokens=settings["eval"]["max_new_tokens"], parent_is_generation=served is not None,
                           sealed=sealed_probes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    claimed = _blob_json(repo, cand, "metrics.json")
    hashes = {"child_weights": child.digest, "exam": exam.digest(), "policy_commit": str(main.id)}
    source = {"ref": store.protected, "commit": str(main.id),
              "candidate_policy_differs": _policy_differs(repo, cand, policy)}
    judged = judge(policy, measured.metrics, train, child.output_mb, claimed, measured.sealed, found, hashes,
                   source, unasked)
    metrics = {**measured.metrics, "sealed": measured.sealed, "gains": judged.gains, "output_mb": child.output_mb,
               "composite": judged.report.composite, "parent_composite": judged.report.parent_composite,
               "criteria": [c.to_dict() for c in judged.report.criteria]}
    generation = git.trailers(cand.message).get("Generation") or refs.generation_of_name(name)
    served_view = {"generation": (served or {}).get("generation"), "commit": str(main.id)}
    predicate = {"verdict": judged.verdict, "failed": judged.failed, "reasons": judged.reasons,
                 "generation": generation, "candidate": name, "policy_commit": str(main.id),
                 "policy": policy.digest(), "exam": exam.digest(), "sealed_exam": sealed_exam, "served": served_view,
                 "metrics": metrics, "claimed": claimed, "divergences": judged.divergences, "arbiter": key.principal,
                 "key": key.fingerprint, "evaluated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "lineage_version": _version()}
    notes = [] if sealed_exam else [f"main pins no sealed exam ({SEALED_PIN}): judged without the sealed rule"]
    if sealed_probes == [] and new:
        notes.append(f"the sealed exam asks nothing about {', '.join(new)}: the sealed rule had nothing to compare")
    predicate["notes"] = notes
    signed = verdict.sign(key.path, verdict.statement(name, str(cand.id), child.digest, predicate))
    if push:  # grow the remote's chain of verdicts on this candidate, so the push is a fast-forward
        tip = verdict.remote_tip(store, push, str(cand.id))
        if tip:
            verdict.adopt(store, str(cand.id), tip)
    ref_commit = verdict.store(store, signed)
    pushed = None
    if push:
        verdict.push(store, push, str(cand.id))
        pushed = push
    return _evaluation(judged, name, generation, str(cand.id), ref, ref_commit, str(main.id), served_view, new,
                       metrics, claimed, sealed_exam, key, pushed, notes)


def _evaluation(judged: Judgement, name, generation, commit, ref, ref_commit, main, served, new, metrics, claimed,
                sealed_exam, key: ArbiterKey, pushed, notes) -> Evaluation:
    return Evaluation(judged.verdict, name, generation, commit, ref, ref_commit, main, served, new, judged.failed,
                      judged.reasons, metrics, claimed, judged.divergences, judged.overlaps, judged.gains,
                      sealed_exam, key.principal, key.fingerprint, pushed, notes)


def _policy_differs(repo, cand, policy: Policy) -> bool:
    """Whether the candidate trained under a policy of its own (params.yaml with its overrides.yaml)."""
    raw, overrides = git.read_blob(repo, cand, "params.yaml"), git.read_blob(repo, cand, OVERRIDES)
    try:
        params = merge_params(yaml.safe_load(raw or b"") or {}, yaml.safe_load(overrides or b"") or {})
        return Policy.from_params(params).to_dict() != policy.to_dict()
    except (LineageError, yaml.YAMLError, AttributeError, TypeError):
        return True


def _version() -> str:
    try:
        return version("lineage")
    except PackageNotFoundError:
        return "unknown"
