"""Gathering: everything the arbiter needs to judge a move of the protected branch, read out of git.

``gather_move`` reads commits, trees and blobs once and returns plain data (``MoveEvidence``);
``arbiter.judge_move`` decides over that data alone. Tests build ``MoveEvidence`` from data files
(``tests/data/moves/*.yaml``) to prove each refusal without a repository.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field

from ..adapters import git
from ..store import refs

SIGNERS_FILE = "allowed_signers"
DELTA_DVC = "data/deltas/*.dvc"
# The files a generation's evidence is made of, read from the candidate commit.
EVIDENCE_FILES = ("params.yaml", "metrics.json", "reports/train/metrics.json", "reports/gate.json",
                  "reports/train/hashes.csv", "reports/train/manifest.json", "dvc.lock")
# What a rollback must restore exactly as the generation it names had it: the files named first
# (for a readable refusal), then every restored entry by object id (reports/ as a whole folder).
ROLLBACK_FILES = ("dvc.lock", "metrics.json", "reports/train/hashes.csv", "reports/train/manifest.json")
RESTORED = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md", "reports")


@dataclass(frozen=True)
class DeltaFile:
    """A delta's .dvc file in the candidate: whether it is a plain file, and its text."""

    regular: bool
    text: str | None


@dataclass(frozen=True)
class MoveEvidence:
    """A proposed move of the protected branch from old to new, as plain data.

    Blobs are text (None when absent). ``old_files`` are the replaced commit's, ``new_files`` the
    candidate's; ``rollback_target_files`` are those of the commit that promoted the generation a
    rollback names (None when the branch never promoted it).
    """

    protected: str
    old: str | None
    new: str | None
    new_parents: list[str] = field(default_factory=list)
    new_root_init: bool = False          # new has no parents and a Lineage-Init: 1 trailer
    descends: bool = False               # new has old in its history
    trailers: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    old_files: dict[str, str | None] = field(default_factory=dict)
    new_files: dict[str, str | None] = field(default_factory=dict)
    delta_files: dict[str, DeltaFile] = field(default_factory=dict)
    served_by_old: str | None = None     # the generation the replaced commit serves
    rollback_target_files: dict[str, str | None] | None = None
    rollback_target_ids: dict[str, str | None] | None = None  # RESTORED entries of the target, by object id
    new_ids: dict[str, str | None] = field(default_factory=dict)  # RESTORED entries of the candidate

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.protected}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MoveEvidence:
        d = dict(d)
        d["delta_files"] = {k: DeltaFile(**v) for k, v in (d.get("delta_files") or {}).items()}
        return cls(**d)


def _text(blob: bytes | None) -> str | None:
    """Blob bytes as text, losslessly (undecodable bytes kept as surrogates; see as_bytes)."""
    return None if blob is None else blob.decode("utf-8", errors="surrogateescape")


def as_bytes(text: str | None) -> bytes | None:
    """The exact bytes a text of _text came from."""
    return None if text is None else text.encode("utf-8", errors="surrogateescape")


def _files(repo, commit, paths) -> dict[str, str | None]:
    return {p: _text(git.read_blob(repo, commit, p)) for p in paths}


def gather_move(repo, old_id: str | None, new_id: str | None, protected: str = "main") -> MoveEvidence:
    """Read what judging a move of refs/heads/<protected> from old_id to new_id needs."""
    if new_id in (None, git.ZERO):
        return MoveEvidence(protected, old_id, None)
    new = git.peel_commit(repo, new_id)
    info = git.trailers(new.message)
    parents = [str(p.id) for p in new.parents]
    base = MoveEvidence(protected, None, str(new.id), parents,
                        new_root_init=info.get("Lineage-Init") == "1" and not parents, trailers=info)
    if old_id in (None, git.ZERO):
        return base
    old = git.peel_commit(repo, old_id)
    if old.id == new.id or parents != [str(old.id)]:
        return MoveEvidence(protected, str(old.id), str(new.id), parents, base.new_root_init,
                            descends=old.id != new.id and git.descends(repo, new.id, old.id), trailers=info)
    changed = git.changed_paths(repo, old, new)
    delta_files = {}
    for path in changed:
        if fnmatch.fnmatch(path, DELTA_DVC):
            regular = git.is_regular_file(new, path)
            if regular is not None:  # None: deleted
                delta_files[path] = DeltaFile(regular, _text(git.read_blob(repo, new, path)) if regular else None)
    target_files = target_ids = None
    new_ids: dict[str, str | None] = {}
    if "Rollback-To" in info:
        new_ids = {name: git.entry_id(new, name) for name in RESTORED}
        for commit in git.first_parent_history(repo, old.id):
            if git.trailers(commit.message).get("Generation") == info["Rollback-To"]:
                target_files = _files(repo, commit, ROLLBACK_FILES)
                target_ids = {name: git.entry_id(commit, name) for name in RESTORED}
                break
    return MoveEvidence(
        protected, str(old.id), str(new.id), parents, False, True, info, changed,
        old_files=_files(repo, old, ("params.yaml",)), new_files=_files(repo, new, EVIDENCE_FILES),
        delta_files=delta_files, served_by_old=refs.served_generation(old), rollback_target_files=target_files,
        rollback_target_ids=target_ids, new_ids=new_ids)
