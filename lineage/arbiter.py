"""The arbiter: may the protected branch move from commit A to commit B?

One function, used by `lineage promote`, by the reference-transaction hook and (later) by the
hub's receive hooks. It re-derives the verdict from evidence in B and the policy of A; it never
trusts B's own report or B's own policy, and never retrains: cost is independent of model size.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass

import yaml

from .errors import ArbiterRefusedError, LineageError

SIGNERS_FILE = "allowed_signers"  # see attest.py; a generation may never touch it

# What a generation commit may touch relative to its parent commit.
GENERATION_PATHS = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md", "reports/*", "reports/**",
                    "data/deltas/*.dvc", "data/deltas/.gitignore", "data/.gitignore", "params.yaml")


@dataclass(frozen=True)
class Decision:
    """Why a move is allowed."""

    kind: str  # "promotion" | "rollback" | "create"
    generation: str | None
    verdict: str | None
    composite: float | None


def _blob(repo, commit, path: str) -> bytes | None:
    from .adapters.git import read_blob

    return read_blob(repo, commit, path)


def _changed_paths(repo, a, b) -> list[str]:
    diff = repo.diff(a.tree, b.tree)
    return sorted({d.delta.new_file.path for d in diff} | {d.delta.old_file.path for d in diff})


def _params_without_policy(blob: bytes | None) -> dict:
    data = yaml.safe_load(blob or b"") or {}
    data.pop("policy", None)
    return data


def check_move(repo, old_id: str | None, new_id: str, protected: str = "main") -> Decision:
    """Allow or refuse moving refs/heads/<protected> from old_id to new_id.

    Raises:
        ArbiterRefusedError: with the first reason the move is not allowed.
    """
    import pygit2

    from .adapters.git import trailers
    from .gate import judge
    from .metrics import BudgetUsed, EvalMetrics
    from .policy import Policy

    ref = f"refs/heads/{protected}"
    zero = "0" * 40
    if new_id in (None, zero):
        raise ArbiterRefusedError(ref, "deleting the protected branch is never allowed")
    new = repo[new_id].peel(pygit2.Commit)
    if old_id in (None, zero):
        # Creating the branch: only a store's init commit may start it.
        if trailers(new.message).get("Lineage-Init") == "1" and not new.parents:
            return Decision("create", None, None, None)
        raise ArbiterRefusedError(ref, "the protected branch may only be created by 'lineage init'")
    old = repo[old_id].peel(pygit2.Commit)
    if old.id == new.id:
        return Decision("noop", None, None, None)
    if [p.id for p in new.parents] != [old.id]:
        if repo.descendant_of(new.id, old.id):
            raise ArbiterRefusedError(ref, f"{str(new.id)[:12]} is not a single generation commit on top of "
                                           f"{str(old.id)[:12]}", "Promote one gated candidate at a time.")
        raise ArbiterRefusedError(ref, f"not a fast-forward: {str(new.id)[:12]} does not descend from the tip "
                                       f"{str(old.id)[:12]}", "The candidate is stale: re-run 'lineage propose'.")
    info = trailers(new.message)
    if "Rollback-To" in info:
        return _check_rollback(repo, old, new, info, ref)
    if "Approved-Change" in info:
        return _check_approved_change(repo, old, new, info, ref)
    generation = info.get("Generation")
    if not generation:
        raise ArbiterRefusedError(ref, "the commit is not a lineage generation (no Generation: trailer)",
                                  "Train a candidate with 'lineage propose' and promote it.")

    changed = _changed_paths(repo, old, new)
    for path in changed:
        if path == "params.yaml":
            continue
        if path == SIGNERS_FILE:
            raise ArbiterRefusedError(ref, f"the candidate edits {SIGNERS_FILE}, the list of who may promote and approve",
                                      "Signers change only by a person's approved change: 'lineage keys allow', "
                                      "then 'lineage change'.")
        if not any(fnmatch.fnmatch(path, pattern) for pattern in GENERATION_PATHS):
            raise ArbiterRefusedError(ref, f"the candidate changes {path}, which a generation may not touch",
                                      "Changes to code, stages or hooks need a person's approved change, not a promotion.")
        if fnmatch.fnmatch(path, DELTA_DVC):
            _check_delta_dvc_file(repo, new, path, ref)
    if "params.yaml" in changed:
        new_params, old_params = _blob(repo, new, "params.yaml"), _blob(repo, old, "params.yaml")
        if (yaml.safe_load(new_params or b"") or {}).get("policy") != (yaml.safe_load(old_params or b"") or {}).get("policy"):
            raise ArbiterRefusedError(ref, "the candidate edits the policy it is judged by",
                                      "Policy changes need a person's approved change, never a promotion.")

    try:
        policy = Policy.from_params(yaml.safe_load(_blob(repo, old, "params.yaml") or b"") or {})
        metrics_raw = _blob(repo, new, "metrics.json")
        budget_raw = _blob(repo, new, "reports/train/metrics.json")
        report_raw = _blob(repo, new, "reports/gate.json")
        if metrics_raw is None or budget_raw is None or report_raw is None:
            raise ArbiterRefusedError(ref, "the candidate commit lacks metrics.json, reports/train/metrics.json "
                                           "or reports/gate.json", "Re-run 'lineage propose'.")
        metrics = EvalMetrics.from_dict(json.loads(metrics_raw))
        budget = BudgetUsed.from_dict(json.loads(budget_raw))
        report = json.loads(report_raw)
    except ArbiterRefusedError:
        raise
    except (LineageError, ValueError) as exc:
        raise ArbiterRefusedError(ref, f"unreadable evidence: {exc}") from None

    # The evidence must be the evidence: hashes in the report match the committed files.
    hashes = report.get("hashes", {})
    if hashes.get("metrics") != "sha256:" + hashlib.sha256(metrics_raw).hexdigest():
        raise ArbiterRefusedError(ref, "metrics.json does not match the hash the gate report judged")
    hashes_csv = _blob(repo, new, "reports/train/hashes.csv") or b""
    if hashes.get("hashes_csv") != "sha256:" + hashlib.sha256(hashes_csv).hexdigest():
        raise ArbiterRefusedError(ref, "reports/train/hashes.csv does not match the gate report")
    from .canonical import digest_obj

    manifest_raw = _blob(repo, new, "reports/train/manifest.json")
    if manifest_raw is None or hashes.get("manifest") != digest_obj(json.loads(manifest_raw)) \
            or json.loads(budget_raw).get("manifest_digest") != hashes.get("manifest"):
        raise ArbiterRefusedError(ref, "the evolution manifest does not match the gate report")
    if hashes.get("child_weights") != json.loads(budget_raw).get("weights_sha256"):
        raise ArbiterRefusedError(ref, "the weights digest in the gate report differs from the training record")
    lock = yaml.safe_load(_blob(repo, new, "dvc.lock") or b"") or {}
    outs = {o["path"]: o for o in (lock.get("stages", {}).get("eval", {}).get("outs", []))}
    if outs.get("metrics.json", {}).get("md5") != hashlib.md5(metrics_raw).hexdigest():
        raise ArbiterRefusedError(ref, "dvc.lock's metrics.json hash does not match the committed metrics.json")
    train_outs = {o["path"] for o in lock.get("stages", {}).get("train", {}).get("outs", [])}
    if "models/child" not in train_outs:
        raise ArbiterRefusedError(ref, "dvc.lock records no trained weights (models/child)")

    # The parent must be the current generation of A.
    manifest = json.loads(_blob(repo, new, "reports/train/manifest.json") or b"{}")
    parent_gen = (manifest.get("parent") or {}).get("generation")
    current = _generation_of(repo, old)
    if parent_gen != current:
        raise ArbiterRefusedError(ref, f"the candidate was trained from {parent_gen or 'the base'}, but the "
                                       f"protected branch serves {current or 'no generation'}",
                                  "The candidate is stale: re-run 'lineage propose' from the current tip.")

    verdict = judge(policy, metrics, budget, hashes=hashes, policy_source={"ref": protected, "commit": str(old.id)})
    if verdict.verdict != "PASS":
        raise ArbiterRefusedError(ref, f"{generation} fails the gate under {protected}'s policy: "
                                       f"{', '.join(verdict.failed)}", "Train a better candidate.")
    return Decision("promotion", generation, "PASS", verdict.composite)


DELTA_DVC = "data/deltas/*.dvc"


def _check_delta_dvc_file(repo, commit, path: str, ref: str) -> None:
    """A delta's .dvc file may only track the data file beside it, as `lineage data add` writes it.

    `dvc checkout` (run by promote and pull) writes an out wherever its path points: a path with
    '..' or a 'wdir' would let a generation overwrite stage scripts or dvc.yaml with bytes it put in
    the DVC remote, code no person approved.
    """
    import posixpath

    import pygit2

    try:
        entry = commit.tree[path]
    except KeyError:
        return  # deleted
    expected = posixpath.basename(path)[:-len(".dvc")]
    hint = "Register data with 'lineage data add FILE'; it writes the .dvc file."
    if entry.filemode != pygit2.enums.FileMode.BLOB:
        raise ArbiterRefusedError(ref, f"{path} is not a regular file; a delta's .dvc file may only track {expected}", hint)
    try:
        data = yaml.safe_load(repo[entry.id].data)
    except yaml.YAMLError:
        data = None
    outs = data.get("outs") if isinstance(data, dict) else None
    paths = [o.get("path") if isinstance(o, dict) else o for o in outs] if isinstance(outs, list) else []
    if not paths or set(data) != {"outs"} or any(p != expected for p in paths):
        shown = ", ".join(repr(p) for p in paths) or "nothing readable"
        extra = f" (with {', '.join(sorted(set(data) - {'outs'}))})" if isinstance(data, dict) and set(data) - {"outs"} else ""
        raise ArbiterRefusedError(ref, f"{path} tracks {shown}{extra}; a delta's .dvc file may only track "
                                       f"{expected}, the file beside it", hint)


def check_signed_move(repo, old_id: str | None, new_id: str, protected: str = "main", logs=()) -> Decision:
    """check_move, then the signed attestation the commit being replaced may require (see attest.py).

    logs: extra evolution-log tips to look for attestations in (the hub passes the pushed one).
    """
    decision = check_move(repo, old_id, new_id, protected)
    if decision.kind in ("promotion", "rollback", "change"):
        from .attest import require

        require(repo, old_id, new_id, protected, logs)
    return decision


def _generation_of(repo, commit) -> str | None:
    """The generation a protected-branch commit serves (following rollbacks)."""
    from .adapters.git import trailers

    # Approved changes and the init commit serve whatever generation came before them.
    while commit is not None:
        info = trailers(commit.message)
        served = info.get("Rollback-To") or info.get("Generation")
        if served:
            return served
        commit = commit.parents[0] if commit.parents else None
    return None


def _check_rollback(repo, old, new, info: dict, ref: str) -> Decision:
    """A rollback may only restore a generation that was promoted before, exactly as it was."""
    import pygit2

    target = info["Rollback-To"]
    for path in _changed_paths(repo, old, new):
        # a rollback restores evidence only: never code, policy, data or who may sign
        if path not in EVIDENCE and not path.startswith("reports/"):
            raise ArbiterRefusedError(ref, f"the rollback changes {path}; a rollback may only restore a "
                                           "generation's dvc.lock, metrics, reports and cards")
    walker = repo.walk(old.id, pygit2.enums.SortMode.TOPOLOGICAL)
    walker.simplify_first_parent()
    from .adapters.git import trailers

    for commit in walker:
        if trailers(commit.message).get("Generation") == target:
            for path in ("dvc.lock", "metrics.json", "reports/train/hashes.csv", "reports/train/manifest.json"):
                if _blob(repo, commit, path) != _blob(repo, new, path):
                    raise ArbiterRefusedError(ref, f"the rollback's {path} differs from {target}'s")
            return Decision("rollback", target, None, None)
    raise ArbiterRefusedError(ref, f"{target} was never promoted on this branch; a rollback can only restore "
                                   "a promoted generation", "See 'lineage log' for promoted generations.")


# What an approved change may never touch: the evidence of the served generation.
EVIDENCE = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md")


def _check_approved_change(repo, old, new, info: dict, ref: str) -> Decision:
    """A person's change to policy, stages or code: approved by name, never touching a generation.

    Without signatures (see the security page) the approval is a recorded claim, not a proof;
    the hub is where a team restricts who may push it.
    """
    approver = info.get("Approved-By", "").strip()
    if not approver or "<" not in approver:
        raise ArbiterRefusedError(ref, "an approved change needs an 'Approved-By: Name <email>' trailer",
                                  "Use 'lineage change --reason TEXT' on the protected branch.")
    if not info.get("Reason", "").strip():
        raise ArbiterRefusedError(ref, "an approved change needs a 'Reason:' trailer")
    for path in _changed_paths(repo, old, new):
        if path in EVIDENCE or path.startswith("reports/") or path.startswith("models/"):
            raise ArbiterRefusedError(ref, f"an approved change may not touch {path}: generations move only "
                                           "by promotion or rollback")
    return Decision("change", _generation_of(repo, old), None, None)
