"""change: a person's approved change to policy, stages, code or signers on the protected branch."""

from __future__ import annotations

from dataclasses import dataclass

from ..adapters import git
from ..core.errors import UsageError
from ..guard.attest import commit_attested
from ..store import ledger


@dataclass(frozen=True)
class Change:
    """A person's approved change to policy, stages or code on the protected branch."""

    commit: str
    approver: str
    reason: str
    paths: list


def change(store, reason: str) -> Change:
    """Commit the staged changes on the protected branch as an approved change, logged APPROVE.

    Raises:
        UsageError: nothing is staged, no reason was given, or the protected branch is not checked out.
    """
    if not reason or not reason.strip():
        raise UsageError("an approved change needs a reason", "Pass --reason TEXT.")
    if not store.on_protected():
        raise UsageError(f"check out {store.protected} first", f"git checkout {store.protected}")
    paths = git.staged_paths(store.root)
    if not paths:
        raise UsageError("nothing is staged to change", "git add the policy, stage or code change first.")
    approver = store.person()
    one_line = " ".join(reason.split())
    message = (f"change: {one_line[:60]}\n\n{reason.strip()}\n\n"
               f"Approved-Change: 1\nApproved-By: {approver}\nReason: {one_line}")
    commit = commit_attested(store, message, "change")  # built, signed and logged, then moved
    ledger.append(store, "APPROVE", None, {"commit": commit, "approver": approver, "reason": one_line, "paths": paths})
    return Change(commit, approver, one_line, paths)
