"""The hub: a shared bare repository whose receive hook runs the arbiter for everyone.

Local hooks catch mistakes; a clone can delete them and pygit2 never runs them. The hub's
``pre-receive`` hook is where the rules hold against a user who tries to get around them:

- the protected branch moves only as the arbiter allows (fast-forward to a gated candidate or a
  rollback to a promoted generation); it is never deleted; its first push is replayed step by step;
- frozen and generation tags (``refs/tags/lineage/*``) are never moved or deleted;
- the evolution log (``refs/lineage/log``) only grows: a new value must descend from the old one;
- once the protected branch holds an ``allowed_signers`` file, each move must come with a signed
  attestation in the log (the pushed log counts), checked against the file it replaces.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..adapters import git
from ..core.errors import ArbiterRefusedError, LineageError, StoreError
from .arbiter import check_signed_move

ZERO = "0" * 40
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
    """Create a bare hub with the arbiter in its pre-receive hook; register it in a store (when given)."""
    hub = Path(path).expanduser().resolve()
    if hub.exists() and any(hub.iterdir()) and not (hub / "HEAD").exists():
        raise StoreError(f"{hub} exists and is not a bare git repository", "Pick an empty or new directory.")
    hub.mkdir(parents=True, exist_ok=True)
    git.init(hub, protected_branch, bare=True)
    for key, value in (("lineage.protectedBranch", protected_branch), ("receive.denyNonFastForwards", "true"),
                       ("core.fsync", "reference,objects"), ("core.fsyncMethod", "fsync"),
                       ("receive.fsckObjects", "true")):
        git.config_set(hub, key, value)
    hook = hub / "hooks" / "pre-receive"
    hook.write_text(HOOK.replace("{python}", sys.executable))
    os.chmod(hook, 0o755)
    remote = None
    if store is not None:
        git.set_remote(store.root, name, str(hub))
        remote = name
    return HubInit(str(hub), protected_branch, remote)


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


def check_update(repo, old: str, new: str, ref: str, protected: str, logs=(), main_tip: str | None = None) -> None:
    """Refuse (ArbiterRefusedError) any ref update the hub must not accept.

    logs: the evolution-log tip this push brings, where the attestations of its moves are.
    main_tip: the protected branch as it will be after this push (for new generation tags).
    """
    if ref == f"refs/heads/{protected}":
        if old == ZERO and new != ZERO:
            # First push of the protected branch: replay its first-parent history move by move.
            chain = []
            commit = git.peel_commit(repo, new)
            while True:
                chain.append(commit)
                if not commit.parents:
                    break
                commit = commit.parents[0]
            chain.reverse()
            previous = None
            for commit in chain:
                check_signed_move(repo, previous, str(commit.id), protected, logs)
                previous = str(commit.id)
            return
        check_signed_move(repo, old, new, protected, logs)
        return
    if ref.startswith("refs/tags/lineage/"):
        if new == ZERO:
            raise ArbiterRefusedError(ref, "frozen tags are never deleted")
        if old != ZERO and old != new:
            raise ArbiterRefusedError(ref, "frozen tags are never moved")
        if old == ZERO:
            _check_new_tag(repo, new, ref, protected, main_tip)
        return
    if ref == "refs/lineage/log":
        if new == ZERO:
            raise ArbiterRefusedError(ref, "the evolution log is never deleted")
        if old != ZERO and old != new and not git.descends(repo, new, old):
            raise ArbiterRefusedError(ref, "the evolution log is append-only; this update rewrites it",
                                      "Pull the hub's log, append on top of it, push again.")


def receive(lines: list[str], git_dir: str) -> int:
    """pre-receive: check every update; any refusal rejects the whole push."""
    repo = git.open_bare(git_dir, os.environ.get("GIT_OBJECT_DIRECTORY"))
    try:
        protected = repo.config["lineage.protectedBranch"]
    except KeyError:
        protected = "main"
    failed = 0
    updates = [line.split() for line in lines if line.strip()]
    logs = [new for _old, new, ref in updates if ref == "refs/lineage/log" and new != ZERO]
    main_tip = next((new for _old, new, ref in updates if ref == f"refs/heads/{protected}"), None)
    if main_tip is None:
        current = repo.references.get(f"refs/heads/{protected}")
        main_tip = str(current.target) if current is not None else None
    for old, new, ref in updates:
        try:
            check_update(repo, old, new, ref, protected, logs, main_tip)
        except LineageError as exc:
            failed += 1
            print(f"lineage hub: {exc}", file=sys.stderr)
            if exc.hint:
                print(f"lineage hub: hint: {exc.hint}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(receive(sys.stdin.read().splitlines(), os.environ.get("GIT_DIR", ".")))
