"""init: make a directory (or the current git repository) a lineage store; idempotent."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..adapters import dvc, git
from ..core import corpus
from ..core.errors import DirtyTreeError, InitConflictError
from ..core.exam import EXAM_DIR, Exam, exam_path, item_from_line, merge, render_items
from ..core.policy import Policy
from ..core.settings import OVERRIDES, Settings, run_params
from ..guard.hook import install
from ..guard.signers import SIGNERS_FILE, adopt
from ..store import protected_state, registry
from ..store.root import Store, identity_env

TEMPLATE_FILES = ("dvc.yaml", "params.yaml", OVERRIDES, "stages/parent.py", "stages/prepare.py", "stages/train.py",
                  "stages/eval.py", "stages/gate.py")
GITIGNORE = ["/models/", "/.lineage/", "/reports/train_failure.json", "__pycache__/"]
FIRST_DELTA = "data/deltas/d000-era0.jsonl"
CACHE_TYPES = "reflink,hardlink,symlink,copy"
PLOTS_PAGE = ".dvc/plots/offline.html"  # plots.html_template, relative to .dvc/
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


def default_remote(root: Path) -> Path:
    """A local DVC remote beside the store, outside its work tree."""
    return root.parent / f"{root.name}.dvc-remote"


def _is_lineages(name: str, text: str) -> bool:
    """A file init wrote: the template itself (dvc.yaml: with the model's artifacts section init adds)."""
    template = template_text(name)
    if name == "dvc.yaml" and text.startswith(template) and text != template:
        return registry.declared_name(text[len(template):]) is not None
    return text == template


def _refuse_conflicts(root: Path) -> None:
    for name in TEMPLATE_FILES:
        target = root / name
        if name not in ("params.yaml", OVERRIDES) and target.exists() and not _is_lineages(name, target.read_text()):
            raise InitConflictError(str(root), f"an existing {name} differs from lineage's",
                                    f"Move {name} away (or merge lineage's stages into it by hand) and run init again.")


def write_first_exam(root: Path) -> list[str]:
    """Write era 0's exam of the bundled corpus into exam/<kind>.jsonl; return the paths written."""
    additions = [(*item_from_line(item, "corpus", n), n) for n, item in enumerate(corpus.exam_items(0), start=1)]
    exam = merge(Exam(), additions, "corpus").exam
    written = []
    for kind, items in exam.items.items():
        if items:
            path = root / exam_path(kind)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_items(items))
            written.append(exam_path(kind))
    return written


def init(path: str | Path = ".", protected_branch: str = "main", remote: str | None = None) -> InitResult:
    """Make a directory (or the current git repo) a lineage store; idempotent.

    Raises:
        InitConflictError: path is not a directory, or an existing dvc.yaml/stage script differs.
        DirtyTreeError: the git work tree has uncommitted changes.
    """
    root = Path(path).expanduser()
    if root.exists() and not root.is_dir():
        raise InitConflictError(str(root), "not a directory", "Give a directory path (it is created if absent).")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    created: list[str] = []
    _refuse_conflicts(root)  # before touching anything

    top = git.top_level(root)
    if top is None or top != root:
        if top is not None and path == ".":
            root = top
        else:
            git.init(root, protected_branch)
            created.append(".git")
    has_commits = git.has_commits(root)
    dirty = git.work_tree_dirty(root)
    if has_commits and dirty:
        raise DirtyTreeError(str(root), dirty)

    _refuse_conflicts(root)
    for name in TEMPLATE_FILES:
        target = root / name
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # The model is a DVC artifact from the first commit on: GTO reads tags only where dvc.yaml declares it.
        extra = registry.artifacts_yaml(registry.name_for(root.name)) if name == "dvc.yaml" else ""
        target.write_text(template_text(name) + extra)
        created.append(name)
    params = run_params(root / "params.yaml")  # a user's own params.yaml must still be valid
    Settings.from_dict(params)
    Policy.from_params(params)

    ignore = root / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    missing = [g for g in GITIGNORE if g not in lines]
    if missing:
        ignore.write_text("\n".join(lines + missing) + "\n")
        created.append(".gitignore")

    new_dvc = not (root / ".dvc").is_dir()
    if new_dvc:
        created.append(".dvc")
    # an existing store keeps its DVC config (a change to it would be an approved change)
    # `dvc plots show` renders offline: DVC's own page loads vega from a CDN, this one carries it.
    dvc.init(root, CACHE_TYPES, {"plots.html_template": str(Path(PLOTS_PAGE).relative_to(".dvc"))} if new_dvc else {})
    if new_dvc:
        (root / PLOTS_PAGE).parent.mkdir(parents=True, exist_ok=True)
        (root / PLOTS_PAGE).write_text(template_text("plots.html"))
        created.append(PLOTS_PAGE)
    remote_url = remote or str(default_remote(root))
    if "://" not in remote_url:
        # A local path only means something on this machine: keep it out of the shared config.
        Path(remote_url).mkdir(parents=True, exist_ok=True)
    dvc.set_default_remote(root, remote_url, local="://" not in remote_url)

    repo = git.open_repo(root)
    repo.config[git.PROTECTED_KEY] = protected_branch
    # A ref moved after a promotion must survive a power cut: fsync objects and refs (git >= 2.36).
    for key, value in FSYNC.items():
        repo.config[key] = value
    # `git verify-tag` / `git verify-commit` check lineage's git signatures against the store's signers.
    repo.config["gpg.ssh.allowedSignersFile"] = str(root / SIGNERS_FILE)
    if not has_commits:
        git.point_head(root, protected_branch)

    if not (root / "data" / "deltas").exists():
        corpus.write_era(root / FIRST_DELTA, 0)
        dvc.add(root, FIRST_DELTA)
        created.append(FIRST_DELTA)
        if not (root / EXAM_DIR).exists():  # a user's own exam is kept
            if write_first_exam(root):
                created.append(f"{EXAM_DIR}/")

    committed = None
    # Stage only what lineage wrote: a user's untracked files (a .env, say) never ride along.
    ours = [*TEMPLATE_FILES, ".gitignore", ".dvc", ".dvcignore", "data/deltas", EXAM_DIR]
    if not has_commits and adopt(root):  # a configured signing key becomes the store's first promoter and approver
        ours.append(SIGNERS_FILE)
        created.append(SIGNERS_FILE)
    git.add(root, [p for p in ours if (root / p).exists()])
    if not has_commits:
        committed = git.commit(root, "lineage: init store\n\nLineage-Init: 1", env=identity_env(root),
                               allow_empty=True)
    elif git.anything_staged(root):
        # an existing repo becoming a store: this is a change to code and stages, not a generation
        committed = git.commit(root, "lineage: make this repository a store\n\nLineage-Init: 1",
                               env=identity_env(root))
    install(repo.path, protected_branch)
    protected_state.refresh(Store(root, repo, protected_branch))  # DVC's view of the protected branch
    return InitResult(str(root), protected_branch, remote_url, created, committed)
