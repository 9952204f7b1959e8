"""Git adapter: pygit2 for reads and compare-and-swap ref moves, the git CLI where hooks matter."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from ..errors import NotAStoreError, StoreError

PROTECTED_KEY = "lineage.protectedBranch"
DEFAULT_PROTECTED = "main"
TRAILER_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*): (.*)$")


def open_repo(path: str | Path = "."):
    """Open the git repository containing path."""
    import pygit2

    found = pygit2.discover_repository(str(path))
    if found is None:
        raise NotAStoreError(str(path))
    return pygit2.Repository(found)


def git(args: list[str], cwd: str | Path, check: bool = True, env: dict | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run the git CLI; raise StoreError with git's own message on failure."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, input=input)
    if check and proc.returncode != 0:
        refused = [ln for ln in proc.stderr.splitlines() if ln.startswith("lineage: refused")]
        if refused:  # our own hook said no: pass its reason on, not git's "aborted by hook"
            from ..errors import LineageError

            err = LineageError(refused[0][len("lineage: "):], "Generations move only by 'lineage promote' or "
                                                               "'lineage rollback'; policy and code by 'lineage change'.")
            err.exit_code = 1
            raise err
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise StoreError(f"git {' '.join(args[:2])} failed: {msg[-1] if msg else proc.returncode}")
    return proc


def protected_branch(repo) -> str:
    """Name of the protected branch (git config lineage.protectedBranch, default main)."""
    try:
        return repo.config[PROTECTED_KEY]
    except KeyError:
        return DEFAULT_PROTECTED


def tip(repo, branch: str):
    """Commit at the tip of a local branch, or None when it does not exist yet."""
    ref = repo.references.get(f"refs/heads/{branch}")
    if ref is None:
        return None
    import pygit2

    return repo[ref.target].peel(pygit2.Commit)


def read_blob(repo, commit, path: str) -> bytes | None:
    """Bytes of path in commit's tree, or None when absent."""
    if commit is None:
        return None
    try:
        entry = commit.tree[path]
    except KeyError:
        return None
    obj = repo[entry.id]
    return obj.data if obj.type_str == "blob" else None


def trailers(message: str) -> dict[str, str]:
    """Parse the trailer block (last paragraph of Key: value lines) of a commit message."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return {}
    out: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        m = TRAILER_RE.match(line.strip())
        if not m:
            return {}
        out[m.group(1)] = m.group(2).strip()
    return out


def work_tree_dirty(root: str | Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """Paths git reports as modified or untracked (porcelain), minus ignored prefixes."""
    out = git(["status", "--porcelain", "--untracked-files=all"], cwd=root).stdout
    paths = [line[3:] for line in out.splitlines() if line.strip()]
    return [p for p in paths if not p.startswith(ignore)]
