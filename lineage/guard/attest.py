"""Signed evidence: every move of the protected branch carries an attestation signed with SSH.

Why `ssh-keygen -Y` and not OpenSSF model-signing: OpenSSH is on every machine that runs git,
signs offline with a key file or through ssh-agent, adds no dependency, and its allowed-signers
file is the one git reads for SSH-signed commits. model-signing signs a model directory; what
needs a signature here is a *move* (commit, parent, weights, gate report, policy), and the weights
are already bound file by file by sha256 in ``reports/train/hashes.csv``.

- **Roles are signature namespaces.** An ``allowed_signers`` line with
  ``namespaces="lineage-promote,lineage-approve"`` may sign promotions and rollbacks (promote) and
  approvals and approved changes (approve); ssh-keygen refuses a key outside its namespaces.
- **The key lives outside the store**: ``$LINEAGE_SIGNING_KEY``, ``git config lineage.signingKey``,
  or ``~/.config/lineage/signing_key`` (``lineage keys init``); see signers.py.
- **``allowed_signers`` sits at the store root on the protected branch.** A candidate or a rollback
  touching it is refused; it changes by an approved change, which (once the file exists) an
  approver listed in the version it replaces must sign: keys are rotated by the keys they replace.
- **Attestations are ATTEST events in the append-only evolution log**, written *before* the ref
  moves. A crash in between leaves an attestation of a move that never happened (nothing names
  it), never a move without one.
- **Required once the file exists.** When the commit being replaced holds an ``allowed_signers``,
  the arbiter (local hook and hub) refuses a move without a valid attestation. Before that, moves
  are attested unsigned (or signed when a key is configured) and ``verify --signatures`` says the
  store has no signers to check against.
- **Each link is checked against the allowed_signers of its parent commit**, the rules in force
  when it moved, as the arbiter judges a candidate by the policy it replaces: a key removed later
  does not void what it signed while trusted, and a key added later cannot vouch for the past.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import yaml

from ..adapters import git, ssh
from ..core.canonical import canonical_json, digest_bytes, digest_obj
from ..core.errors import ArbiterRefusedError, LineageError
from ..core.policy import Policy
from ..store import ledger
from ..store.refs import action_of, served_generation
from .signers import (
    KEY_ENV,
    ROLE_OF,
    SIGNERS_FILE,
    identity,
    namespace,
    principal_for,
    requires,
    signer_line,
    signing_key,
)

# ---------------------------------------------------------------- what an attestation binds

# What an attestation binds that anyone can re-derive from the commit, and where it comes from.
DERIVED = {"commit": "commit id", "parent": "first parent", "generation": "served generation",
           "weights": "reports/train/hashes.csv", "manifest": "reports/train/manifest.json",
           "gate_report": "reports/gate.json", "dvc_lock": "dvc.lock",
           "policy": "policy in force (the parent's params.yaml)", "signers": "parent's allowed_signers"}


def derive(repo, commit) -> dict:
    """The fields an attestation of commit binds, re-derived from the commit's own content."""
    read_blob = git.read_blob
    parent = commit.parents[0] if commit.parents else None

    def digest(c, path):
        blob = read_blob(repo, c, path)
        return None if blob is None else digest_bytes(blob)

    try:
        params = yaml.safe_load(read_blob(repo, parent, "params.yaml") or b"") or {}
        policy = Policy.from_params(params).digest()
    except (LineageError, yaml.YAMLError, ValueError, TypeError, AttributeError):
        policy = digest_obj(None)
    return {"commit": str(commit.id), "parent": str(parent.id) if parent else None,
            "generation": served_generation(commit), "weights": digest(commit, "reports/train/hashes.csv"),
            "manifest": digest(commit, "reports/train/manifest.json"),
            "gate_report": digest(commit, "reports/gate.json"),
            "dvc_lock": digest(commit, "dvc.lock"), "policy": policy, "signers": digest(parent, SIGNERS_FILE)}


@dataclass(frozen=True)
class Attestation:
    """One ATTEST event: the signed payload, its signature (None: unsigned) and the log commit."""

    payload: dict
    signature: str | None
    event: str = field(default="")

    @property
    def action(self) -> str | None:
        return self.payload.get("action")


def attest(store, commit_id: str, action: str, approved_by: str | None = None) -> Attestation | None:
    """Sign (when a key is configured) and log an attestation of commit as action, before it moves.

    An approval with no key records nothing here (the APPROVE event keeps the claim).

    Raises:
        ArbiterRefusedError: the parent's allowed_signers requires a signature this key cannot give.
    """
    repo, root = store.repo, store.root
    ref = store.protected_ref
    commit = git.peel_commit(repo, commit_id)
    signers = git.read_blob(repo, commit.parents[0] if commit.parents else None, SIGNERS_FILE)
    required = requires(signers)
    key = signing_key(root)
    role = ROLE_OF[action]
    if key is None and action == "approve":
        return None
    if key is None and required:
        raise ArbiterRefusedError(ref, f"{SIGNERS_FILE} requires a signed attestation to {role} and no signing "
                                       "key is configured",
                                  f"Run 'lineage keys init' (or set {KEY_ENV}) and have an approver list the key "
                                  f"in {SIGNERS_FILE}.")
    payload = {"schema_version": 1, "action": action, **derive(repo, commit), "approved_by": approved_by,
               "time": time.strftime("%Y%m%d%H%M%SZ", time.gmtime())}
    signature = None
    if key is not None:
        public = ssh.public_key(key)
        payload["signer"] = principal_for(signers, public) or identity(root)
        payload["key"] = ssh.fingerprint(public)
        data = canonical_json(payload)
        signature = ssh.sign(key, data, namespace(action))
        if requires(signers) and not ssh.verify(signers, payload["signer"], namespace(action), data, signature,
                                                payload["time"])[0]:
            raise ArbiterRefusedError(ref, f"your signing key {payload['key']} may not {role} under "
                                           f"{SIGNERS_FILE} on {store.protected}",
                                      f"Have an approver add this line to {SIGNERS_FILE} with 'lineage change': "
                                      f"{signer_line(identity(root), public, [role])}")
    else:
        payload["signer"], payload["key"] = identity(root), None
    event = ledger.append(store, "ATTEST", payload["generation"], {"payload": payload, "signature": signature})
    return Attestation(payload, signature, event)


def commit_attested(store, message: str, action: str) -> str:
    """Commit the index on the protected branch as action: build, attest, then move (hook runs)."""
    old = str(store.tip().id)
    new = git.commit_tree(store.root, git.write_tree(store.root), old, message, store.env())
    attest(store, new, action)
    git.update_ref(store.root, store.protected_ref, new, old, reason=f"lineage {action}: {message.splitlines()[0]}")
    return new


# ---------------------------------------------------------------- reading and checking


def _attest_events(repo, tips=()):
    """Every ATTEST event, newest first along each chain: the local log, fetched hub logs, tips."""
    heads = [r for r in (ledger.LOG_REF, *[n for n in repo.references if n.startswith("refs/remotes/")
                                    and n.endswith("/lineage-log")]) if repo.references.get(r) is not None]
    seen = set()
    # pushed tips first: they hold the newest events, and the hub's own log is their history
    for start in [t for t in tips if t] + [str(repo.references[r].target) for r in heads]:
        commit = git.try_peel_commit(repo, start)
        if commit is None:
            continue  # not a commit: the log's own checks refuse it
        while commit is not None and str(commit.id) not in seen:  # chains share their history
            seen.add(str(commit.id))
            try:
                event = json.loads(commit.message)
            except ValueError:
                event = None
            data = event.get("data") if isinstance(event, dict) else None
            if isinstance(data, dict) and event.get("event") == "ATTEST" and isinstance(data.get("payload"), dict):
                yield Attestation(data["payload"], data.get("signature"), str(commit.id))
            commit = commit.parents[0] if commit.parents else None


def attestations(repo, tips=()) -> dict[str, list[Attestation]]:
    """Every ATTEST event by the commit it attests, oldest first."""
    out: dict[str, list[Attestation]] = {}
    for found in _attest_events(repo, tips):
        out.setdefault(str(found.payload.get("commit")), []).insert(0, found)
    return out


def check(repo, attestation: Attestation, commit, signers: bytes) -> str | None:
    """The first thing wrong with an attestation of commit under signers, or None."""
    p = attestation.payload
    if p.get("action") not in ROLE_OF:
        return f"unknown action {p.get('action')!r}"
    if not attestation.signature:
        return "the attestation is unsigned (no signing key was configured when it was made)"
    ok, intact = ssh.verify(signers, str(p.get("signer") or "-"), namespace(p["action"]), canonical_json(p),
                            attestation.signature, p.get("time"))
    if not ok:
        if not intact:
            return "its signature does not match the attestation: it was altered after signing"
        return (f"signed by key {ssh.signature_fingerprint(attestation.signature)}, which {SIGNERS_FILE} does not "
                f"allow to {ROLE_OF[p['action']]} as {p.get('signer')}")
    derived = derive(repo, commit)
    for name, source in DERIVED.items():
        if p.get(name) != derived[name]:
            return f"its {name} {_short(p.get(name))} does not match the commit's {source} ({_short(derived[name])})"
    return None


def _short(value) -> str:
    return "none" if value is None else (str(value)[:19] + "…" if len(str(value)) > 20 else str(value))


def require(repo, old_id: str, new_id: str, protected: str, tips=()) -> None:
    """Refuse a move the parent's allowed_signers requires an attestation for, when none verifies."""
    old, new = git.peel_commit(repo, old_id), git.peel_commit(repo, new_id)
    signers = git.read_blob(repo, old, SIGNERS_FILE)
    if not requires(signers):
        return
    ref, action = f"refs/heads/{protected}", action_of(new)
    hint = f"Move {protected} with 'lineage promote', 'lineage rollback' or 'lineage change': they sign."
    problem = None
    # newest first: the attestation of a move is written just before it, near the log's tip
    for found in _attest_events(repo, tips):
        if action is not None and found.payload.get("commit") == str(new.id) and found.action == action:
            problem = check(repo, found, new, signers)
            if problem is None:
                return
    if problem is None:
        raise ArbiterRefusedError(ref, f"{SIGNERS_FILE} on {protected} requires a signed attestation and the "
                                       f"evolution log has none for {str(new.id)[:12]}", hint)
    raise ArbiterRefusedError(ref, f"the attestation of {str(new.id)[:12]} does not verify: {problem}", hint)


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
    if action == "promote":
        return f"{info['Generation']} (promote {sha})"
    if action == "rollback":
        return f"{info['Rollback-To']} (rollback from {info.get('Rollback-From')}, {sha})"
    return f"{action or 'commit'} {sha}"


def verify_signatures(store) -> SignatureReport:
    """Walk the protected branch's whole first-parent history; check every link's attestations."""
    repo, protected = store.repo, store.protected
    head = store.tip()
    if head is None or not requires(git.read_blob(repo, head, SIGNERS_FILE)):
        problem = (f"{protected} has no {SIGNERS_FILE}: nothing says who may promote, so no signature can be "
                   "checked (run 'lineage keys init', then 'lineage keys allow' and 'lineage change')")
        return SignatureReport([], [problem], problem)
    found = attestations(repo)
    links, problems, first_bad = [], [], None
    for commit in reversed(list(git.first_parent_history(repo, head.id))):
        if not commit.parents:
            continue  # the store's first commit: the root of trust, nothing moved into it
        action, mine = action_of(commit), found.get(str(commit.id), [])
        where, signers = _where(commit, action), git.read_blob(repo, commit.parents[0], SIGNERS_FILE)
        if not requires(signers):
            links.append(f"{where}: before {SIGNERS_FILE} existed, not required")
            continue
        bad = []
        if action is None:
            bad.append("not a promotion, rollback or approved change: it was made outside lineage")
        elif not any(a.action == action for a in mine):
            bad.append(f"no attestation of this {action} in the evolution log")
        for a in mine:
            if a.action not in (action, "approve"):
                bad.append(f"an attestation says {a.action}, but the commit is a {action or 'plain commit'}")
            elif wrong := check(repo, a, commit, signers):
                bad.append(f"{a.action} attestation by {a.payload.get('signer')}: {wrong}")
        if bad:
            problems += [f"{where}: {b}" for b in bad]
            first_bad = first_bad or problems[-len(bad)]
        else:
            by = sorted({f"{a.action} by {a.payload.get('signer')}" for a in mine})
            links.append(f"{where}: signed ({', '.join(by)})")
    return SignatureReport(links, problems, first_bad)
