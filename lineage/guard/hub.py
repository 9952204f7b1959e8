"""The hub: a shared bare repository whose receive hook runs the arbiter for everyone.

Local hooks catch mistakes; a clone can delete them and pygit2 never runs them. The hub's
``pre-receive`` hook is where the rules hold against a user who tries to get around them:

- a hub serves a store with signers: ``init`` refuses a store whose protected branch lists no one
  in ``allowed_signers`` and pins the store's root commit (``lineage.rootCommit``); the first push
  must start from it, and the protected branch never arrives without signers;
- the protected branch moves only as the arbiter allows, signatures included (a promotion: the
  arbiter's signed verdict, pushed in the same push or before, and an approval; a rollback or an
  approved change: the attestation of a role allowed to sign it, in the pushed log); it is never
  deleted; its first push is replayed step by step;
- frozen and generation tags (``refs/tags/lineage/*``) are never moved or deleted;
- the evolution log (``refs/lineage/log``) only grows, linearly: every new log commit has exactly
  one parent, all the way back to what the hub holds;
- verdicts (``refs/lineage/verdicts/<commit>``) are created or grown, never rewound or deleted,
  and every new verdict commit must be a verdict about the commit its ref names, signed by a key
  with the arbiter role in the protected branch's ``allowed_signers``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..adapters import git
from ..core.errors import ArbiterRefusedError, LineageError, StoreError, UsageError
from . import verdict
from .arbiter import check_signed_move
from .signers import SIGNERS_FILE, requires

ZERO = "0" * 40
ROOT_KEY = "lineage.rootCommit"
LOG_REF = "refs/lineage/log"
HOOK = """#!/bin/sh
# lineage hub: every pushed ref update goes through the arbiter (see lineage/hub.py).
exec "{python}" -m lineage.guard.hub
"""


@dataclass(frozen=True)
class HubInit:
    path: str
    protected_branch: str
    remote_name: str | None


def init(path: str | Path, protected_branch: str = "main", store=None, name: str = "hub") -> HubInit:
    """Create a bare hub for a store with signers: the arbiter in its pre-receive hook, its root pinned.

    Raises:
        UsageError: not in a store, or the store's protected branch lists no one in allowed_signers.
        StoreError: PATH exists and is not a bare repository.
    """
    tip = store.tip() if store is not None else None
    if tip is None or not requires(git.read_blob(store.repo, tip, SIGNERS_FILE)):
        where = f"{store.protected} lists no one in {SIGNERS_FILE}" if store is not None else "this is not a store"
        raise UsageError(f"a hub needs signers: {where}",
                         "In the store: 'lineage keys allow PRINCIPAL KEY.pub --role ROLE' for an approver, an "
                         "arbiter and a proposer, then 'lineage change --reason …'; then 'lineage hub init PATH'.")
    root_commit = str(list(git.first_parent_history(store.repo, tip.id))[-1].id)
    hub = Path(path).expanduser().resolve()
    if hub.exists() and any(hub.iterdir()) and not (hub / "HEAD").exists():
        raise StoreError(f"{hub} exists and is not a bare git repository", "Pick an empty or new directory.")
    hub.mkdir(parents=True, exist_ok=True)
    git.init(hub, protected_branch, bare=True)
    for key, value in (("lineage.protectedBranch", protected_branch), ("receive.denyNonFastForwards", "true"),
                       ("core.fsync", "reference,objects"), ("core.fsyncMethod", "fsync"),
                       ("receive.fsckObjects", "true"), (ROOT_KEY, root_commit)):
        git.config_set(hub, key, value)
    hook = hub / "hooks" / "pre-receive"
    hook.write_text(HOOK.replace("{python}", sys.executable))
    os.chmod(hook, 0o755)
    git.set_remote(store.root, name, str(hub))
    return HubInit(str(hub), protected_branch, name)


_FIRST_PARENTS: dict[tuple[str, str], set[str]] = {}  # per-process memo: a push checks many tags


def _first_parent_ids(repo, tip: str | None) -> set[str]:
    if not tip or tip == ZERO:
        return set()
    key = (repo.path, tip)
    _memo = _FIRST_PARENTS
    if key not in _memo:
        ids, commit = set(), git.peel_commit(repo, tip)
        while True:
            ids.add(str(commit.id))
            if not commit.parents:
                break
            commit = commit.parents[0]
        _memo[key] = ids
    return _memo[key]


def _check_new_tag(repo, new: str, ref: str, protected: str, main_tip: str | None) -> None:
    """A new record tag must say what its commit is: a generation main served, or a frozen candidate."""
    name = ref[len("refs/tags/lineage/"):]
    kind, _, label = name.partition("/")
    if kind not in ("gen", "frozen") or not label:
        raise ArbiterRefusedError(ref, "only lineage/gen/GNNN and lineage/frozen/GNNN-x tags belong under lineage/")
    if not git.is_annotated_tag(repo, new):
        raise ArbiterRefusedError(ref, "record tags are annotated tags, as lineage writes them")
    commit = git.peel_commit(repo, new)
    generation = git.trailers(commit.message).get("Generation")
    expected = label if kind == "gen" else label.rpartition("-")[0]
    if generation != expected:
        raise ArbiterRefusedError(ref, f"the tagged commit {str(commit.id)[:12]} is not {expected} "
                                       f"(its Generation: trailer says {generation or 'nothing'})")
    if kind == "gen" and str(commit.id) not in _first_parent_ids(repo, main_tip):
        raise ArbiterRefusedError(ref, f"{label} was never served: its commit is not on {protected}'s history",
                                  f"Push {protected} with the promotion in the same push (lineage push).")


def check_update(repo, old: str, new: str, ref: str, protected: str, logs=(), main_tip: str | None = None,
                 verdicts=(), root: str | None = None) -> None:
    """Refuse (ArbiterRefusedError) any ref update the hub must not accept.

    logs: the evolution-log tip this push brings, where the attestations of its moves are.
    main_tip: the protected branch as it will be after this push (for new generation tags and verdicts).
    verdicts: the verdict tips this push brings. root: the store's pinned root commit.
    """
    if ref == f"refs/heads/{protected}":
        # Once the hub holds the branch, the arbiter keeps signers on it (no change may empty the file).
        if old == ZERO and new != ZERO:
            # First push of the protected branch: from the pinned root, replayed move by move.
            chain = list(reversed(list(git.first_parent_history(repo, git.peel_commit(repo, new).id))))
            if root is None or str(chain[0].id) != root:
                raise ArbiterRefusedError(ref, f"the pushed history starts at {str(chain[0].id)[:12]}, not at the "
                                               f"store's root {(root or 'none pinned')[:12]} this hub serves",
                                          "Push the store the hub was made for ('lineage hub init' pins its root).")
            previous = None
            for commit in chain:
                check_signed_move(repo, previous, str(commit.id), protected, logs, verdicts)
                previous = str(commit.id)
            if not requires(git.read_blob(repo, chain[-1], SIGNERS_FILE)):
                raise ArbiterRefusedError(ref, f"a hub needs signers: {new[:12]} lists no one in {SIGNERS_FILE}",
                                          "Push the store whose approved change lists its approver, arbiter and "
                                          "proposer.")
            return
        check_signed_move(repo, old, new, protected, logs, verdicts)
        return
    if ref.startswith("refs/tags/lineage/"):
        if new == ZERO:
            raise ArbiterRefusedError(ref, "frozen tags are never deleted")
        if old != ZERO and old != new:
            raise ArbiterRefusedError(ref, "frozen tags are never moved")
        if old == ZERO:
            _check_new_tag(repo, new, ref, protected, main_tip)
        return
    if ref == LOG_REF:
        if new == ZERO:
            raise ArbiterRefusedError(ref, "the evolution log is never deleted")
        if old != ZERO and old != new and not git.descends(repo, new, old):
            raise ArbiterRefusedError(ref, "the evolution log is append-only; this update rewrites it",
                                      "Pull the hub's log, append on top of it, push again.")
        _check_linear(repo, old, new, ref)
        return
    if ref.startswith(verdict.VERDICTS_REF):
        _check_verdicts(repo, old, new, ref, main_tip)


def _check_linear(repo, old: str, new: str, ref: str) -> None:
    """Every commit new adds to the log has exactly one parent (the first one none), back to old."""
    commit = git.peel_commit(repo, new)
    while str(commit.id) != old:
        if len(commit.parents) > 1 or (not commit.parents and old != ZERO):
            raise ArbiterRefusedError(ref, f"the evolution log only grows linearly: {str(commit.id)[:12]} has "
                                           f"{len(commit.parents)} parents", "Append events one after another "
                                                                             "('lineage pull', then push again).")
        if not commit.parents:
            return
        commit = commit.parents[0]


def _check_verdicts(repo, old: str, new: str, ref: str, main_tip: str | None) -> None:
    """A verdict ref grows by verdicts about its commit, each signed by an arbiter key main allows."""
    about = ref[len(verdict.VERDICTS_REF):]
    if new == ZERO:
        raise ArbiterRefusedError(ref, "verdicts are never deleted")
    if old != ZERO and old != new and not git.descends(repo, new, old):
        raise ArbiterRefusedError(ref, "verdicts are never rewound or rewritten; this update drops one",
                                  "Fetch the hub's verdicts ('lineage pull') and add on top of them.")
    signers = git.read_blob(repo, git.peel_commit(repo, main_tip), SIGNERS_FILE) if main_tip else None
    commit = git.peel_commit(repo, new)
    while str(commit.id) != old:
        found = verdict.Verdict.from_message(commit.message)
        sha = str(commit.id)[:12]
        if found is None or len(commit.parents) > 1:
            raise ArbiterRefusedError(ref, f"{sha} is not a verdict (one signed statement, one parent)")
        if found.commit != about:
            raise ArbiterRefusedError(ref, f"the verdict {sha} is about {str(found.commit)[:12]}, not {about[:12]}, "
                                           "the commit its ref names")
        if problem := verdict.check(found, signers):
            raise ArbiterRefusedError(ref, f"the verdict {sha} does not verify under the hub's {SIGNERS_FILE}: "
                                           f"{problem}", "Only a key with the arbiter role signs verdicts.")
        if not commit.parents:
            return
        commit = commit.parents[0]


def receive(lines: list[str], git_dir: str) -> int:
    """pre-receive: check every update; any refusal rejects the whole push."""
    repo = git.open_bare(git_dir, os.environ.get("GIT_OBJECT_DIRECTORY"))
    protected = _config(repo, "lineage.protectedBranch") or "main"
    failed = 0
    updates = [line.split() for line in lines if line.strip()]
    logs = [new for _old, new, ref in updates if ref == LOG_REF and new != ZERO]
    verdicts = [new for _old, new, ref in updates if ref.startswith(verdict.VERDICTS_REF) and new != ZERO]
    main_tip = next((new for _old, new, ref in updates if ref == f"refs/heads/{protected}"), None)
    if main_tip is None:
        current = repo.references.get(f"refs/heads/{protected}")
        main_tip = str(current.target) if current is not None else None
    main_tip = None if main_tip == ZERO else main_tip
    for old, new, ref in updates:
        try:
            check_update(repo, old, new, ref, protected, logs, main_tip, verdicts, _config(repo, ROOT_KEY))
        except LineageError as exc:
            failed += 1
            print(f"lineage hub: {exc}", file=sys.stderr)
            if exc.hint:
                print(f"lineage hub: hint: {exc.hint}", file=sys.stderr)
    return 1 if failed else 0


def _config(repo, key: str) -> str | None:
    try:
        return repo.config[key]
    except KeyError:
        return None


if __name__ == "__main__":
    raise SystemExit(receive(sys.stdin.read().splitlines(), os.environ.get("GIT_DIR", ".")))
