"""Git adapter: pygit2 for reads, the git CLI for everything that moves a ref or the work tree.

The only module that imports pygit2 or starts git. Reads (blobs, trailers, history) go through
pygit2; writes that a hook must see (commits, ref moves, checkouts) through the git CLI, because
libgit2 runs no hooks. Every function takes the directory to run in (or a repository object) and
names the one git operation it does, so the layers above read as what they mean.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import LineageError, NotAStoreError, StoreError
from . import ssh

PROTECTED_KEY = "lineage.protectedBranch"
DEFAULT_PROTECTED = "main"
TRAILER_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*): (.*)$")
ZERO = "0" * 40

Repo = Any    # pygit2.Repository (kept out of annotations so importing this module stays cheap)
Commit = Any  # pygit2.Commit


# ---------------------------------------------------------------- the CLI


def git(args: list[str], cwd: str | Path, check: bool = True, env: dict | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run the git CLI; raise StoreError with git's own message on failure."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, input=input)
    if check and proc.returncode != 0:
        refused = [ln for ln in proc.stderr.splitlines() if ln.startswith("lineage: refused")]
        if refused:  # our own hook said no: pass its reason on, not git's "aborted by hook"
            err = LineageError(refused[0][len("lineage: "):], "Generations move only by 'lineage promote' or "
                               "'lineage rollback'; policy and code by 'lineage change'.")
            err.exit_code = 1
            raise err
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise StoreError(f"git {' '.join(args[:2])} failed: {msg[-1] if msg else proc.returncode}")
    return proc


def _out(args: list[str], cwd: str | Path, **kw) -> str:
    return git(args, cwd, **kw).stdout.strip()


def _ok(args: list[str], cwd: str | Path) -> bool:
    return git(args, cwd, check=False).returncode == 0


# ---------------------------------------------------------------- repositories


def open_repo(path: str | Path = ".") -> Repo:
    """Open the git repository containing path."""
    import pygit2

    found = pygit2.discover_repository(str(path))
    if found is None:
        raise NotAStoreError(str(path))
    return pygit2.Repository(found)


def open_bare(git_dir: str | Path, alternate: str | None = None) -> Repo:
    """Open a bare repository (a hub), adding a quarantine object directory when git gives one."""
    import pygit2

    repo = pygit2.Repository(str(git_dir))
    if alternate:
        # Pushed objects sit in a quarantine directory until pre-receive accepts them; libgit2
        # does not read git's environment for it.
        repo.odb.add_disk_alternate(alternate)
    return repo


def top_level(path: str | Path) -> Path | None:
    """The work tree root containing path, or None outside a repository."""
    proc = git(["rev-parse", "--show-toplevel"], cwd=path, check=False)
    return Path(proc.stdout.strip()).resolve() if proc.returncode == 0 else None


def init(path: Path, branch: str, bare: bool = False) -> None:
    """git init (bare for a hub), with branch as the initial branch."""
    git(["init", "-q", *(["--bare"] if bare else []), "-b", branch, str(path)], cwd=path)


def protected_branch(repo: Repo) -> str:
    """Name of the protected branch (git config lineage.protectedBranch, default main)."""
    try:
        return repo.config[PROTECTED_KEY]
    except KeyError:
        return DEFAULT_PROTECTED


def config_get(cwd: str | Path, key: str) -> str | None:
    """A git config value as git resolves it (repository, global, system), or None."""
    proc = git(["config", key], cwd=cwd, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def config_set(cwd: str | Path, key: str, value: str) -> None:
    git(["config", key, value], cwd=cwd)


def committer_ident(cwd: str | Path, env: dict | None = None) -> str:
    """'Name <email> time zone' as git would write it for a tag or commit."""
    return _out(["var", "GIT_COMMITTER_IDENT"], cwd, env=env)


# ---------------------------------------------------------------- reading objects


def tip(repo: Repo, branch: str) -> Commit | None:
    """Commit at the tip of a local branch, or None when it does not exist yet."""
    ref = repo.references.get(f"refs/heads/{branch}")
    return None if ref is None else peel_commit(repo, ref.target)


def peel_commit(repo: Repo, oid) -> Commit:
    """The commit an object id (commit or annotated tag) stands for."""
    import pygit2

    return repo[oid].peel(pygit2.Commit)


def try_peel_commit(repo: Repo, oid) -> Commit | None:
    """peel_commit, or None when oid is missing or not a commit-ish."""
    import pygit2

    try:
        return repo[oid].peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return None


def ref_commit(repo: Repo, name: str) -> str | None:
    """The commit id a ref points at (tags peeled), or None when the ref does not exist."""
    ref = repo.references.get(name)
    return None if ref is None else str(peel_commit(repo, ref.target).id)


def is_annotated_tag(repo: Repo, oid) -> bool:
    import pygit2

    return repo[oid].type == pygit2.enums.ObjectType.TAG


def read_blob(repo: Repo, commit: Commit | None, path: str) -> bytes | None:
    """Bytes of path in commit's tree, or None when absent."""
    if commit is None:
        return None
    try:
        entry = commit.tree[path]
    except KeyError:
        return None
    obj = repo[entry.id]
    return obj.data if obj.type_str == "blob" else None


def files_in(repo: Repo, commit: Commit | None, folder: str) -> dict[str, bytes]:
    """The files directly in a folder of commit's tree: 'folder/name' -> bytes (none when absent)."""
    try:
        tree = repo[commit.tree[folder].id] if commit is not None else []
    except KeyError:
        return {}
    return {f"{folder}/{e.name}": repo[e.id].data for e in tree if repo[e.id].type_str == "blob"}


def entry_id(commit: Commit, path: str) -> str | None:
    """The object id of a tree entry (a blob or a whole folder), or None when absent."""
    try:
        return str(commit.tree[path].id)
    except KeyError:
        return None


def is_regular_file(commit: Commit, path: str) -> bool | None:
    """True for a plain blob at path, False for a link or anything else, None when absent."""
    import pygit2

    try:
        entry = commit.tree[path]
    except KeyError:
        return None
    return entry.filemode == pygit2.enums.FileMode.BLOB


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


def first_parent_history(repo: Repo, start) -> Iterator[Commit]:
    """start and its first parents, newest first."""
    import pygit2

    walker = repo.walk(start, pygit2.enums.SortMode.TOPOLOGICAL)
    walker.simplify_first_parent()
    yield from walker


def changed_paths(repo: Repo, a: Commit, b: Commit) -> list[str]:
    """Every path that differs between two commits' trees (either side's name)."""
    diff = repo.diff(a.tree, b.tree)
    return sorted({d.delta.new_file.path for d in diff} | {d.delta.old_file.path for d in diff})


def added_text(repo: Repo, a: Commit, b: Commit) -> Iterator[tuple[str, str | None]]:
    """(path, the lines b adds to it) for each changed path; None for binary files."""
    for patch in repo.diff(a.tree, b.tree):
        path = patch.delta.new_file.path
        if patch.delta.is_binary is False:
            yield path, "\n".join(line.content for hunk in patch.hunks for line in hunk.lines if line.origin == "+")
        else:
            yield path, None


def descends(repo: Repo, new, old) -> bool:
    """True when new has old in its history."""
    return bool(repo.descendant_of(new, old))


def refs_under(repo: Repo, prefix: str) -> Iterator[Any]:
    """Reference objects whose name starts with prefix, in one pass (stores hold thousands)."""
    for ref in repo.references.iterator():
        if ref.name.startswith(prefix):
            yield ref


# ---------------------------------------------------------------- refs through the CLI


def rev_parse(cwd: str | Path, name: str) -> str | None:
    """The object a name resolves to (an annotated tag peeled to its commit), or None."""
    target = f"{name}^{{}}" if name.startswith("refs/tags/") else name
    proc = git(["rev-parse", "-q", "--verify", target], cwd=cwd, check=False)
    return proc.stdout.strip() or None


def has_commits(cwd: str | Path) -> bool:
    return _ok(["rev-parse", "-q", "--verify", "HEAD"], cwd)


def current_branch(cwd: str | Path) -> str | None:
    """The checked-out branch's short name, or None when HEAD is detached."""
    ref = git(["symbolic-ref", "-q", "HEAD"], cwd=cwd, check=False).stdout.strip()
    return ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else None


def point_head(cwd: str | Path, branch: str) -> None:
    """Make HEAD name branch (before the branch has a commit)."""
    git(["symbolic-ref", "HEAD", f"refs/heads/{branch}"], cwd=cwd)


def update_ref(cwd: str | Path, ref: str, new: str, old: str | None, reason: str | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """Compare-and-swap one ref (old None: must not exist); the reference-transaction hook runs."""
    return git(["update-ref", *(["-m", reason] if reason else []), ref, new, old or ZERO], cwd=cwd, check=check)


def update_refs(cwd: str | Path, updates: list[tuple[str, str, str | None]]) -> subprocess.CompletedProcess:
    """Move refs (name, new, expected old or None to create) in one transaction; never raises."""
    lines = "".join(f"update {name} {new} {old or ZERO}\n" for name, new, old in updates)
    return git(["update-ref", "--stdin"], cwd=cwd, check=False, input=lines)


def make_tag_object(cwd: str | Path, name: str, commit: str, message: str, env: dict | None = None,
                    when: int | None = None, signing_key: Path | None = None) -> str:
    """An annotated tag object for commit, written without its ref (the ref moves in a transaction).

    when: date the tag no earlier than this Unix time. signing_key: sign it as `git tag -s` does with
    gpg.format=ssh (an SSH signature in the `git` namespace appended to the tag), so `git verify-tag`
    checks it.
    """
    ident = committer_ident(cwd, env)
    person, _, stamp = ident.rpartition("> ")
    seconds, _, zone = stamp.partition(" ")
    if when is not None and seconds.isdigit() and int(seconds) < when:
        ident = f"{person}> {when} {zone}"
    body = f"object {commit}\ntype commit\ntag {name}\ntagger {ident}\n\n{message}\n"
    if signing_key is not None:
        body += ssh.sign(signing_key, body.encode(), "git")
    return _out(["mktag"], cwd, input=body)


def tag(cwd: str | Path, name: str, target: str, message: str, env: dict | None = None) -> None:
    """Create an annotated tag (refused by git when it exists)."""
    git(["tag", "-a", name, "-m", message, target], cwd=cwd, env=env)


# ---------------------------------------------------------------- index, work tree, commits


def status_paths(cwd: str | Path) -> list[str]:
    """Paths git reports as modified or untracked (porcelain)."""
    out = git(["status", "--porcelain", "--untracked-files=all"], cwd=cwd).stdout
    return [line[3:] for line in out.splitlines() if line.strip()]


def work_tree_dirty(root: str | Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """Paths git reports as modified or untracked (porcelain), minus ignored prefixes."""
    return [p for p in status_paths(root) if not p.startswith(ignore)]


def index_ids(cwd: str | Path) -> dict[str, str]:
    """path -> blob id of every entry in the index."""
    out: dict[str, str] = {}
    for line in git(["ls-files", "-s"], cwd=cwd).stdout.splitlines():
        meta, _, path = line.partition("\t")
        out[path] = meta.split()[1]
    return out


def staged_paths(cwd: str | Path) -> list[str]:
    return git(["diff", "--cached", "--name-only"], cwd=cwd).stdout.split()


def anything_staged(cwd: str | Path) -> bool:
    return not _ok(["diff", "--cached", "--quiet"], cwd)


def index_matches(cwd: str | Path, commit: str, exclude: str) -> bool:
    """True when the index equals commit's tree outside the exclude pathspec."""
    return _ok(["diff-index", "--cached", "--quiet", commit, "--", ".", f":!{exclude}"], cwd)


def names_changed(cwd: str | Path, a: str, b: str, under: str) -> list[str]:
    return git(["diff", "--name-only", a, b, "--", under], cwd=cwd).stdout.split()


def add(cwd: str | Path, paths: list[str], check: bool = True) -> None:
    git(["add", "--", *paths], cwd=cwd, check=check)


def add_all(cwd: str | Path) -> None:
    git(["add", "-A"], cwd=cwd)


def commit(cwd: str | Path, message: str, env: dict | None = None, allow_empty: bool = False,
           no_hooks: bool = False) -> str:
    """Commit the index; return the new commit id."""
    args = [*(["-c", "core.hooksPath=/dev/null"] if no_hooks else []), "commit", "-q",
            *(["--allow-empty"] if allow_empty else []), "-m", message]
    git(args, cwd=cwd, env=env)
    return _out(["rev-parse", "HEAD"], cwd)


def write_tree(cwd: str | Path) -> str:
    return _out(["write-tree"], cwd)


def commit_tree(cwd: str | Path, tree: str, parent: str, message: str, env: dict | None = None,
                signing_key: Path | None = None) -> str:
    """A commit object on parent, written without moving any ref; SSH-signed by git with signing_key."""
    sign = ["-c", "gpg.format=ssh", "-c", f"user.signingKey={signing_key}"] if signing_key else []
    return _out([*sign, "commit-tree", tree, "-p", parent, *(["-S"] if signing_key else []), "-F", "-"], cwd,
                env=env, input=message)


def checkout(cwd: str | Path, branch: str, create_from: str | None = None, force: bool = False) -> None:
    """Check out a branch (creating it from create_from when given)."""
    git(["checkout", "-q", *(["-f"] if force else []), *(["-b", branch, create_from] if create_from else [branch])],
        cwd=cwd)


def checkout_paths(cwd: str | Path, rev: str, paths: list[str], check: bool = True) -> None:
    """Put paths as rev holds them into the index and work tree."""
    git(["checkout", rev, "--", *paths], cwd=cwd, check=check)


def clean(cwd: str | Path, paths: tuple[str, ...] | list[str]) -> None:
    """Remove untracked and ignored files under paths (run leftovers)."""
    git(["clean", "-fdqx", "--", *paths], cwd=cwd, check=False)


def read_tree_update(cwd: str | Path, old: str, new: str) -> None:
    """Two-tree merge of the index and work tree from old to new (staged extras stay staged)."""
    git(["read-tree", "-m", "-u", old, new], cwd=cwd)


def has_path(cwd: str | Path, rev: str, path: str) -> bool:
    return _ok(["cat-file", "-e", f"{rev}:{path}"], cwd)


def show_file(cwd: str | Path, rev: str, path: str) -> str | None:
    """The text of path at rev, or None when absent."""
    proc = git(["show", f"{rev}:{path}"], cwd=cwd, check=False)
    return proc.stdout if proc.returncode == 0 else None


def merge_ff_only(cwd: str | Path, target: str) -> None:
    git(["merge", "-q", "--ff-only", target], cwd=cwd)


def is_ignored(cwd: str | Path, path: str) -> bool:
    return _ok(["check-ignore", "-q", "--", path], cwd)


# ---------------------------------------------------------------- remotes


def reachable_commits(cwd: str | Path) -> set[str]:
    """Every commit HEAD, branches, tags and remote-tracking branches reach."""
    return set(git(["rev-list", "HEAD", "--branches", "--tags", "--remotes"], cwd=cwd).stdout.split())


def object_type(cwd: str | Path, sha: str) -> str:
    return git(["cat-file", "-t", sha], cwd=cwd, check=False).stdout.strip()


def is_shallow(cwd: str | Path) -> bool:
    return _out(["rev-parse", "--is-shallow-repository"], cwd) == "true"


def prune_worktrees(cwd: str | Path, dry_run: bool) -> list[str]:
    return git(["worktree", "prune", "--verbose", *(["--dry-run"] if dry_run else [])], cwd=cwd).stderr.splitlines()
