"""Signed attestations: approvals, approved changes and rollbacks, signed with SSH, kept in the log.

Why `ssh-keygen -Y` and not OpenSSF model-signing: OpenSSH is on every machine that runs git,
signs offline with a key file or through ssh-agent, adds no dependency, and its allowed-signers
file is the one git reads for SSH-signed commits. model-signing signs a model directory; what
needs a signature here is a *decision* (approve this commit, change the rules, roll back), and the
weights are already bound file by file by sha256 in ``reports/train/hashes.csv``.

- **Roles are signature namespaces** (signers.py): an attestation records the role it was signed
  in (``propose`` or ``approve``), and is verified in that role's namespace, so ssh-keygen refuses
  a key outside its role. Which role may sign which action is the arbiter's rule
  (``signers.ACTION_ROLES``): an approval and an approved change need an approver; a rollback a
  proposer or an approver (an approver when the generation was withdrawn before).
- **A promotion's evidence is the arbiter's signed verdict** (verdict.py) plus, unless the policy's
  autonomy allows, an ``approve`` attestation. ``lineage promote`` signs nothing of its own.
- **The key lives outside the store**: ``$LINEAGE_SIGNING_KEY``, ``git config lineage.signingKey``,
  or ``~/.config/lineage/signing_key`` (``lineage keys init``); see signers.py.
- **``allowed_signers`` sits at the store root on the protected branch.** A candidate or a rollback
  touching it is refused; it changes by an approved change, which (once the file exists) an
  approver listed in the version it replaces must sign: keys are rotated by the keys they replace.
- **Attestations are ATTEST events in the append-only evolution log**, written *before* the ref
  moves. A crash in between leaves an attestation of a move that never happened (nothing names
  it), never a move without one.
- **Required once the file lists anyone.** When the commit being replaced holds an
  ``allowed_signers`` that lists a key, the arbiter (``lineage promote``, local hook, hub) refuses
  a move without the signatures it needs. Before that, moves are attested unsigned (or signed when
  a key is configured).
- **Each move is checked against the allowed_signers of its parent commit**, the rules in force
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
from ..store.refs import served_generation
from .signers import (
    ACTION_ROLES,
    KEY_ENV,
    ROLES,
    SIGNERS_FILE,
    VERB,
    identity,
    namespace,
    principal_for,
    requires,
    roles_of,
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

    @property
    def role(self) -> str | None:
        """The role it was signed in (what its namespace is); older attestations: the action's first role."""
        role = self.payload.get("role")
        if isinstance(role, str) and role in ROLES:
            return role
        roles = ACTION_ROLES.get(str(self.action))
        return roles[0] if roles else None


def attest(store, commit_id: str, action: str, approved_by: str | None = None) -> Attestation | None:
    """Sign (when a key is configured) and log an attestation of commit as action, before it moves.

    The key signs in the first role of ACTION_ROLES[action] that the parent's allowed_signers gives
    it. An approval with no key records nothing here (the APPROVE event keeps the claim).

    Raises:
        ArbiterRefusedError: the parent's allowed_signers requires a signature this key cannot give.
    """
    repo, root = store.repo, store.root
    ref = store.protected_ref
    commit = git.peel_commit(repo, commit_id)
    signers = git.read_blob(repo, commit.parents[0] if commit.parents else None, SIGNERS_FILE)
    required = requires(signers)
    key = signing_key(root)
    verb, roles = VERB[action], ACTION_ROLES[action]
    if key is None and action == "approve":
        return None
    if key is None and required:
        raise ArbiterRefusedError(ref, f"{SIGNERS_FILE} requires a signed attestation to {verb} and no signing "
                                       "key is configured",
                                  f"Run 'lineage keys init' (or set {KEY_ENV}) and have an approver list the key "
                                  f"in {SIGNERS_FILE} with 'lineage keys allow … --role {roles[-1]}'.")
    payload = {"schema_version": 1, "action": action, **derive(repo, commit), "approved_by": approved_by,
               "time": time.strftime("%Y%m%d%H%M%SZ", time.gmtime())}
    signature = None
    if key is not None:
        public = ssh.public_key(key)
        held = roles_of(signers, public) if required else []
        role = next((r for r in roles if r in held), None)
        if required and role is None:
            fingerprint = ssh.fingerprint(public)
            raise ArbiterRefusedError(
                ref, f"your signing key {fingerprint} may not {verb} under {SIGNERS_FILE} on {store.protected}"
                     + (f" (it holds the {', '.join(held)} role)" if held else ""),
                f"Sign with a key that holds the {' or '.join(roles)} role (one key, one role)." if held else
                f"Have an approver add this line to {SIGNERS_FILE} with 'lineage keys allow' and 'lineage change': "
                f"{signer_line(identity(root), public, [roles[-1]])}")
        role = role or roles[-1]
        payload["signer"] = principal_for(signers, public) or identity(root)
        payload["key"] = ssh.fingerprint(public)
        payload["role"] = role
        data = canonical_json(payload)
        signature = ssh.sign(key, data, namespace(role))
        if signers and required and not ssh.verify(signers, payload["signer"], namespace(role), data, signature,
                                       payload["time"])[0]:
            raise ArbiterRefusedError(ref, f"your signing key {payload['key']} may not {verb} under "
                                           f"{SIGNERS_FILE} on {store.protected} now (outside its valid-after/"
                                           "valid-before window)", "Ask an approver to renew the key's line.")
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


def events(repo, tips=()):
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
    for found in events(repo, tips):
        out.setdefault(str(found.payload.get("commit")), []).insert(0, found)
    return out


def check(repo, attestation: Attestation, commit, signers: bytes | None) -> str | None:
    """The first thing wrong with an attestation of commit under signers, or None.

    The signature is verified in the namespace of the role the attestation names: a key the file
    does not give that role fails here. Whether that role may sign the action is the arbiter's call.
    """
    p, role = attestation.payload, attestation.role
    if p.get("action") not in ACTION_ROLES or role is None:
        return f"unknown action {p.get('action')!r}"
    if not attestation.signature:
        return "the attestation is unsigned (no signing key was configured when it was made)"
    ok, intact = ssh.verify(signers or b"", str(p.get("signer") or "-"), namespace(role), canonical_json(p),
                            attestation.signature, p.get("time"))
    if not ok:
        if not intact:
            return "its signature does not match the attestation: it was altered after signing"
        return (f"signed by key {ssh.signature_fingerprint(attestation.signature)}, which {SIGNERS_FILE} does not "
                f"allow to {role} as {p.get('signer')}")
    derived = derive(repo, commit)
    for name, source in DERIVED.items():
        if p.get(name) != derived[name]:
            return f"its {name} {short(p.get(name))} does not match the commit's {source} ({short(derived[name])})"
    return None


def short(value) -> str:
    """A digest or id cut for one line."""
    return "none" if value is None else (str(value)[:19] + "…" if len(str(value)) > 20 else str(value))
