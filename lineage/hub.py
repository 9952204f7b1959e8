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

from .errors import ArbiterRefusedError, LineageError, StoreError

ZERO = "0" * 40
HOOK = """#!/bin/sh
# lineage hub: every pushed ref update goes through the arbiter (see lineage/hub.py).
exec "{python}" -m lineage.hub
"""
PUSH_REFSPECS = ["refs/heads/{protected}:refs/heads/{protected}", "refs/heads/candidates/*:refs/heads/candidates/*",
                 "refs/tags/lineage/*:refs/tags/lineage/*", "refs/lineage/log:refs/lineage/log"]


@dataclass(frozen=True)
class HubInit:
    path: str
    protected_branch: str
    remote_name: str | None


def init(path: str | Path, protected_branch: str = "main", store: str | Path | None = None,
         name: str = "hub") -> HubInit:
    """Create a bare hub with the arbiter in its pre-receive hook; register it in a store."""
    from .adapters.git import git

    hub = Path(path).expanduser().resolve()
    if hub.exists() and any(hub.iterdir()) and not (hub / "HEAD").exists():
        raise StoreError(f"{hub} exists and is not a bare git repository", "Pick an empty or new directory.")
    hub.mkdir(parents=True, exist_ok=True)
    git(["init", "-q", "--bare", "-b", protected_branch, str(hub)], cwd=hub)
    for key, value in (("lineage.protectedBranch", protected_branch), ("receive.denyNonFastForwards", "true"),
                       ("core.fsync", "reference,objects"), ("core.fsyncMethod", "fsync"),
                       ("receive.fsckObjects", "true")):
        git(["config", key, value], cwd=hub)
    hook = hub / "hooks" / "pre-receive"
    hook.write_text(HOOK.replace("{python}", sys.executable))
    os.chmod(hook, 0o755)
    remote = None
    if store is not None:
        from .api import find_store

        root = find_store(store)
        git(["remote", "remove", name], cwd=root, check=False)
        git(["remote", "add", name, str(hub)], cwd=root)
        remote = name
    return HubInit(str(hub), protected_branch, remote)


def _first_parent_ids(repo, tip: str | None, _memo: dict = {}) -> set[str]:  # noqa: B006 (per-process memo)
    import pygit2

    if not tip or tip == ZERO:
        return set()
    key = (repo.path, tip)
    if key not in _memo:
        ids, commit = set(), repo[tip].peel(pygit2.Commit)
        while True:
            ids.add(str(commit.id))
            if not commit.parents:
                break
            commit = commit.parents[0]
        _memo[key] = ids
    return _memo[key]


def _check_new_tag(repo, new: str, ref: str, protected: str, main_tip: str | None) -> None:
    """A new record tag must say what its commit is: a generation main served, or a frozen candidate."""
    import pygit2

    from .adapters.git import trailers

    name = ref[len("refs/tags/lineage/"):]
    kind, _, label = name.partition("/")
    obj = repo[new]
    if kind not in ("gen", "frozen") or not label:
        raise ArbiterRefusedError(ref, "only lineage/gen/GNNN and lineage/frozen/GNNN-x tags belong under lineage/")
    if obj.type != pygit2.enums.ObjectType.TAG:
        raise ArbiterRefusedError(ref, "record tags are annotated tags, as lineage writes them")
    commit = obj.peel(pygit2.Commit)
    generation = trailers(commit.message).get("Generation")
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
    import pygit2

    from .arbiter import check_signed_move

    if ref == f"refs/heads/{protected}":
        if old == ZERO and new != ZERO:
            # First push of the protected branch: replay its first-parent history move by move.
            chain = []
            commit = repo[new].peel(pygit2.Commit)
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
        if old != ZERO and old != new and not repo.descendant_of(new, old):
            raise ArbiterRefusedError(ref, "the evolution log is append-only; this update rewrites it",
                                      "Pull the hub's log, append on top of it, push again.")


def receive(lines: list[str], git_dir: str) -> int:
    """pre-receive: check every update; any refusal rejects the whole push."""
    import pygit2

    repo = pygit2.Repository(git_dir)
    # Pushed objects sit in a quarantine directory until the hook accepts them; libgit2 does
    # not read git's environment for it, so add it as an alternate explicitly.
    quarantine = os.environ.get("GIT_OBJECT_DIRECTORY")
    if quarantine:
        repo.odb.add_disk_alternate(quarantine)
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


@dataclass(frozen=True)
class PushResult:
    remote: str
    refs: list
    data_pushed: bool


def push(store=".", remote: str = "hub") -> PushResult:
    """Push DVC data first, then every lineage ref atomically; any rejected ref is an error."""
    from .adapters import dvc, git
    from .api import find_store

    root = find_store(store)
    repo = git.open_repo(root)
    protected = git.protected_branch(repo)
    # Data before refs: no ref on the hub may point at weights the DVC remote lacks. The refs
    # pushed are every branch and tag lineage keeps, so their data goes, not only the work tree's.
    dvc.dvc(["push", "-q", "--all-branches", "--all-tags"], cwd=root)
    _check_remote_has_everything(root)
    from . import faults

    faults.point("push:data-pushed")
    specs = [s.format(protected=protected) for s in PUSH_REFSPECS]
    specs = [s for s in specs if "*" in s or repo.references.get(s.split(":")[0]) is not None]
    proc = git.git(["push", "--atomic", "--porcelain", remote, *specs], cwd=root, check=False)
    faults.point("push:refs-pushed")
    rejected = [ln for ln in proc.stdout.splitlines() if ln.startswith("!")]
    if proc.returncode != 0 or rejected:
        reasons = [ln for ln in proc.stderr.splitlines() if "lineage hub:" in ln and "hint" not in ln]
        raise ArbiterRefusedError(f"{remote}", (reasons[0].split("lineage hub: ", 1)[1] if reasons else
                                                (rejected[0] if rejected else proc.stderr.strip()[-200:])),
                                  "Nothing was pushed (atomic). Fix the refused ref and push again.")
    refs = [ln.split("\t")[1] for ln in proc.stdout.splitlines() if "\t" in ln and ln[:1] in "*+ -"]
    return PushResult(remote, refs, True)


def _check_remote_has_everything(root) -> None:
    """Refuse to push refs while some data they point at is not in the DVC remote.

    ``dvc push`` only warns (and exits 0) about data that is neither in the local cache nor in
    the remote; pushing the refs then would publish generations nobody can restore.
    """
    import json

    from .adapters import dvc

    proc = dvc.dvc(["status", "--cloud", "--all-branches", "--all-tags", "--json"], cwd=root)
    absent = sorted(path for path, state in (json.loads(proc.stdout or "{}") or {}).items()
                    if state in ("new", "missing"))
    if absent:
        from .errors import IntegrityError

        err = IntegrityError(f"DVC remote lacks {', '.join(absent[:3])}{' …' if len(absent) > 3 else ''}",
                             "a ref to push points at data that is neither in the remote nor (all of it) "
                             "in the local cache; nothing was pushed to the hub")
        err.hint = "Fetch the data where it was trained ('dvc push -a -T' there), then run 'lineage push' again."
        raise err


def pull(store=".", remote: str = "hub") -> dict:
    """Fetch lineage refs and DVC data; fast-forward the protected branch through the local arbiter."""
    from .adapters import dvc, git
    from .api import find_store

    root = find_store(store)
    repo = git.open_repo(root)
    protected = git.protected_branch(repo)
    git.git(["fetch", "-q", remote, f"+refs/heads/*:refs/remotes/{remote}/*", "refs/tags/lineage/*:refs/tags/lineage/*",
             f"+refs/lineage/log:refs/remotes/{remote}/lineage-log"], cwd=root)
    moved = False
    theirs = repo.references.get(f"refs/remotes/{remote}/{protected}")
    mine = git.tip(repo, protected)
    if theirs is not None and mine is not None and str(theirs.target) != str(mine.id):
        if git.git(["symbolic-ref", "-q", "HEAD"], cwd=root, check=False).stdout.strip() == f"refs/heads/{protected}":
            git.git(["merge", "-q", "--ff-only", str(theirs.target)], cwd=root)
        else:
            git.git(["update-ref", f"refs/heads/{protected}", str(theirs.target), str(mine.id)], cwd=root)
        moved = True
    dvc.dvc(["pull", "-q", "--allow-missing"], cwd=root, check=False)
    return {"remote": remote, "protected_moved": moved}


if __name__ == "__main__":
    raise SystemExit(receive(sys.stdin.read().splitlines(), os.environ.get("GIT_DIR", ".")))
