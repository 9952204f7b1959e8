"""The verbs of lineage. Each returns a value and prints nothing; the CLI does the talking."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import DirtyTreeError, InitConflictError, NotAStoreError, UsageError

TEMPLATE_FILES = ("dvc.yaml", "params.yaml", "stages/parent.py", "stages/prepare.py", "stages/train.py",
                  "stages/eval.py", "stages/gate.py")
GITIGNORE = ["/models/", "/.lineage/", "/reports/train_failure.json", "__pycache__/"]
FIRST_DELTA = "data/deltas/d000-era0.jsonl"
CACHE_TYPES = "reflink,hardlink,symlink,copy"
FSYNC = {"core.fsync": "objects,reference", "core.fsyncMethod": "fsync"}


@dataclass(frozen=True)
class InitResult:
    """What `init` did to the store."""

    root: str
    protected_branch: str
    remote: str
    created: list[str] = field(default_factory=list)
    committed: str | None = None


def template_text(name: str) -> str:
    """Text of a bundled template file (dvc.yaml, params.yaml, stages/*.py)."""
    return resources.files("lineage").joinpath("template", name).read_text()


def _git_root(path: Path) -> Path | None:
    from .adapters import git

    proc = git.git(["rev-parse", "--show-toplevel"], cwd=path, check=False)
    return Path(proc.stdout.strip()).resolve() if proc.returncode == 0 else None


def default_remote(root: Path) -> Path:
    """A local DVC remote beside the store, outside its work tree."""
    return root.parent / f"{root.name}.dvc-remote"


def init(path: str | Path = ".", protected_branch: str = "main", remote: str | None = None) -> InitResult:
    """Make a directory (or the current git repo) a lineage store; idempotent.

    Raises:
        InitConflictError: path is not a directory, or an existing dvc.yaml/stage script differs.
        DirtyTreeError: the git work tree has uncommitted changes.
    """
    from .adapters import dvc, git

    root = Path(path).expanduser()
    if root.exists() and not root.is_dir():
        raise InitConflictError(str(root), "not a directory", "Give a directory path (it is created if absent).")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    created: list[str] = []

    for name in TEMPLATE_FILES:  # refuse before touching anything
        target = root / name
        if name != "params.yaml" and target.exists() and target.read_text() != template_text(name):
            raise InitConflictError(str(root), f"an existing {name} differs from lineage's",
                                    f"Move {name} away (or merge lineage's stages into it by hand) and run init again.")

    top = _git_root(root)
    if top is None or top != root:
        if top is not None and path == ".":
            root = top
        else:
            git.git(["init", "-q", "-b", protected_branch, str(root)], cwd=root)
            created.append(".git")
    has_commits = git.git(["rev-parse", "-q", "--verify", "HEAD"], cwd=root, check=False).returncode == 0
    dirty = git.work_tree_dirty(root)
    if has_commits and dirty:
        raise DirtyTreeError(str(root), dirty)

    for name in TEMPLATE_FILES:
        target = root / name
        text = template_text(name)
        if target.exists():
            if name != "params.yaml" and target.read_text() != text:
                raise InitConflictError(str(root), f"an existing {name} differs from lineage's",
                                        f"Move {name} away (or merge lineage's stages into it by hand) and run init again.")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        created.append(name)
    from .policy import Policy
    from .settings import Settings, load_yaml

    params = load_yaml(root / "params.yaml")  # a user's own params.yaml must still be valid
    Settings.from_dict(params)
    Policy.from_params(params)

    ignore = root / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    missing = [g for g in GITIGNORE if g not in lines]
    if missing:
        ignore.write_text("\n".join(lines + missing) + "\n")
        created.append(".gitignore")

    if not (root / ".dvc").is_dir():
        dvc.dvc(["init", "-q"], cwd=root)
        created.append(".dvc")
    dvc.dvc(["config", "core.analytics", "false"], cwd=root)
    dvc.dvc(["config", "cache.type", CACHE_TYPES], cwd=root)
    remote_url = remote or str(default_remote(root))
    if "://" in remote_url:
        dvc.dvc(["remote", "add", "-f", "-d", "origin", remote_url], cwd=root)
    else:
        # A local path only means something on this machine: keep it out of the shared config.
        Path(remote_url).mkdir(parents=True, exist_ok=True)
        dvc.dvc(["remote", "add", "--local", "-f", "-d", "origin", remote_url], cwd=root)

    repo = git.open_repo(root)
    repo.config[git.PROTECTED_KEY] = protected_branch
    # A ref moved after a promotion must survive a power cut: fsync objects and refs (git >= 2.36).
    for key, value in FSYNC.items():
        repo.config[key] = value
    if not has_commits:
        git.git(["symbolic-ref", "HEAD", f"refs/heads/{protected_branch}"], cwd=root)

    if not (root / "data" / "deltas").exists():
        from . import corpus

        corpus.write_era(root / FIRST_DELTA, 0)
        dvc.dvc(["add", "-q", FIRST_DELTA], cwd=root)
        created.append(FIRST_DELTA)

    committed = None
    # Stage only what lineage wrote: a user's untracked files (a .env, say) never ride along.
    ours = [*TEMPLATE_FILES, ".gitignore", ".dvc", ".dvcignore", "data/deltas"]
    if not has_commits:
        from .signers import SIGNERS_FILE, adopt

        if adopt(root):  # a configured signing key becomes the store's first promoter and approver
            ours.append(SIGNERS_FILE)
            created.append(SIGNERS_FILE)
    git.git(["add", "--", *[p for p in ours if (root / p).exists()]], cwd=root)
    staged = git.git(["diff", "--cached", "--quiet"], cwd=root, check=False).returncode != 0
    if not has_commits:
        git.git(["commit", "-q", "--allow-empty", "-m", "lineage: init store\n\nLineage-Init: 1"],
                cwd=root, env=_identity_env(root))
        committed = git.git(["rev-parse", "HEAD"], cwd=root).stdout.strip()
    elif staged:
        # an existing repo becoming a store: this is a change to code and stages, not a generation
        git.git(["commit", "-q", "-m", "lineage: make this repository a store\n\nLineage-Init: 1"],
                cwd=root, env=_identity_env(root))
        committed = git.git(["rev-parse", "HEAD"], cwd=root).stdout.strip()
    from .hook import install

    install(repo.path, protected_branch)
    return InitResult(str(root), protected_branch, remote_url, created, committed)


def _identity_env(root: Path) -> dict:
    """Fall back to a lineage identity only when git has none configured."""
    from .adapters import git

    if git.git(["config", "user.email"], cwd=root, check=False).returncode == 0:
        return {}
    return {"GIT_AUTHOR_NAME": "lineage", "GIT_AUTHOR_EMAIL": "lineage@localhost",
            "GIT_COMMITTER_NAME": "lineage", "GIT_COMMITTER_EMAIL": "lineage@localhost"}


def find_store(path: str | Path = ".") -> Path:
    """Root of the store containing path."""
    root = _git_root(Path(path))
    if root is None or not (root / "dvc.yaml").exists() or not (root / ".dvc").is_dir():
        raise NotAStoreError(str(Path(path).resolve()))
    return root


@dataclass(frozen=True)
class DataAdded:
    """A delta registered in the store."""

    delta: str
    path: str
    records: int
    sha256: str


def data_add(file: str | Path, store: str | Path = ".", name: str | None = None) -> DataAdded:
    """Check a JSONL file through the data gate and register it as the next delta (DVC-tracked).

    The delta is staged, not committed: it travels into the next candidate commit.

    Raises:
        DataGateError: the file has an unparsable line, a secret or an unsafe source.
    """
    from .adapters import dvc
    from .data import DELTA_RE, read_delta
    from .pipeline.common import DELTAS, protected_policy

    root = find_store(store)
    src = Path(file).expanduser().resolve()
    if not src.is_file():
        raise UsageError(f"{file}: no such file", "Give the path of a JSONL file.")
    stem = name or src.stem
    if not re.fullmatch(r"[A-Za-z0-9_-]+", stem):
        raise UsageError(f"delta name {stem!r} must be letters, digits, '-' or '_'", "Pass --name NAME.")
    # a delta counts whether its data is here or only its .dvc file (not pulled yet)
    names = {p.name.removesuffix(".dvc") for p in (root / DELTAS).glob("d*.jsonl*")}
    existing = sorted(n for n in names if DELTA_RE.match(n))
    number = int(existing[-1][1:4]) + 1 if existing else 0
    rel = f"{DELTAS.as_posix()}/d{number:03d}-{stem}.jsonl"
    rules = protected_policy(root).policy.data
    staging = root / rel
    staging.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, staging)
    try:
        delta = read_delta(root, rel, rules)  # refuse before anything is registered
    except Exception as exc:
        staging.unlink(missing_ok=True)
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (exc.args[0].replace(rel, str(src)),) + exc.args[1:]  # name the file the user gave
        raise
    dvc.dvc(["add", "-q", rel], cwd=root)
    from .adapters import git

    git.git(["add", f"{rel}.dvc", str(Path(rel).parent / ".gitignore")], cwd=root)
    return DataAdded(delta.id, rel, len(delta.train_records), delta.sha256)


def corpus_era(era: int, out: str | Path) -> Path:
    """Write one era of the bundled corpus to a JSONL file."""
    from . import corpus

    if era < 0:
        raise UsageError(f"era {era} does not exist", "Eras are numbered from 0.")
    return corpus.write_era(out, era)


def _env_defaults() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


_env_defaults()
