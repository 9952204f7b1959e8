"""`lineage verify --signatures`: judge every signed link of the protected branch's history again.

Each move is judged as the arbiter judged it (arbiter.judge_move over gathered evidence with its
signatures), against the allowed_signers of its parent commit: a key removed later does not void
what it signed while trusted, and a key added later cannot vouch for the past.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..adapters import git
from ..core.errors import ArbiterRefusedError
from ..store.refs import action_of
from .arbiter import judge_move
from .evidence import gather_move
from .signers import SIGNERS_FILE, requires


@dataclass(frozen=True)
class SignatureReport:
    """What `lineage verify --signatures` found along the protected branch."""

    links: list
    problems: list
    first_bad: str | None

    @property
    def ok(self) -> bool:
        return not self.problems


def _where(commit, action: str | None) -> str:
    info, sha = git.trailers(commit.message), str(commit.id)[:12]
    if action == "rollback":
        return f"{info['Rollback-To']} (rollback from {info.get('Rollback-From')}, {sha})"
    if action == "promote":
        return f"{info['Generation']} (promote {sha})"
    return f"{action or 'commit'} {sha}"


def verify_signatures(store) -> SignatureReport:
    """Walk the protected branch's whole first-parent history; judge every link that needed signatures."""
    repo, protected = store.repo, store.protected
    head = store.tip()
    if head is None or not requires(git.read_blob(repo, head, SIGNERS_FILE)):
        problem = (f"{protected} has no {SIGNERS_FILE}: nothing says who may propose, judge or approve, so no "
                   "signature can be checked (run 'lineage keys init', then 'lineage keys allow' and 'lineage change')")
        return SignatureReport([], [problem], problem)
    links, problems = [], []
    for commit in reversed(list(git.first_parent_history(repo, head.id))):
        if not commit.parents:
            continue  # the store's first commit: the root of trust, nothing moved into it
        action = "change" if "Approved-Change" in git.trailers(commit.message) else action_of(commit)
        where = _where(commit, action)
        if not requires(git.read_blob(repo, commit.parents[0], SIGNERS_FILE)):
            links.append(f"{where}: before {SIGNERS_FILE} existed, not required")
            continue
        try:
            decision = judge_move(gather_move(repo, str(commit.parents[0].id), str(commit.id), protected, signed=True))
        except ArbiterRefusedError as exc:
            problems.append(f"{where}: {exc.reason}")
            continue
        links.append(f"{where}: {decision.signed}")
    return SignatureReport(links, problems, problems[0] if problems else None)
