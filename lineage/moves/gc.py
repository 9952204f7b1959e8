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

from ..adapters import dvc, git, git_remote
from ..core.errors import StoreError, UsageError
from ..store.journal import running_commands

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
    found: dict[str, tuple[tuple[int, int], int]] = {}
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
    url = dvc.default_remote_url(root)
    if url is None or ("://" in url and not url.startswith("file://")):
        return None
    path = Path(url.removeprefix("file://"))
    return path if path.is_absolute() else (root / ".dvc" / path).resolve()


def _refs_missing_here(root: Path) -> list[str]:
    """Refs of any git remote whose commits this store's own history does not reach."""
    names = git_remote.remotes(root)
    if not names:
        return []
    # what dvc gc --all-commits walks: HEAD, branches, remote-tracking branches, tags
    reachable = git.reachable_commits(root)
    missing = []
    for remote in names:
        try:
            peeled = git_remote.remote_refs(root, remote)
        except StoreError as exc:
            raise StoreError(str(exc), "gc --cloud must see every ref that shares the DVC remote; reach it, "
                                       "or drop --cloud.") from None
        for ref, sha in sorted(peeled.items()):
            if ref == "HEAD" or ref.startswith("refs/lineage/") or not re.fullmatch(r"[0-9a-f]{40}", sha):
                continue  # lineage's own refs (the evolution log) hold empty trees: no DVC data
            if git.object_type(root, sha) != "commit" or sha not in reachable:
                missing.append(f"{remote} {ref}")
    return missing


def gc(store, cloud: bool = False, dry_run: bool = False) -> GcResult:
    """Remove DVC cache (and with cloud, remote) objects nothing in the record refers to.

    Recovery of killed commands has run before (at the api boundary), so their data is referenced
    or gone.

    Raises:
        UsageError: a lineage command is running here, or cloud where the remote may hold
            data of refs this store does not have.
    """
    root = store.root
    running = running_commands(store.git_dir)
    if running:
        raise UsageError(f"a lineage command is running in this store ({running[0]}); gc now could delete data "
                         "it has pushed but not yet committed", "Wait for it to finish, then run gc again.")
    if cloud:
        if git.is_shallow(root):
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
    text = dvc.gc(root, KEEP, cloud, dry_run)
    pruned = git.prune_worktrees(root, dry_run)
    cache_objects = sum(int(n) for n in re.findall(r"Removed (\d+) objects from (?:repo|legacy) cache", text))
    remote_objects = sum(int(n) for n in re.findall(r"Removed (\d+) objects from remote", text)) if cloud else None
    if dry_run:
        return GcResult(cache_objects, 0, remote_objects, 0 if remote_dir else None, True, pruned)
    return GcResult(cache_objects, _freed(before[0], _files(cache)), remote_objects,
                    _freed(before[1], _files(remote_dir)) if remote_dir else None, False, pruned)
