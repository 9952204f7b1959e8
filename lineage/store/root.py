"""The store: a git work tree with DVC, opened once per command and passed down.

A ``Store`` holds what every layer asks about a store (its root, its repository, its protected
branch, its git directory and the identity commits are made with), so no helper rediscovers the
store from a path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters import git
from ..core.errors import NotAStoreError

LINEAGE_IDENTITY = {"GIT_AUTHOR_NAME": "lineage", "GIT_AUTHOR_EMAIL": "lineage@localhost",
                    "GIT_COMMITTER_NAME": "lineage", "GIT_COMMITTER_EMAIL": "lineage@localhost"}


def find_root(path: str | Path = ".") -> Path:
    """Root of the store containing path.

    Raises:
        NotAStoreError: path is not inside a git work tree with dvc.yaml and .dvc/.
    """
    root = git.top_level(Path(path))
    if root is None or not (root / "dvc.yaml").exists() or not (root / ".dvc").is_dir():
        raise NotAStoreError(str(Path(path).resolve()))
    return root


def identity_env(root: Path) -> dict:
    """Fall back to a lineage identity only when git has none configured."""
    return {} if git.config_get(root, "user.email") is not None else dict(LINEAGE_IDENTITY)


@dataclass
class Store:
    """One open store: root, repository (pygit2, through the git adapter), protected branch."""

    root: Path
    repo: Any
    protected: str
    _env: dict | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | Path | Store = ".") -> Store:
        """Open the store containing path (a Store is returned as it is).

        Raises:
            NotAStoreError: path is not in a lineage store.
        """
        if isinstance(path, Store):
            return path
        root = find_root(path)
        repo = git.open_repo(root)
        return cls(root, repo, git.protected_branch(repo))

    @property
    def git_dir(self) -> Path:
        return Path(self.repo.path)

    @property
    def protected_ref(self) -> str:
        return f"refs/heads/{self.protected}"

    def tip(self):
        """The commit the protected branch points at, or None before the first commit."""
        return git.tip(self.repo, self.protected)

    def ref(self, name: str) -> str | None:
        """The commit a ref points at now, as git sees it (tags peeled), or None."""
        return git.rev_parse(self.root, name)

    def on_protected(self) -> bool:
        return git.current_branch(self.root) == self.protected

    def env(self) -> dict:
        """Environment for commits and tags: the user's git identity, else lineage's."""
        if self._env is None:
            self._env = identity_env(self.root)
        return dict(self._env)

    def person(self) -> str:
        """'Name <email>' of whoever runs this command, as git would record it."""
        env = self.env()
        name = env.get("GIT_AUTHOR_NAME") or git.config_get(self.root, "user.name") or ""
        email = env.get("GIT_AUTHOR_EMAIL") or git.config_get(self.root, "user.email") or ""
        return f"{name} <{email}>"

    def reopen(self) -> None:
        """Drop cached repository state after another process wrote refs (pygit2 caches packed refs)."""
        self.repo = git.open_repo(self.root)
