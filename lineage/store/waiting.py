"""Registered data waiting for its candidate: out of the git index, in .git/lineage/pending/.

`lineage data add` checks a file, puts it in data/deltas/ (ignored by git through this clone's
.git/info/exclude) and keeps the .dvc file DVC writes for it here, not in the index: a plain
`git commit` on another branch, or `git add -A` there, cannot take it. `propose` puts the .dvc
files in place (with their data/deltas/.gitignore lines) just before it branches, so its candidate
commits them; once the protected branch holds a delta (its candidate was promoted), it stops
waiting. Deltas staged in the index by hand (`git checkout REV -- data/deltas`) still travel too.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import yaml

from ..adapters import dvc, git
from ..core.errors import DataGateError

DELTAS = "data/deltas"
EXCLUDE = f"/{DELTAS}/*.jsonl"  # the deltas' data: DVC's; git never sees it in this clone


def folder(store) -> Path:
    return store.git_dir / "lineage" / "pending"


def exclude_data(store) -> None:
    """Make git ignore the deltas' data files in this clone (.git/info/exclude), so DVC adds none to .gitignore."""
    common = store.git_dir
    if (common / "commondir").is_file():  # a linked worktree: info/exclude is the main repository's
        common = (common / (common / "commondir").read_text().strip()).resolve()
    exclude = common / "info" / "exclude"
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if EXCLUDE not in lines:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("\n".join([*lines, EXCLUDE]) + "\n")


def keep(store, rel: str) -> None:
    """Move the .dvc file `dvc add rel` wrote into the waiting folder (out of the work tree and the index)."""
    target = folder(store)
    target.mkdir(parents=True, exist_ok=True)
    (store.root / f"{rel}.dvc").replace(target / f"{Path(rel).name}.dvc")


def waiting(store) -> dict[str, str]:
    """{data/deltas/NAME.jsonl.dvc: its text} for each delta still waiting; one main holds already is dropped."""
    tip = store.tip()
    out = {}
    base = folder(store)
    for path in sorted(base.glob("*.dvc")) if base.is_dir() else []:
        rel = f"{DELTAS}/{path.name}"
        if tip is not None and git.read_blob(store.repo, tip, rel) is not None:
            path.unlink()  # promoted with its candidate: it waits no more
            continue
        out[rel] = path.read_text()
    return out


def _md5(text: str) -> str:
    out = (yaml.safe_load(text) or {}).get("outs") or [{}]
    return str(out[0].get("md5", ""))


def _cached(root: Path, md5: str) -> Path:
    local = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    return local if local.exists() else dvc.cache_dir(root) / "files" / "md5" / md5[:2] / md5[2:]


def restore(store) -> None:
    """Put back the data of waiting deltas that a `dvc checkout` removed (it drops outputs a candidate
    branch tracked and the checked-out branch does not), from the DVC cache."""
    for rel, text in waiting(store).items():
        data = store.root / rel.removesuffix(".dvc")
        cached = _cached(store.root, _md5(text))
        if not data.exists() and cached.is_file():
            shutil.copyfile(cached, data)


def place(store) -> list[str]:
    """Put every waiting delta's .dvc file and .gitignore line in data/deltas and stage them.

    Run on the protected branch just before a candidate branches off it: the branch takes the index
    along and its commit holds the deltas; going home drops them from main's index again.

    Raises:
        DataGateError: a delta's data changed since `lineage data add` checked it.
    """
    root = store.root
    found = waiting(store)
    if not found:
        return []
    ignore = root / DELTAS / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    for rel, text in found.items():
        data = rel.removesuffix(".dvc")
        md5 = _md5(text)
        digest = hashlib.md5((root / data).read_bytes()).hexdigest() if (root / data).is_file() else None
        if digest != md5:
            raise DataGateError(f"{data} {'changed' if digest else 'is gone'} since 'lineage data add' checked it",
                                f"Remove {folder(store) / Path(rel).name} and add the file again with "
                                "'lineage data add FILE'.")
        if not _cached(root, md5).exists():
            dvc.add(root, data)  # `lineage gc` dropped the cached copy: cache the same bytes again
        (root / rel).write_text(text)
        entry = f"/{Path(data).name}"
        if entry not in lines:
            lines.append(entry)
    ignore.write_text("\n".join(lines) + "\n")
    git.add(root, [*found, f"{DELTAS}/.gitignore"])
    return list(found)


def names(store, staged: list[str]) -> list[str]:
    """The ids of the deltas waiting for a candidate (d002-era2), here or staged by hand (staged)."""
    staged = [p for p in staged if p.endswith(".dvc")]
    return sorted({Path(p).name.removesuffix(".dvc").removesuffix(".jsonl") for p in [*waiting(store), *staged]})
