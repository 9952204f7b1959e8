"""What the protected branch holds now, in a small git-ignored file: DVC's change detector.

`.lineage/protected.yaml` names the generation the protected branch serves (the promotion or
rollback commit that made it served, and its weights' DVC md5), a digest of its exam and digests
of its policy. dvc.yaml's stages take its keys as DVC params (parent: `served` and `exam`;
prepare: `policy.data`; train: `policy.budget`; gate: `policy`), so `dvc status` names the stages
a run would redo once the branch moved, and is clean when it has not.

It is never evidence: the stages read the protected branch itself, and neither the gate nor the
arbiter reads this file. A stale file can only make DVC skip or redo work, so whatever is about to
run DVC (`lineage propose`) rewrites it first; so do the verbs that move the branch and the
reference-transaction hook once any move of it is committed (a plain `git merge` too). It is
rewritten only when its content changes, so its mtime does not churn. It is cheap to build (one
ref, a few tree entries, two small blobs): the hook runs it.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..adapters import git
from ..core.canonical import digest_obj
from ..core.exam import KINDS, exam_path
from . import refs, weights

STATE_FILE = ".lineage/protected.yaml"
HEADER = ("# Written by lineage: what the protected branch holds now (served generation, exam, policy).\n"
          "# dvc.yaml's stages take these keys as params, so `dvc status` names what a run would redo after\n"
          "# the branch moves. Never evidence: the stages read the branch itself. Do not edit.\n")


def _policy_digests(params_blob: bytes | None) -> dict[str, str]:
    """Digests of the policy section as written (the whole, and the parts prepare and train read)."""
    try:
        params = yaml.safe_load(params_blob) if params_blob else None
    except yaml.YAMLError:  # the stages will refuse it; any edit of it must still count as a change
        unreadable = digest_obj((params_blob or b"").decode("utf-8", "replace"))
        return {"digest": unreadable, "data": unreadable, "budget": unreadable}
    policy = params.get("policy") if isinstance(params, dict) else None
    part = policy if isinstance(policy, dict) else {}
    return {"digest": digest_obj(policy), "data": digest_obj(part.get("data")),
            "budget": digest_obj(part.get("budget"))}


def read_state(repo, protected: str) -> dict[str, Any]:
    """What the protected branch's tip holds: served generation (or None), exam digest, policy digests."""
    tip = git.tip(repo, protected)
    served = None
    # the weights the parent stage would materialise: those the tip's dvc.lock names (an approved change
    # never touches dvc.lock, so they are the serving promotion's or rollback's)
    child = weights.lock_child(repo, tip) or {}
    if child.get("md5"):
        serving = refs.serving_commit(tip)
        served = {"generation": refs.served_generation(tip), "commit": None if serving is None else str(serving.id),
                  "md5": str(child["md5"])}
    exam = {exam_path(kind): git.entry_id(tip, exam_path(kind)) if tip is not None else None for kind in KINDS}
    return {"served": served, "exam": digest_obj(exam),
            "policy": _policy_digests(git.read_blob(repo, tip, "params.yaml"))}


def render(state: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(state, sort_keys=True)


def refresh(store) -> bool:
    """Rewrite .lineage/protected.yaml when what the protected branch holds changed; True when rewritten."""
    path = store.root / STATE_FILE
    text = render(read_state(store.repo, store.protected))
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)  # DVC never reads half a file
    return True
