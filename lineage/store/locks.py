"""Locks: stale git ref locks found and cleared, and the lock that keeps a clean-tree check honest.

A ``*.lock`` file left in the git directory by a killed git process blocks every later ref
update. ``ref_locks`` reports each with its age and the processes that could hold it; only a lock
no live git, DVC or lineage process in this store could hold is removed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..adapters.git import open_repo

log = logging.getLogger("lineage")

STALE_AFTER_S = 2.0  # git holds a ref lock for milliseconds


def git_dir_of(root: Path) -> Path:
    """The git directory of the work tree at root."""
    return Path(open_repo(root).path)


@contextmanager
def work_tree_lock(git_dir: Path, exclusive: bool) -> Iterator[None]:
    """Keep a clean-tree check from seeing the instant between a ref move and its work tree update.

    promote and rollback hold it exclusively from their ref transaction until the work tree
    follows; the clean-tree check of every command holds it shared. The kernel drops it with
    the process, so a killed command never leaves it behind.
    """
    path = Path(git_dir) / "lineage" / "worktree.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


@dataclass(frozen=True)
class RefLock:
    """A git ``*.lock`` file in the git directory and who could be holding it."""

    path: str
    age_s: float
    holders: list | None  # "git (pid 123)"; None when /proc cannot tell

    @property
    def stale(self) -> bool:
        return self.holders == [] and self.age_s >= STALE_AFTER_S

    def describe(self) -> str:
        if self.stale:
            return (f"{self.path} is left over from a killed git process (age {self.age_s:.0f} s, "
                    "no process holds it)")
        if self.holders:
            return f"{self.path} is held by {', '.join(self.holders)}"
        return f"{self.path} is {self.age_s:.1f} s old; cannot tell whether a process holds it"


def ref_locks(root: str | Path) -> list[RefLock]:
    """Every ref, packed-refs, HEAD or index lock in the store's git directory."""
    git_dir = git_dir_of(Path(root))
    found = [p for p in (git_dir / "refs").rglob("*.lock")]
    found += [git_dir / n for n in ("packed-refs.lock", "HEAD.lock", "index.lock") if (git_dir / n).exists()]
    if not found:
        return []
    holders = _processes_in(Path(root).resolve(), git_dir.resolve())
    now = time.time()
    out = []
    for path in sorted(found):
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue  # its git finished meanwhile
        out.append(RefLock(str(path.relative_to(git_dir.parent)), age, holders))
    return out


def _processes_in(root: Path, git_dir: Path) -> list | None:
    """git, DVC or lineage processes working in this store (not this one), or None without /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    me = os.getpid()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        name = os.path.basename(args[0].decode(errors="replace")) if args and args[0] else ""
        line = b" ".join(args).decode(errors="replace")
        if not (name.startswith("git") or "lineage" in line or "dvc" in line):
            continue
        inside = cwd == root or root in cwd.parents or cwd == git_dir or git_dir in cwd.parents
        if not inside:
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                environ = []
            inside = any(v.startswith(b"GIT_DIR=") and Path(v[8:].decode(errors="replace")).resolve() == git_dir
                         for v in environ)
        if inside:
            found.append(f"{name or '?'} (pid {entry.name})")
    return found


def lasting_lock(root: str | Path, stderr: str) -> str | None:
    """The lock git could not take, described, when it has stood too long to be another writer's moment."""
    match = re.search(r"Unable to create '([^']+\.lock)': File exists", stderr)
    if not match:
        return None
    try:
        age = time.time() - Path(match.group(1)).stat().st_mtime
    except FileNotFoundError:
        return None  # gone already: it was a racing writer
    if age < STALE_AFTER_S:
        return None
    try:
        rel = str(Path(match.group(1)).resolve().relative_to(git_dir_of(Path(root)).resolve().parent))
    except ValueError:
        rel = match.group(1)
    return next((lock.describe() for lock in ref_locks(root) if lock.path == rel), f"{rel} is in the way")


def describe_locks(root: str | Path) -> list[str]:
    """One line per lock in the way."""
    return [lock.describe() for lock in ref_locks(root)]


def clear_stale_locks(root: str | Path) -> list[str]:
    """Remove each lock no live process could hold; say which (one line each). Refuse nothing else."""
    notes = []
    git_dir = git_dir_of(Path(root))
    for lock in ref_locks(root):
        if not lock.stale:
            continue
        (git_dir.parent / lock.path).unlink(missing_ok=True)
        note = (f"removed stale lock {lock.path}: a killed git process left it "
                f"(age {lock.age_s:.0f} s, no process held it)")
        log.warning("%s", note)
        notes.append(note)
    return notes
