"""change: a person's approved change to policy, exam, stages, code or signers on the protected branch.

The change commits exactly the paths it names: everything staged except registered data waiting
for its candidate (``data/deltas/*.dvc`` and ``data/deltas/.gitignore`` stay staged, and travel
into the next candidate, never into an approved change). Its tree is the protected tip's with
those paths as the index stages them. A ``params.yaml`` that does not validate, or an exam file
with a bad line, is refused before anything is committed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import yaml

from ..adapters import git, git_trees
from ..core.errors import MalformedDataError, UsageError
from ..core.exam import EXAM_DIR, KINDS, exam_path, parse_items
from ..core.policy import Policy
from ..core.settings import OVERRIDES, Settings
from ..guard.attest import attest
from ..store import keys, ledger, protected_state

# Registered data waits staged for its candidate: never part of an approved change.
PENDING_DATA = ("data/deltas/*.dvc", "data/deltas/.gitignore")


@dataclass(frozen=True)
class Change:
    """A person's approved change to policy, stages or code on the protected branch."""

    commit: str
    approver: str
    reason: str
    paths: list


def change_paths(staged: list[str]) -> list[str]:
    """The staged paths an approved change commits: all but registered data waiting for its candidate."""
    return [p for p in staged if not any(fnmatch.fnmatchcase(p, pattern) for pattern in PENDING_DATA)]


def check_staged(repo, paths: list[str]) -> None:
    """Refuse a staged params.yaml that does not validate, or a staged exam file with a bad line.

    Raises:
        UsageError: params.yaml is removed, not YAML or not a mapping.
        ParamsError: params.yaml is refused by Settings or Policy.
        MalformedDataError: an exam file has a bad line (named).
    """
    if OVERRIDES in paths:
        raise UsageError(f"{OVERRIDES} is a generation's record of its -S overrides, not a setting to change",
                         f"Change the store's settings in params.yaml instead: git restore --staged {OVERRIDES}")
    if "params.yaml" in paths:
        blob = git_trees.staged_blob(repo, "params.yaml")
        fix = "Fix params.yaml, stage it and run again; nothing was committed."
        if blob is None:
            raise UsageError("the change removes params.yaml", "A store needs its params.yaml: git restore --staged "
                                                               "params.yaml")
        try:
            params = yaml.safe_load(blob)
        except yaml.YAMLError as exc:
            raise UsageError(f"params.yaml: not valid YAML ({str(exc).splitlines()[0]})", fix) from None
        if not isinstance(params, dict):
            raise UsageError("params.yaml: not a mapping of sections", fix)
        Settings.from_dict(params)
        Policy.from_params(params)
    for kind in KINDS:
        path = exam_path(kind)
        if path in paths:
            blob = git_trees.staged_blob(repo, path)
            if blob is not None:
                try:
                    parse_items(kind, blob.decode("utf-8"), path)
                except UnicodeDecodeError:
                    raise MalformedDataError(path, 1, "not valid UTF-8") from None
                except MalformedDataError as exc:
                    exc.hint = f"Fix {path} (or add items with 'lineage exam add FILE'), stage it, and run again."
                    raise


def change(store, reason: str) -> Change:
    """Commit the staged changes it names on the protected branch as an approved change, logged APPROVE.

    Raises:
        UsageError: nothing but pending data is staged, no reason was given, or the protected branch
            is not checked out.
        ParamsError: the staged params.yaml does not validate (nothing is committed).
        MalformedDataError: a staged exam file has a bad line (nothing is committed).
    """
    if not reason or not reason.strip():
        raise UsageError("an approved change needs a reason", "Pass --reason TEXT.")
    if not store.on_protected():
        raise UsageError(f"check out {store.protected} first", f"git checkout {store.protected}")
    paths = change_paths(git_trees.staged_names(store.root))
    if not paths:
        raise UsageError("nothing is staged to change",
                         f"git add the policy, stage or code change first ('lineage exam add FILE' for {EXAM_DIR}/); "
                         "registered data goes into the next candidate, not into a change.")
    check_staged(store.repo, paths)
    approver = store.person()
    one_line = " ".join(reason.split())
    message = (f"change: {one_line[:60]}\n\n{reason.strip()}\n\n"
               f"Approved-Change: 1\nApproved-By: {approver}\nReason: {one_line}")
    commit = commit_paths_attested(store, paths, message, "change")  # built, signed and logged, then moved
    ledger.append(store, "APPROVE", None, {"commit": commit, "approver": approver, "reason": one_line, "paths": paths})
    return Change(commit, approver, one_line, paths)


def commit_paths_attested(store, paths: list[str], message: str, action: str) -> str:
    """Commit paths as the index stages them onto the protected tip as action: build, attest, then move.

    guard/attest.commit_attested commits the whole index; this commits only paths, so what else is
    staged (registered data) stays staged.
    """
    tip = store.tip()
    old = str(tip.id)
    new = git.commit_tree(store.root, git_trees.tree_with_staged(store.repo, tip, paths), old, message, store.env(),
                          signing_key=keys.signing_key(store.root))  # git's own signature too (verify-commit)
    attest(store, new, action)
    git.update_ref(store.root, store.protected_ref, new, old, reason=f"lineage {action}: {message.splitlines()[0]}")
    protected_state.refresh(store)
    return new
