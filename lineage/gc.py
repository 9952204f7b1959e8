"""Safe garbage collection: free DVC cache (and remote) space, never a generation's data.

``lineage gc`` runs ``dvc gc`` with everything kept that any part of the record can reach: the
work tree, every commit, every tag (frozen candidates, promoted generations), every branch
(candidates), every experiment. What goes is data nothing in git refers to: the outputs of runs
that were never committed (a killed propose), files added and dropped again.

``--cloud`` deletes from the DVC remote too. It is refused where the remote could hold data of
refs this store cannot see — a git remote (the hub) with refs missing here, or a shallow clone —
and while a lineage command runs in this store, since propose pushes data before committing it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError, UsageError

KEEP = ["--workspace", "--all-commits", "--all-tags", "--all-branches", "--all-experiments"]


@dataclass(frozen=True)
class GcResult:
    """What `lineage gc` removed."""

    cache_objects: int
    cache_bytes: int
    remote_objects: int | None
    remote_bytes: int | None  # None when the remote is not a local directory (not measured)
    dry_run: bool
    pruned_worktrees: list


def _files(path: Path | None) -> dict:
    """Every file under path: its (device, inode) and size."""
    found = {}
    if path is None or not path.is_dir():
        return found
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            found[os.path.join(folder, name)] = ((st.st_dev, st.st_ino), st.st_size)
    return found


def _freed(before: dict, after: dict) -> int:
    """Bytes of the files gc removed, each inode once (gc may also fetch a directory listing it needs)."""
    gone = {key: size for path, (key, size) in before.items() if path not in after}
    return sum(gone.values())


def _local_remote(root: Path) -> Path | None:
    """The default DVC remote's directory when it is a local path."""
    from .adapters import dvc

    name = dvc.dvc(["remote", "default"], cwd=root, check=False).stdout.strip()
    if not name:
        return None
    url = dvc.dvc(["remote", "list"], cwd=root, check=False).stdout
    for line in url.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == name:
            if "://" in parts[1] and not parts[1].startswith("file://"):
                return None
            path = Path(parts[1].removeprefix("file://"))
            return path if path.is_absolute() else (root / ".dvc" / path).resolve()
    return None


def _refs_missing_here(root: Path) -> list[str]:
    """Refs of any git remote whose commits this store's own history does not reach."""
    from .adapters.git import git

    remotes = git(["remote"], cwd=root).stdout.split()
    if not remotes:
        return []
    # what dvc gc --all-commits walks: HEAD, branches, remote-tracking branches, tags
    reachable = set(git(["rev-list", "HEAD", "--branches", "--tags", "--remotes"], cwd=root).stdout.split())
    missing = []
    for remote in remotes:
        listed = git(["ls-remote", remote], cwd=root, check=False)
        if listed.returncode != 0:
            raise StoreError(f"cannot list the refs of git remote '{remote}': "
                             f"{(listed.stderr.strip().splitlines() or ['unreachable'])[-1]}",
                             "gc --cloud must see every ref that shares the DVC remote; reach it, or drop --cloud.")
        peeled = {}
        for line in listed.stdout.splitlines():
            sha, ref = line.split("\t")
            peeled[ref.removesuffix("^{}")] = sha  # the peeled line of an annotated tag comes last
        for ref, sha in sorted(peeled.items()):
            if ref == "HEAD" or ref.startswith("refs/lineage/") or not re.fullmatch(r"[0-9a-f]{40}", sha):
                continue  # lineage's own refs (the evolution log) hold empty trees: no DVC data
            is_commit = git(["cat-file", "-t", sha], cwd=root, check=False).stdout.strip() == "commit"
            if not is_commit or sha not in reachable:
                missing.append(f"{remote} {ref}")
    return missing


def gc(store=".", cloud: bool = False, dry_run: bool = False) -> GcResult:
    """Remove DVC cache (and with cloud, remote) objects nothing in the record refers to.

    Raises:
        UsageError: a lineage command is running here, or cloud where the remote may hold
            data of refs this store does not have.
    """
    from . import recovery
    from .adapters import dvc
    from .adapters.git import git
    from .api import find_store

    root = find_store(store)
    recovery.recover(root)  # finish what a killed command left, so its data is referenced or gone
    running = _running_commands(root)
    if running:
        raise UsageError(f"a lineage command is running in this store ({running[0]}); gc now could delete data "
                         "it has pushed but not yet committed", "Wait for it to finish, then run gc again.")
    if cloud:
        if git(["rev-parse", "--is-shallow-repository"], cwd=root).stdout.strip() == "true":
            raise UsageError("gc --cloud in a shallow clone would delete the data of every commit it cannot see",
                             "Run it in a full clone ('git fetch --unshallow').")
        missing = _refs_missing_here(root)
        if missing:
            raise UsageError(f"gc --cloud would delete data of {len(missing)} ref(s) this store lacks, "
                             f"e.g. {missing[0]}", "Fetch every ref first ('lineage pull', or 'git fetch REMOTE "
                             "\"+refs/*:refs/remotes/REMOTE/all/*\"'), then run gc --cloud again.")
    cache = dvc.cache_dir(root)
    remote_dir = _local_remote(root) if cloud else None
    before = _files(cache), _files(remote_dir)
    args = ["gc", *KEEP, "--force", *(["--cloud"] if cloud else []), *(["--dry"] if dry_run else [])]
    proc = dvc.dvc(args, cwd=root)
    text = proc.stdout + proc.stderr
    pruned = git(["worktree", "prune", "--verbose", *(["--dry-run"] if dry_run else [])], cwd=root).stderr.splitlines()
    cache_objects = sum(int(n) for n in re.findall(r"Removed (\d+) objects from (?:repo|legacy) cache", text))
    remote_objects = sum(int(n) for n in re.findall(r"Removed (\d+) objects from remote", text)) if cloud else None
    if dry_run:
        return GcResult(cache_objects, 0, remote_objects, 0 if remote_dir else None, True, pruned)
    return GcResult(cache_objects, _freed(before[0], _files(cache)), remote_objects,
                    _freed(before[1], _files(remote_dir)) if remote_dir else None, False, pruned)


def _running_commands(root: Path) -> list[str]:
    """Live lineage commands in this store, by their journals (see recovery.py)."""
    import fcntl
    import json

    from .recovery import JOURNALS, _git_dir

    folder = _git_dir(root) / JOURNALS
    running = []
    for lock in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    data = json.loads(lock.with_suffix(".json").read_text())
                    running.append(f"{data['op']} by pid {data['pid']}")
                except (OSError, ValueError, KeyError):
                    running.append(f"pid unknown, {lock.name}")
    return running
