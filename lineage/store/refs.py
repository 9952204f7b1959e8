"""What the refs of a store are called and what they say: candidates, frozen and generation tags,
the generation a commit serves, and generation numbers.

A generation is named by the ``Generation:`` trailer of the commit that holds it; the protected
branch's first-parent history is what was served (rollbacks and approved changes included). Tags
travel with clones but a new tag can point anywhere, so history, not tags, decides what was promoted.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..adapters import git
from ..core.errors import UsageError

CANDIDATE_PREFIX = "candidates/"
FROZEN_TAG = "lineage/frozen/"      # one annotated tag per candidate, pass or fail, never moved
GENERATION_TAG = "lineage/gen/"     # one annotated tag per promoted generation
GEN_RE = re.compile(r"G(\d{3,})")


def candidate_branch(generation: str, name: str) -> str:
    return f"{CANDIDATE_PREFIX}{generation}-{name}"


def frozen_tag(generation: str, name: str) -> str:
    return f"{FROZEN_TAG}{generation}-{name}"


def generation_tag(generation: str) -> str:
    return f"{GENERATION_TAG}{generation}"


def generation_of_name(name: str) -> str | None:
    """'G003' out of a branch or tag name, or None."""
    match = GEN_RE.search(name)
    return match.group(0) if match else None


def serving_commit(commit):
    """The promotion or rollback that makes a protected-branch commit serve what it serves, or None.

    Approved changes and the init commit serve whatever generation came before them: a Generation
    or Rollback-To trailer on an approved change is never read (the arbiter refuses such a commit).
    """
    while commit is not None:
        info = git.trailers(commit.message)
        if "Approved-Change" not in info and (info.get("Rollback-To") or info.get("Generation")):
            return commit
        commit = commit.parents[0] if commit.parents else None
    return None


def served_generation(commit) -> str | None:
    """The generation a protected-branch commit serves (following rollbacks)."""
    serving = serving_commit(commit)
    if serving is None:
        return None
    info = git.trailers(serving.message)
    return info.get("Rollback-To") or info.get("Generation")


def action_of(commit) -> str | None:
    """promote, rollback or change: what a protected-branch commit did; None for anything else."""
    info = git.trailers(commit.message)
    if "Rollback-To" in info:
        return "rollback"
    if "Approved-Change" in info:
        return "change"
    return "promote" if "Generation" in info else None


def used_generation_numbers(repo) -> set[int]:
    """Every generation number ever allocated: the numbers in branch and tag names."""
    numbers = set()
    for name in repo.references:
        for match in GEN_RE.finditer(name):
            numbers.add(int(match.group(1)))
    return numbers


def next_generation(repo) -> str:
    used = used_generation_numbers(repo)
    return f"G{(max(used) + 1) if used else 0:03d}"


def candidate_commit(repo, candidate: str) -> str:
    """The commit of a candidate given as 'candidates/G001-a' or 'G001-a'.

    Raises:
        UsageError: no such candidate branch.
    """
    ref = repo.references.get(f"refs/heads/{candidate}") or \
        repo.references.get(f"refs/heads/{CANDIDATE_PREFIX}{candidate}")
    if ref is None:
        raise UsageError(f"unknown candidate {candidate}", "List candidates with 'lineage log'.")
    return str(git.peel_commit(repo, ref.target).id)


def promoted_history(repo, protected: str) -> list[tuple[str, Any, str]]:
    """(generation, commit, kind) along the protected branch's first-parent history, oldest first."""
    head = git.tip(repo, protected)
    if head is None:
        return []
    out = []
    for commit in git.first_parent_history(repo, head.id):
        info = git.trailers(commit.message)
        if "Rollback-To" in info:
            out.append((info["Rollback-To"], commit, "rollback"))
        elif "Generation" in info:
            out.append((info["Generation"], commit, "promotion"))
    return list(reversed(out))


def generation_commit(repo, protected: str, generation: str):
    """The commit of a generation: the one the protected branch promoted, else its (first) frozen candidate.

    Never the lineage/gen tag alone: a new tag can point anywhere (a hub accepts new tags from whoever
    may push), so the protected branch's own first-parent history decides what was promoted.

    An attempt's name (G002-a) gives that attempt's own commit.

    Raises:
        UsageError: no generation or candidate by that name.
    """
    attempt = re.fullmatch(r"(G\d{3,})-([a-z0-9]+)", generation)
    if attempt:
        record = frozen_record(repo, attempt.group(1), attempt.group(2))
        if record is None or not record.get("commit"):
            raise UsageError(f"unknown attempt {generation}", "See 'lineage log' for every attempt.")
        return git.peel_commit(repo, record["commit"])
    for gen, commit, kind in reversed(promoted_history(repo, protected)):
        if gen == generation and kind == "promotion":
            return commit
    names = sorted(n for n in repo.references if n.startswith(f"refs/tags/{FROZEN_TAG}{generation}-"))
    frozen = [git.peel_commit(repo, repo.references[name].target) for name in names]
    if not frozen:
        raise UsageError(f"unknown generation {generation}", "See 'lineage log' for generations.")
    return next((c for c in frozen if git.trailers(c.message).get("Generation") == generation), frozen[0])


def frozen_record(repo, generation: str, name: str) -> dict | None:
    """The JSON a candidate's frozen tag carries, or None when it is not frozen."""
    ref = repo.references.get(f"refs/tags/{frozen_tag(generation, name)}")
    return None if ref is None else json.loads(repo[ref.target].message)


def promotion_commits(repo, protected: str) -> dict[str, str]:
    """generation -> the commit the protected branch promoted it as (its latest promotion)."""
    return {gen: str(commit.id) for gen, commit, kind in promoted_history(repo, protected) if kind == "promotion"}


def frozen_candidates(repo, protected: str) -> list[dict]:
    """Every frozen candidate (pass or fail) from its tag's JSON, oldest generation first.

    ``promoted`` is true for the one candidate whose commit the protected branch promoted (not for
    every candidate of a promoted window); ``head`` marks the candidate whose generation main serves
    now (after a rollback: the candidate that was promoted as the generation rolled back to).
    """
    promoted = promotion_commits(repo, protected)
    promoted_ids = set(promoted.values())
    tip = git.tip(repo, protected)
    served = promoted.get(served_generation(tip) or "") if tip else None
    rows = []
    for ref in git.refs_under(repo, "refs/tags/" + FROZEN_TAG):
        try:
            data = json.loads(repo[ref.target].message)
        except (ValueError, AttributeError):
            continue
        if not isinstance(data, dict):
            continue
        data["promoted"] = data.get("commit") in promoted_ids and data.get("verdict") == "PASS"
        data["head"] = data["promoted"] and data.get("commit") == served
        rows.append(data)
    return sorted(rows, key=lambda r: (r.get("generation", ""), r.get("branch", "")))


def rollbacks(repo, protected: str) -> list[dict]:
    """Every rollback on the protected branch: from, to, reason, commit, time; oldest first."""
    out = []
    for _gen, commit, kind in promoted_history(repo, protected):
        if kind == "rollback":
            info = git.trailers(commit.message)
            out.append({"from": info.get("Rollback-From"), "to": info.get("Rollback-To"), "reason": info.get("Reason"),
                        "commit": str(commit.id), "time": commit.commit_time})
    return out
