"""Commits and trees written with pygit2 without touching the work tree or moving a ref: the log's
empty-tree events, a rollback's tree taken from a generation, an approved change of only the paths it
names (read from the index).

Split from git.py, which moves refs and the work tree through the git CLI.
"""

from __future__ import annotations

from pathlib import Path

from .git import Commit, Repo, git


def write_empty_commit(repo: Repo, message: str, parent: str | None) -> str:
    """A commit over the empty tree, by 'lineage', written without moving any ref (the log's events)."""
    import pygit2

    sig = pygit2.Signature("lineage", "lineage@localhost")
    return str(repo.create_commit(None, sig, sig, message, repo.TreeBuilder().write(), [parent] if parent else []))


def tree_with(repo: Repo, base: Commit, source: Commit, names: tuple[str, ...]) -> str:
    """The tree of base with each top-level name taken from source (removed where source lacks it)."""
    builder = repo.TreeBuilder(base.tree)
    for name in names:
        if name in source.tree:
            builder.insert(name, source.tree[name].id, source.tree[name].filemode)
        elif name in base.tree:
            builder.remove(name)
    return str(builder.write())


def staged_names(cwd: str | Path) -> list[str]:
    """Every path whose index entry differs from HEAD (renames as a removal and an addition)."""
    out = git(["diff", "--cached", "--name-only", "--no-renames", "-z"], cwd=cwd).stdout
    return [p for p in out.split("\0") if p]


def tree_with_staged(repo: Repo, base: Commit, paths: list[str]) -> str:
    """The tree of base with each path as the index stages it (removed where the index has none)."""
    import pygit2

    staged = pygit2.Index(str(Path(repo.path) / "index"))
    tree = pygit2.Index()
    tree.read_tree(base.tree)
    for path in paths:
        if path in staged:
            entry = staged[path]
            tree.add(pygit2.IndexEntry(path, entry.id, entry.mode))
        elif path in tree:
            tree.remove(path)
    return str(tree.write_tree(repo))


def staged_blob(repo: Repo, path: str) -> bytes | None:
    """The bytes the index stages for path, or None when the index has no such file."""
    import pygit2

    staged = pygit2.Index(str(Path(repo.path) / "index"))
    if path not in staged:
        return None
    obj = repo[staged[path].id]
    return obj.data if obj.type_str == "blob" else None
