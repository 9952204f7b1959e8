"""The arbiter's signed verdict: an in-toto Statement v1, signed with `ssh-keygen -Y sign`, kept in git.

The arbiter evaluates a candidate itself and signs what it measured. The statement binds the
candidate commit and the exact weights digest (its subject), and, in its predicate, the commit
whose policy judged it, the digests of the policy, the visible exam and the sealed exam, the
arbiter's own metrics and the verdict. Supply-chain tooling reads it as any in-toto statement.

A verdict is stored as a commit over the empty tree on ``refs/lineage/verdicts/<candidate commit>``
whose message is canonical JSON ``{"statement": …, "signature": …}``; a later evaluation of the
same candidate (under a newer policy) is a child of the earlier one, so the ref only grows and
travels with a push like any other ref.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..adapters import git, git_remote, git_trees, ssh
from ..core.canonical import canonical_json
from ..core.errors import StoreError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://lineage.dev/arbiter-verdict/v1"
VERDICTS_REF = "refs/lineage/verdicts/"
NAMESPACE = "lineage-arbiter"
# What every verdict's predicate holds (statement() adds commit and weights).
PREDICATE_FIELDS = ("verdict", "failed", "reasons", "generation", "candidate", "commit", "weights", "policy_commit",
                    "policy", "exam", "sealed_exam", "served", "metrics", "claimed", "divergences", "arbiter", "key",
                    "evaluated_at", "lineage_version")


def verdict_ref(commit: str) -> str:
    return f"{VERDICTS_REF}{commit}"


def statement(candidate: str, commit: str, weights: str, predicate: dict[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1 about one candidate commit and its weights.

    weights: the 'sha256:…' digest of the candidate's hashes.csv rows (core.hashes.weights_digest).
    """
    digest = {"gitCommit": commit, "sha256": weights.removeprefix("sha256:")}
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": candidate, "digest": digest}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {**predicate, "commit": commit, "weights": weights}}


@dataclass(frozen=True)
class Verdict:
    """One signed verdict as stored (signature None: an unsigned verdict of an unsigned store)."""

    statement: dict[str, Any]
    signature: str | None
    ref_commit: str | None = None

    @property
    def predicate(self) -> dict[str, Any]:
        value = self.statement.get("predicate")
        return value if isinstance(value, dict) else {}

    @property
    def commit(self) -> str | None:
        return self.predicate.get("commit")

    @property
    def weights(self) -> str | None:
        return self.predicate.get("weights")

    @property
    def passed(self) -> bool:
        return self.predicate.get("verdict") == "PASS"

    def payload(self) -> bytes:
        """The bytes the signature covers."""
        return canonical_json(self.statement)

    def to_message(self) -> str:
        return canonical_json({"statement": self.statement, "signature": self.signature}).decode() + "\n"

    @classmethod
    def from_message(cls, message: str, ref_commit: str | None = None) -> Verdict | None:
        """The verdict a stored commit message holds, or None when it is not one."""
        try:
            data = json.loads(message)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("statement"), dict):
            return None
        signature = data.get("signature")
        return cls(data["statement"], signature if isinstance(signature, str) else None, ref_commit)


def sign(key, statement_: dict[str, Any]) -> Verdict:
    """Sign a statement with the arbiter's key (namespace lineage-arbiter)."""
    return Verdict(statement_, ssh.sign(key, canonical_json(statement_), NAMESPACE))


def check(verdict: Verdict, signers: bytes | None) -> str | None:
    """The first thing wrong with a verdict's signature under an allowed_signers file, or None.

    The signer must be listed with the arbiter role: ssh-keygen refuses a key outside its namespaces.
    """
    if not verdict.signature:
        return "the verdict is unsigned"
    principal = str(verdict.predicate.get("arbiter") or "-")
    ok, intact = ssh.verify(signers or b"", principal, NAMESPACE, verdict.payload(), verdict.signature)
    if ok:
        return None
    if not intact:
        return "its signature does not match the verdict: it was altered after signing"
    return (f"it is signed by key {ssh.signature_fingerprint(verdict.signature)}, which allowed_signers does not "
            f"let act as arbiter for {principal}")


def read(repo, commit: str, tips: tuple[str, ...] = ()) -> list[Verdict]:
    """Every verdict about a candidate commit, newest first: its verdict ref, then pushed tips."""
    found: list[Verdict] = []
    seen: set[str] = set()
    ref = repo.references.get(verdict_ref(commit))
    starts = [t for t in tips if t] + ([str(ref.target)] if ref is not None else [])
    for start in starts:
        node = git.try_peel_commit(repo, start)
        while node is not None and str(node.id) not in seen:
            seen.add(str(node.id))
            verdict = Verdict.from_message(node.message, str(node.id))
            if verdict is not None and verdict.commit == commit:
                found.append(verdict)
            node = node.parents[0] if node.parents else None
    return found


def store(store_, verdict: Verdict) -> str:
    """Write a verdict on its candidate's verdict ref (created, or grown by one); return its commit.

    Raises:
        StoreError: the ref moved meanwhile (another arbiter wrote): run again.
    """
    commit = verdict.commit
    if not commit:
        raise StoreError("a verdict names no candidate commit")
    name = verdict_ref(commit)
    old = git.rev_parse(store_.root, name)
    new = git_trees.write_empty_commit(store_.repo, verdict.to_message(), old)
    proc = git.update_ref(store_.root, name, new, old, reason="lineage arbiter verdict", check=False)
    if proc.returncode != 0:
        raise StoreError(f"could not record the verdict on {name}: {proc.stderr.strip()[-200:]}", "Run again.")
    return new


def for_policy(verdicts: list[Verdict], policy_commit: str) -> Verdict | None:
    """The newest verdict judged under the policy of policy_commit (the commit it was proposed on), or None."""
    return next((v for v in verdicts if v.predicate.get("policy_commit") == policy_commit), None)


def remote_tip(store_, remote: str, commit: str) -> str | None:
    """The commit a remote's verdict ref of commit points at (fetched here), or None when it has none."""
    name = verdict_ref(commit)
    mirror = f"refs/lineage/remote-verdicts/{commit}"
    git.git(["update-ref", "-d", mirror], store_.root, check=False)
    git.git(["fetch", "-q", "--no-tags", remote, f"+{name}:{mirror}"], store_.root, check=False)
    return git.rev_parse(store_.root, mirror)


def adopt(store_, commit: str, tip: str) -> None:
    """Make the local verdict ref of commit include tip (a hub's): created, or fast-forwarded to it.

    A verdict stored afterwards grows from the hub's chain, so pushing it is a fast-forward there.

    Raises:
        StoreError: the local chain and the hub's have parted (neither holds the other).
    """
    name = verdict_ref(commit)
    mine = git.rev_parse(store_.root, name)
    if mine == tip or (mine is not None and git.descends(store_.repo, mine, tip)):
        return
    if mine is not None and not git.descends(store_.repo, tip, mine):
        raise StoreError(f"{name} here and on the hub have parted: neither holds the other's verdicts",
                         "Keep the hub's: 'git update-ref -d " + name + "', then evaluate again.")
    proc = git.update_ref(store_.root, name, tip, mine, reason="lineage arbiter: the hub's verdicts", check=False)
    if proc.returncode != 0:
        raise StoreError(f"could not take the hub's {name}: {proc.stderr.strip()[-200:]}", "Run again.")


def push(store_, remote: str, commit: str) -> None:
    """Push one candidate's verdict ref to a remote (a hub checks the signature before taking it).

    Raises:
        StoreError: the remote refused it (its reason named).
    """
    name = verdict_ref(commit)
    proc = git_remote.push_atomic(store_.root, remote, [f"{name}:{name}"])
    if proc.returncode != 0 or any(line.startswith("!") for line in proc.stdout.splitlines()):
        said = [ln.split("lineage hub: ", 1)[1] for ln in proc.stderr.splitlines()
                if "lineage hub: " in ln and "hint" not in ln]
        lines = said or proc.stderr.strip().splitlines() or ["refused"]
        raise StoreError(f"{remote} refused the verdict {name}: {lines[0]}",
                         "The verdict is stored here; push it again with 'git push " + remote + " " + name + "'.")
