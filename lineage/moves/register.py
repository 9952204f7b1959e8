"""data add: check a JSONL file through the data gate and register it as the next delta."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..adapters import dvc, git
from ..core import corpus
from ..core.data import DELTA_RE, read_delta
from ..core.errors import UsageError
from ..store.rules import protected_policy

DELTAS = Path("data/deltas")


@dataclass(frozen=True)
class DataAdded:
    """A delta registered in the store."""

    delta: str
    path: str
    records: int
    sha256: str


def data_add(store, file: str | Path, name: str | None = None) -> DataAdded:
    """Check a JSONL file through the data gate and register it as the next delta (DVC-tracked).

    The delta is staged, not committed: it travels into the next candidate commit.

    Raises:
        UsageError: no such file, or a bad delta name.
        DataGateError: the file has an unparsable line, a secret or an unsafe source.
    """
    root = store.root
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
    rules = protected_policy(root, store.repo).policy.data
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
    dvc.add(root, rel)
    git.add(root, [f"{rel}.dvc", str(Path(rel).parent / ".gitignore")])
    return DataAdded(delta.id, rel, len(delta.train_records), delta.sha256)


def corpus_era(era: int, out: str | Path) -> Path:
    """Write one era of the bundled corpus to a JSONL file.

    Raises:
        UsageError: a negative era.
    """
    if era < 0:
        raise UsageError(f"era {era} does not exist", "Eras are numbered from 0.")
    return corpus.write_era(out, era)
