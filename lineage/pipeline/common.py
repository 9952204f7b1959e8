"""What every stage shares: store paths, the protected policy, the error boundary."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import LineageError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

log = logging.getLogger("lineage")

DELTAS = Path("data/deltas")
PREPARED = Path("data/prepared")
PROBES = PREPARED / "probes"
PARENT_DIR = Path("models/parent")
PARENT_INFO = Path("reports/parent.json")
CHILD_DIR = Path("models/child")
TRAIN_REPORTS = Path("reports/train")
TRAIN_FAILURE = Path("reports/train_failure.json")
METRICS = Path("metrics.json")
EVAL_REPORTS = Path("reports/eval")
GATE_REPORT = Path("reports/gate.json")
CHECKPOINTS = Path(".lineage/checkpoints")


@dataclass(frozen=True)
class ProtectedPolicy:
    """The policy a candidate is judged by, and where it came from."""

    policy: object
    ref: str
    commit: str | None
    candidate_policy_differs: bool

    def source(self) -> dict:
        return {"ref": self.ref, "commit": self.commit,
                "candidate_policy_differs": self.candidate_policy_differs}


def protected_policy(root: Path = Path(".")) -> ProtectedPolicy:
    """Read the policy from the protected branch's tip, never from the candidate's tree.

    Before the protected branch has any commit (a store being made), the working tree's
    params.yaml is all there is.
    """
    from ..adapters import git
    from ..policy import Policy
    from ..settings import load_yaml

    local = Policy.from_params(load_yaml(root / "params.yaml"))
    repo = git.open_repo(root)
    branch = git.protected_branch(repo)
    commit = git.tip(repo, branch)
    blob = git.read_blob(repo, commit, _relative_to_repo(repo, root / "params.yaml"))
    if blob is None:
        return ProtectedPolicy(local, branch, None, False)
    protected = Policy.from_params(yaml.safe_load(blob) or {})
    return ProtectedPolicy(protected, branch, str(commit.id), protected.to_dict() != local.to_dict())


def _relative_to_repo(repo, path: Path) -> str:
    workdir = Path(repo.workdir).resolve()
    return path.resolve().relative_to(workdir).as_posix()


def run_stage(main) -> int:
    """Run a stage function; turn a LineageError into one line and its exit code."""
    logging.basicConfig(level=os.environ.get("LINEAGE_LOG", "INFO"), format="%(message)s", stream=sys.stderr)
    try:
        main()
        return 0
    except LineageError as exc:
        if os.environ.get("LINEAGE_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
