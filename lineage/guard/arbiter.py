"""The arbiter: may the protected branch move from commit A to commit B?

Used by `lineage promote`, by the reference-transaction hook and by the hub's receive hook. It
re-derives the verdict from evidence in B and the policy of A; it never trusts B's own report
or B's own policy, and never retrains: cost is independent of model size.

Once the replaced commit's allowed_signers lists anyone, the evidence in B is only a claim: a
promotion also needs the arbiter's signed verdict (PASS, about exactly B and its weights, judged
under A's policy, exam and sealed exam) and, unless A's policy has ``autonomy: auto`` and the risk
rule says low, an approver's signed approval; a rollback and an approved change need the signature
of a role allowed to sign them (signers.ACTION_ROLES).

Gather, then judge: ``evidence.gather_move`` reads git (and checks signatures with ssh-keygen);
``judge_move`` decides over plain data and is tested from data files (``tests/data/moves``), one
case per refusal reason.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, replace

import yaml

from ..core.canonical import digest_bytes, digest_obj
from ..core.errors import ArbiterRefusedError, LineageError
from ..core.gate import judge
from ..core.metrics import BudgetUsed, EvalMetrics
from ..core.policy import Policy
from ..core.settings import OVERRIDES, merge_params
from .evidence import DELTA_DVC, RESTORED, ROLLBACK_FILES, SIGNERS_FILE, DeltaFile, MoveEvidence, as_bytes, gather_move
from .signed import ApprovalMissingError, judge_signatures
from .signers import one_key_one_role, parse_signers

__all__ = ["ApprovalMissingError", "Decision", "check_move", "check_signed_move", "judge_move"]

# What a generation commit may touch relative to its parent commit.
GENERATION_PATHS = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md", "reports/*", "reports/**",
                    "data/deltas/*.dvc", "data/deltas/.gitignore", "data/.gitignore", "params.yaml", OVERRIDES)
# What an approved change may never touch: the evidence of the served generation (with the -S
# overrides it trained with).
EVIDENCE = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md", OVERRIDES)


@dataclass(frozen=True)
class Decision:
    """Why a move is allowed (signed: what signatures it carries, in a store with signers)."""

    kind: str  # "promotion" | "rollback" | "change" | "create" | "noop"
    generation: str | None
    verdict: str | None
    composite: float | None
    signed: str | None = None
    claims_failed: tuple[str, ...] = ()  # criteria the proposer's own numbers fail (a claim, with signers)


def check_move(repo, old_id: str | None, new_id: str, protected: str = "main") -> Decision:
    """Allow or refuse moving refs/heads/<protected> from old_id to new_id.

    Raises:
        ArbiterRefusedError: with the first reason the move is not allowed.
    """
    return judge_move(gather_move(repo, old_id, new_id, protected))


def judge_move(ev: MoveEvidence) -> Decision:
    """Decide a move from its evidence alone (pure).

    Raises:
        ArbiterRefusedError: with the first reason the move is not allowed.
    """
    ref = ev.ref
    if ev.new is None:
        raise ArbiterRefusedError(ref, "deleting the protected branch is never allowed")
    if ev.old is None:
        # Creating the branch: only a store's init commit may start it.
        if ev.new_root_init:
            return Decision("create", None, None, None)
        raise ArbiterRefusedError(ref, "the protected branch may only be created by 'lineage init'")
    if ev.old == ev.new:
        return Decision("noop", None, None, None)
    if ev.new_parents != [ev.old]:
        if ev.descends:
            raise ArbiterRefusedError(ref, f"{ev.new[:12]} is not a single generation commit on top of "
                                           f"{ev.old[:12]}", "Promote one gated candidate at a time.")
        raise ArbiterRefusedError(ref, f"not a fast-forward: {ev.new[:12]} does not descend from the tip "
                                       f"{ev.old[:12]}", "The candidate is stale: re-run 'lineage propose'.")
    named = [t for t in ("Generation", "Rollback-To") if t in ev.trailers]
    if "Approved-Change" in ev.trailers and named:
        raise ArbiterRefusedError(ref, f"an approved change carries a {named[0]}: trailer; an approved change is never "
                                       "read as a generation",
                                  "Promote or roll back with 'lineage promote' or 'lineage rollback'; change policy, "
                                  "exam, code or signers with 'lineage change'.")
    if "Rollback-To" in ev.trailers:
        decision = _judge_rollback(ev)
    elif "Approved-Change" in ev.trailers:
        decision = _judge_approved_change(ev)
    else:
        generation = ev.trailers.get("Generation")
        if not generation:
            raise ArbiterRefusedError(ref, "the commit is not a lineage generation (no Generation: trailer)",
                                      "Train a candidate with 'lineage propose' and promote it.")
        _judge_generation_paths(ev)
        decision = _judge_evidence(ev, generation)
    # In a store with signers the evidence is a claim: the signatures it requires come on top.
    return replace(decision, signed=judge_signatures(ev, decision.kind, decision.generation,
                                                     decision.claims_failed))


def _mapping_of(text: str | None, ref: str, whose: str, name: str = "params.yaml") -> dict:
    """A params.yaml (or overrides.yaml) text as a mapping; a file that is not a YAML mapping is refused."""
    try:
        params = yaml.safe_load(text or "") or {}
    except yaml.YAMLError:
        params = None
    if not isinstance(params, dict):
        raise ArbiterRefusedError(ref, f"{whose} {name} is not a YAML mapping",
                                  f"{name} must stay a mapping of settings; fix it on the candidate.")
    return params


def _policy_of(text: str | None, ref: str, whose: str, overrides: str | None = None):
    """The policy section of a params.yaml text, with the overrides.yaml text merged on top."""
    params = _mapping_of(text, ref, whose)
    if overrides is not None:
        params = merge_params(params, _mapping_of(overrides, ref, whose, OVERRIDES))
    return params.get("policy")


def _judge_generation_paths(ev: MoveEvidence) -> None:
    """A generation touches only its evidence, registered deltas and (not the policy of) params.yaml."""
    ref = ev.ref
    for path in ev.changed:
        if path in ("params.yaml", OVERRIDES):
            continue
        if path == SIGNERS_FILE:
            raise ArbiterRefusedError(ref, f"the candidate edits {SIGNERS_FILE}, "
                                           "the list of who may propose, judge and approve",
                                      "Signers change only by a person's approved change: 'lineage keys allow', "
                                      "then 'lineage change'.")
        if not any(fnmatch.fnmatch(path, pattern) for pattern in GENERATION_PATHS):
            raise ArbiterRefusedError(ref, f"the candidate changes {path}, which a generation may not touch",
                                      "Changes to code, stages or hooks need a person's approved change, "
                                      "not a promotion.")
        if path in ev.replaced_deltas:
            raise ArbiterRefusedError(ref, f"the candidate {'changes' if path in ev.delta_files else 'removes'} "
                                           f"{path}, a registered delta: registered deltas only grow",
                                      "Register new data as a new delta with 'lineage data add FILE'; what main "
                                      "has registered stays as it is.")
        if fnmatch.fnmatch(path, DELTA_DVC) and path in ev.delta_files:
            _judge_delta_dvc_file(ref, path, ev.delta_files[path])
    if {"params.yaml", OVERRIDES} & set(ev.changed) and \
            _policy_of(ev.new_files.get("params.yaml"), ref, "the candidate's", ev.new_files.get(OVERRIDES)) != \
            _policy_of(ev.old_files.get("params.yaml"), ref, f"{ev.protected}'s"):
        raise ArbiterRefusedError(ref, "the candidate edits the policy it is judged by",
                                  "Policy changes need a person's approved change, never a promotion.")


def _judge_delta_dvc_file(ref: str, path: str, entry: DeltaFile) -> None:
    """A delta's .dvc file may only track the data file beside it, as `lineage data add` writes it.

    `dvc checkout` (run by promote and pull) writes an out wherever its path points: a path with
    '..' or a 'wdir' would let a generation overwrite stage scripts or dvc.yaml with bytes it put in
    the DVC remote, code no person approved.
    """
    expected = posixpath.basename(path)[:-len(".dvc")]
    hint = "Register data with 'lineage data add FILE'; it writes the .dvc file."
    if not entry.regular:
        raise ArbiterRefusedError(ref, f"{path} is not a regular file; a delta's .dvc file may only track {expected}",
                                  hint)
    try:
        data = yaml.safe_load(entry.text or "")
    except yaml.YAMLError:
        data = None
    outs = data.get("outs") if isinstance(data, dict) else None
    paths = [o.get("path") if isinstance(o, dict) else o for o in outs] if isinstance(outs, list) else []
    if not paths or not isinstance(data, dict) or set(data) != {"outs"} or any(p != expected for p in paths):
        shown = ", ".join(repr(p) for p in paths) or "nothing readable"
        extra = (f" (with {', '.join(sorted(set(data) - {'outs'}))})"
                 if isinstance(data, dict) and set(data) - {"outs"} else "")
        raise ArbiterRefusedError(ref, f"{path} tracks {shown}{extra}; a delta's .dvc file may only track "
                                       f"{expected}, the file beside it", hint)


def _judge_evidence(ev: MoveEvidence, generation: str) -> Decision:
    """Re-derive the verdict from the candidate's evidence under the replaced commit's policy."""
    ref, files = ev.ref, ev.new_files
    metrics_raw, budget_raw, report_raw = (as_bytes(files.get(p)) for p in
                                           ("metrics.json", "reports/train/metrics.json", "reports/gate.json"))
    try:
        policy = Policy.from_params(yaml.safe_load(ev.old_files.get("params.yaml") or "") or {})
        if metrics_raw is None or budget_raw is None or report_raw is None:
            raise ArbiterRefusedError(ref, "the candidate commit lacks metrics.json, reports/train/metrics.json "
                                           "or reports/gate.json", "Re-run 'lineage propose'.")
        if files.get("reports/train/hashes.csv") is None:
            raise ArbiterRefusedError(ref, "the candidate commit lacks reports/train/hashes.csv, the sha256 record "
                                           "of its weights", "Re-run 'lineage propose'.")
        metrics = EvalMetrics.from_dict(json.loads(metrics_raw))
        budget_dict = _mapping(json.loads(budget_raw), "reports/train/metrics.json")
        budget = BudgetUsed.from_dict(budget_dict)
        report = _mapping(json.loads(report_raw), "reports/gate.json")
        manifest_raw = as_bytes(files.get("reports/train/manifest.json"))
        manifest = None if manifest_raw is None else _mapping(json.loads(manifest_raw), "reports/train/manifest.json")
        stages = _mapping(yaml.safe_load(files.get("dvc.lock") or "") or {}, "dvc.lock").get("stages") or {}
        eval_outs = {o["path"]: _mapping(o, "dvc.lock out") for o in (stages.get("eval") or {}).get("outs", [])}
        train_outs = {o["path"] for o in (stages.get("train") or {}).get("outs", [])}
    except ArbiterRefusedError:
        raise
    except (LineageError, ValueError, yaml.YAMLError, TypeError, AttributeError, KeyError) as exc:
        raise ArbiterRefusedError(ref, f"unreadable evidence: {exc}") from None

    # The evidence must be the evidence: hashes in the report match the committed files.
    hashes = report.get("hashes")
    if not isinstance(hashes, dict):
        hashes = {}
    if hashes.get("metrics") != digest_bytes(metrics_raw):
        raise ArbiterRefusedError(ref, "metrics.json does not match the hash the gate report judged")
    if hashes.get("hashes_csv") != digest_bytes(as_bytes(files.get("reports/train/hashes.csv")) or b""):
        raise ArbiterRefusedError(ref, "reports/train/hashes.csv does not match the gate report")
    if manifest is None or hashes.get("manifest") != digest_obj(manifest) \
            or budget_dict.get("manifest_digest") != hashes.get("manifest"):
        raise ArbiterRefusedError(ref, "the evolution manifest does not match the gate report")
    if not hashes.get("child_weights"):
        raise ArbiterRefusedError(ref, "the gate report names no weights digest: nothing binds its verdict to weights")
    if hashes.get("child_weights") != budget_dict.get("weights_sha256"):
        raise ArbiterRefusedError(ref, "the weights digest in the gate report differs from the training record")
    if eval_outs.get("metrics.json", {}).get("md5") != hashlib.md5(metrics_raw).hexdigest():
        raise ArbiterRefusedError(ref, "dvc.lock's metrics.json hash does not match the committed metrics.json")
    if "models/child" not in train_outs:
        raise ArbiterRefusedError(ref, "dvc.lock records no trained weights (models/child)")

    # The parent must be the current generation of A.
    parent = manifest.get("parent")
    parent_gen = parent.get("generation") if isinstance(parent, dict) else None
    if parent_gen != ev.served_by_old:
        raise ArbiterRefusedError(ref, f"the candidate was trained from {parent_gen or 'the base'}, but the "
                                       f"protected branch serves {ev.served_by_old or 'no generation'}",
                                  "The candidate is stale: re-run 'lineage propose' from the current tip.")

    verdict = judge(policy, metrics, budget, hashes=hashes, policy_source={"ref": ev.protected, "commit": ev.old})
    if verdict.verdict != "PASS" and not (ev.signed is not None and ev.signed.required):
        raise ArbiterRefusedError(ref, f"{generation} fails the gate under {ev.protected}'s policy: "
                                       f"{', '.join(verdict.failed)}", "Train a better candidate.")
    # With signers the proposer's numbers are only a claim: the arbiter's signed verdict, judged next
    # on its own measurements, decides (a claim a little under a threshold must not refuse what it passed).
    return Decision("promotion", generation, verdict.verdict, verdict.composite,
                    claims_failed=tuple(verdict.failed))


def _mapping(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{name} is not a mapping")
    return value


def _judge_rollback(ev: MoveEvidence) -> Decision:
    """A rollback may only restore a generation that was promoted before, exactly as it was."""
    ref, target = ev.ref, ev.trailers["Rollback-To"]
    for path in ev.changed:
        # a rollback restores evidence only: never code, policy, data or who may sign
        if path not in EVIDENCE and not path.startswith("reports/"):
            raise ArbiterRefusedError(ref, f"the rollback changes {path}; a rollback may only restore a "
                                           "generation's dvc.lock, metrics, reports and cards")
    if ev.rollback_target_files is None:
        raise ArbiterRefusedError(ref, f"{target} was never promoted on this branch; a rollback can only restore "
                                       "a promoted generation", "See 'lineage log' for promoted generations.")
    for path in ROLLBACK_FILES:
        if ev.rollback_target_files.get(path) != ev.new_files.get(path):
            raise ArbiterRefusedError(ref, f"the rollback's {path} differs from {target}'s")
    if ev.rollback_target_ids is not None:
        for name in RESTORED:  # the gate report, cards and every other report, as the generation had them
            if ev.rollback_target_ids.get(name) != ev.new_ids.get(name):
                raise ArbiterRefusedError(ref, f"the rollback's {name} differs from {target}'s")
    return Decision("rollback", target, None, None)


def _judge_approved_change(ev: MoveEvidence) -> Decision:
    """A person's change to policy, stages or code: approved by name, never touching a generation.

    Without signatures (see the security page) the approval is a recorded claim, not a proof;
    the hub is where a team restricts who may push it.
    """
    ref = ev.ref
    approver = ev.trailers.get("Approved-By", "").strip()
    if not re.fullmatch(r"[^<>]*<[^<>\s]+@[^<>\s]+>", approver):
        raise ArbiterRefusedError(ref, "an approved change needs an 'Approved-By: Name <email>' trailer",
                                  "Use 'lineage change --reason TEXT' on the protected branch.")
    if not ev.trailers.get("Reason", "").strip():
        raise ArbiterRefusedError(ref, "an approved change needs a 'Reason:' trailer")
    for path in ev.changed:
        if path in EVIDENCE or path.startswith("reports/") or path.startswith("models/"):
            raise ArbiterRefusedError(ref, f"an approved change may not touch {path}: generations move only "
                                           "by promotion or rollback")
    if SIGNERS_FILE in ev.changed:
        _judge_signers_file(ev)
    return Decision("change", ev.served_by_old, None, None)


def _judge_signers_file(ev: MoveEvidence) -> None:
    """A new allowed_signers keeps one key to one role, and once it listed anyone it never lists no one."""
    ref, text = ev.ref, ev.new_files.get(SIGNERS_FILE) or ""
    hint = ("One key holds one role: list each key once, with one of namespaces=\"lineage-propose\", "
            "\"lineage-arbiter\" or \"lineage-approve\" ('lineage keys allow PRINCIPAL KEY --role ROLE').")
    if problem := one_key_one_role(text):
        raise ArbiterRefusedError(ref, f"the change's {SIGNERS_FILE} breaks one key, one role: {problem}", hint)
    if parse_signers(ev.old_files.get(SIGNERS_FILE) or "") and not parse_signers(text):
        raise ArbiterRefusedError(ref, f"the change leaves {SIGNERS_FILE} listing no one; once it lists anyone "
                                       "there is no unsigned mode", "Rotate keys by listing the new ones, never by "
                                                                    "emptying the file.")


def check_signed_move(repo, old_id: str | None, new_id: str, protected: str = "main", logs=(),
                      verdicts=()) -> Decision:
    """check_move, plus the verdict, approval or attestation a store with signers requires.

    logs: extra evolution-log tips to find attestations in; verdicts: extra verdict tips (the hub
    passes the ones pushed with the move).

    Raises:
        ArbiterRefusedError: with the first reason the move is not allowed (ApprovalMissingError when
            only an approver's approval is missing).
    """
    return judge_move(gather_move(repo, old_id, new_id, protected, signed=True, tips=tuple(logs),
                                  verdict_tips=tuple(verdicts)))
