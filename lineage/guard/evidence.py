"""Gathering: everything the arbiter needs to judge a move of the protected branch, read out of git.

``gather_move`` reads commits, trees and blobs once and returns plain data (``MoveEvidence``);
``arbiter.judge_move`` decides over that data alone. With ``signed=True`` it also gathers what a
store with signers requires (``SignedEvidence``): the verdicts about the commit and the
attestations of it, each with the outcome of its signature check already run (ssh-keygen is a
process, so it runs here, not in the judge), and the replaced commit's exam digests and risk.
Tests build ``MoveEvidence`` from data files (``tests/data/moves/*.yaml``) to prove each refusal
without a repository.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field

import yaml

from ..adapters import git
from ..core.errors import LineageError
from ..core.settings import OVERRIDES
from ..store import refs
from ..store.exam import pin_digest, read_exam
from . import attest, risk, verdict
from .signers import requires

SIGNERS_FILE = "allowed_signers"
DELTA_DVC = "data/deltas/*.dvc"
# The files a generation's evidence is made of, read from the candidate commit.
EVIDENCE_FILES = ("params.yaml", OVERRIDES, "metrics.json", "reports/train/metrics.json", "reports/gate.json",
                  "reports/train/hashes.csv", "reports/train/manifest.json", "dvc.lock", SIGNERS_FILE)
OLD_FILES = ("params.yaml", SIGNERS_FILE)  # read from the replaced commit
# What a rollback must restore exactly as the generation it names had it: the files named first
# (for a readable refusal), then every restored entry by object id (reports/ as a whole folder).
ROLLBACK_FILES = ("dvc.lock", "metrics.json", "reports/train/hashes.csv", "reports/train/manifest.json")
RESTORED = ("dvc.lock", "metrics.json", "EVAL.md", "MODEL_CARD.md", "reports", OVERRIDES)


@dataclass(frozen=True)
class DeltaFile:
    """A delta's .dvc file in the candidate: whether it is a plain file, and its text."""

    regular: bool
    text: str | None


@dataclass(frozen=True)
class AttestationSeen:
    """An attestation of the moved commit, its signature already checked (problem None: it verifies)."""

    action: str | None
    role: str | None
    signer: str | None
    problem: str | None


@dataclass(frozen=True)
class VerdictSeen:
    """A verdict about the moved commit, its signature already checked (problem None: it verifies)."""

    commit: str | None
    weights: str | None
    policy_commit: str | None
    exam: str | None
    sealed_exam: str | None
    verdict: str | None
    reasons: list[str] = field(default_factory=list)
    arbiter: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class SignedEvidence:
    """What a store with signers requires of a move, gathered (see arbiter.judge_move).

    required: the replaced commit's allowed_signers lists anyone. The rest is gathered only then:
    ``verdicts`` newest first, ``attestations`` oldest first, ``exam`` and ``sealed_exam`` the
    replaced commit's digests (what a verdict must have used), ``risk`` the risk rule's level for a
    promotion (guard/risk.py), ``candidate`` a branch naming the commit (for the hints).
    """

    required: bool
    candidate: str | None = None
    verdicts: list[VerdictSeen] = field(default_factory=list)
    attestations: list[AttestationSeen] = field(default_factory=list)
    exam: str | None = None
    sealed_exam: str | None = None
    risk: str | None = None
    risk_reasons: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> SignedEvidence:
        d = dict(d)
        d["verdicts"] = [VerdictSeen(**v) for v in d.get("verdicts") or []]
        d["attestations"] = [AttestationSeen(**a) for a in d.get("attestations") or []]
        return cls(**d)


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
    replaced_deltas: list[str] = field(default_factory=list)  # changed delta .dvc files the old commit had
    target_withdrawn: bool = False  # a rollback's target was rolled back away from before
    signed: SignedEvidence | None = None

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.protected}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MoveEvidence:
        d = dict(d)
        d["delta_files"] = {k: DeltaFile(**v) for k, v in (d.get("delta_files") or {}).items()}
        if d.get("signed") is not None:
            d["signed"] = SignedEvidence.from_dict(d["signed"])
        return cls(**d)


def _text(blob: bytes | None) -> str | None:
    """Blob bytes as text, losslessly (undecodable bytes kept as surrogates; see as_bytes)."""
    return None if blob is None else blob.decode("utf-8", errors="surrogateescape")


def as_bytes(text: str | None) -> bytes | None:
    """The exact bytes a text of _text came from."""
    return None if text is None else text.encode("utf-8", errors="surrogateescape")


def _files(repo, commit, paths) -> dict[str, str | None]:
    return {p: _text(git.read_blob(repo, commit, p)) for p in paths}


def gather_move(repo, old_id: str | None, new_id: str | None, protected: str = "main", signed: bool = False,
                tips: tuple[str, ...] = (), verdict_tips: tuple[str, ...] = ()) -> MoveEvidence:
    """Read what judging a move of refs/heads/<protected> from old_id to new_id needs.

    signed: also gather SignedEvidence (for a move of one commit on top of old_id). tips: extra
    evolution-log tips to find attestations in, verdict_tips: extra verdict tips (a hub's push).
    """
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
    delta_files, replaced = {}, []
    for path in changed:
        if fnmatch.fnmatch(path, DELTA_DVC):
            if git.is_regular_file(old, path) is not None:
                replaced.append(path)
            regular = git.is_regular_file(new, path)
            if regular is not None:  # None: deleted
                delta_files[path] = DeltaFile(regular, _text(git.read_blob(repo, new, path)) if regular else None)
    target_files = target_ids = None
    withdrawn = False
    new_ids: dict[str, str | None] = {}
    if "Rollback-To" in info:
        new_ids = {name: git.entry_id(new, name) for name in RESTORED}
        for commit in git.first_parent_history(repo, old.id):
            found = git.trailers(commit.message)
            if "Rollback-To" in found and found.get("Rollback-From") == info["Rollback-To"]:
                withdrawn = True  # newer than the target's promotion: met before it, newest first
            if found.get("Generation") == info["Rollback-To"] and "Approved-Change" not in found:
                target_files = _files(repo, commit, ROLLBACK_FILES)
                target_ids = {name: git.entry_id(commit, name) for name in RESTORED}
                break
    old_files = _files(repo, old, OLD_FILES)
    return MoveEvidence(
        protected, str(old.id), str(new.id), parents, False, True, info, changed,
        old_files=old_files, new_files=_files(repo, new, EVIDENCE_FILES),
        delta_files=delta_files, served_by_old=refs.served_generation(old), rollback_target_files=target_files,
        rollback_target_ids=target_ids, new_ids=new_ids, replaced_deltas=replaced, target_withdrawn=withdrawn,
        signed=gather_signed(repo, old, new, info, tips, verdict_tips) if signed else None)


def gather_signed(repo, old, new, info: dict[str, str], tips=(), verdict_tips=()) -> SignedEvidence:
    """The signatures a move of new onto old carries, each checked under old's allowed_signers."""
    signers = git.read_blob(repo, old, SIGNERS_FILE)
    if not requires(signers):
        return SignedEvidence(False)
    commit = str(new.id)
    seen = [AttestationSeen(a.action, a.role, _str(a.payload.get("signer")), attest.check(repo, a, new, signers))
            for a in attest.attestations(repo, tips).get(commit, [])]
    candidate = next((ref.name[len("refs/heads/"):] for ref in git.refs_under(repo, "refs/heads/candidates/")
                      if str(ref.target) == commit), None)
    if any(k in info for k in ("Rollback-To", "Approved-Change")) or "Generation" not in info:
        return SignedEvidence(True, candidate, attestations=seen)
    remote = [str(ref.target) for ref in git.refs_under(repo, "refs/remotes/")
              if ref.name.endswith(f"/verdicts/{commit}")]  # fetched from a hub by 'lineage pull'
    verdicts = []
    for found in verdict.read(repo, commit, (*verdict_tips, *remote)):
        p = found.predicate
        reasons = p.get("reasons")
        verdicts.append(VerdictSeen(
            _str(p.get("commit")), _str(p.get("weights")), _str(p.get("policy_commit")), _str(p.get("exam")),
            _str(p.get("sealed_exam")), _str(p.get("verdict")),
            [str(r) for r in reasons] if isinstance(reasons, list) else [], _str(p.get("arbiter")),
            verdict.check(found, signers)))
    try:
        exam: str | None = read_exam(repo, old).digest()
    except (LineageError, ValueError) as exc:
        exam = f"unreadable ({exc})"
    try:
        level, why = risk.classify_risk(repo, str(old.id), commit)
    except (ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:  # the judge refuses it first
        level, why = "high", [f"unreadable params.yaml ({exc})"]
    return SignedEvidence(True, candidate, verdicts, seen, exam, pin_digest(repo, old), level, why)


def _str(value) -> str | None:
    return None if value is None else str(value)
