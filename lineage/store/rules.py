"""The rules as the protected branch holds them: policy and settings are main's, never a candidate's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ..adapters import git
from ..core.policy import Policy
from ..core.settings import Settings, run_params


@dataclass(frozen=True)
class ProtectedPolicy:
    """The policy a candidate is judged by, and where it came from."""

    policy: Policy
    ref: str
    commit: str | None
    candidate_policy_differs: bool

    def source(self) -> dict:
        return {"ref": self.ref, "commit": self.commit,
                "candidate_policy_differs": self.candidate_policy_differs}


def protected_params(repo, protected: str) -> dict | None:
    """params.yaml as the protected tip holds it, or None before the first commit."""
    blob = git.read_blob(repo, git.tip(repo, protected), "params.yaml")
    return None if blob is None else (yaml.safe_load(blob) or {})


def protected_policy(root: Path = Path("."), repo=None) -> ProtectedPolicy:
    """Read the policy from the protected branch's tip, never from the candidate's tree.

    Before the protected branch has any commit (a store being made), the working tree's
    params.yaml is all there is.
    """
    local = Policy.from_params(run_params(root / "params.yaml"))
    repo = repo if repo is not None else git.open_repo(root)
    branch = git.protected_branch(repo)
    params = protected_params(repo, branch)
    if params is None:
        return ProtectedPolicy(local, branch, None, False)
    protected = Policy.from_params(params)
    commit = git.tip(repo, branch)
    assert commit is not None  # params were read from it
    return ProtectedPolicy(protected, branch, str(commit.id), protected.to_dict() != local.to_dict())


def protected_settings(store) -> tuple[Settings, Policy]:
    """Settings and policy as the protected branch holds them: the loop's rules are not the candidate's."""
    raw = protected_params(store.repo, store.protected)
    if raw is None:
        raw = yaml.safe_load((store.root / "params.yaml").read_text()) or {}
    return Settings.from_dict(raw), Policy.from_params(raw)


def protected_serve_settings(repo, protected: str) -> dict:
    """The `serve:` section as the protected tip holds it (defaults where absent); other sections are not judged here.

    Raises:
        ParamsError: the serve section itself is malformed.
    """
    raw = protected_params(repo, protected) or {}
    return Settings.from_dict({"serve": raw.get("serve") if isinstance(raw, dict) else None})["serve"]
