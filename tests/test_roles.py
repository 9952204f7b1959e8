"""The three roles against the attacks of issue 13 ("the problem, measured"), at a real hub.

A proposer (the loop) holds a propose key and can write anything in its own repository. Each attack
here is what it can do with that: promote its own candidate, sign a verdict or an approval with its
own key, move `main` with hooks off, run `lineage change`, craft an approved change that names a
generation, roll back to a generation people withdrew. Each is refused by the hub's pre-receive
with nothing moved there (every ref byte-for-byte the same), and mostly by `lineage` and the local
hook first. An honest promotion (the arbiter's verdict and an approver's approval) goes through.

One store per module: the shared tiny G000 (conftest's trained_g000), an approver, a proposer and
an arbiter listed with one role each, G001-a proposed; a hub made with `lineage hub init` and
pushed to. Each test works on a copy of the store and of the hub. Verdicts are signed by conftest's
sign_verdict (the enforcement must not depend on how a verdict was made): no evaluation runs here.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pygit2
import pytest
import yaml
from conftest import (
    ROLE_PRINCIPALS,
    as_role,
    copy_store,
    hooks_off_move,
    lineage,
    refs,
    relaxed_tiny,
    sh,
    sign_approval,
    sign_verdict,
    signed_store_with_hub,
    trained_g000,
)

pytestmark = pytest.mark.slow

TINY = relaxed_tiny(10, 5, eval={"max_new_tokens": 4})  # the recipe test_adversarial's G000 is built from
G001 = "candidates/G001-a"
LOOP = ROLE_PRINCIPALS["propose"]


def git(repo: Path, *args: str, check: bool = True) -> str:
    return sh(["git", *args], repo, check=check).stdout.strip()


def push(store: Path, *refspecs: str) -> tuple[int, str]:
    """A raw `git push --atomic` to the hub (what anyone with push access can send)."""
    proc = sh(["git", "push", "--atomic", "--force", "hub", *refspecs], store, check=False)
    return proc.returncode, proc.stderr


def forge_attestation(store: Path, commit: str, action: str, key: Path, role: str, principal: str) -> None:
    """What a key holder with write access can put in the evolution log: an attestation signed by itself,
    claiming any role (ssh-keygen signs in any namespace; only verification knows the key's role)."""
    from lineage.adapters import ssh
    from lineage.core.canonical import canonical_json
    from lineage.guard.attest import derive
    from lineage.guard.signers import namespace
    from lineage.store import ledger
    from lineage.store.root import Store

    opened = Store.open(store)
    payload = {"schema_version": 1, "action": action, **derive(opened.repo, opened.repo[commit]),
               "approved_by": None, "time": time.strftime("%Y%m%d%H%M%SZ", time.gmtime()), "signer": principal,
               "key": ssh.fingerprint(ssh.public_key(key)), "role": role}
    signature = ssh.sign(key, canonical_json(payload), namespace(role))
    ledger.append(opened, "ATTEST", payload["generation"], {"payload": payload, "signature": signature})


def commit_on_main(store: Path, message: str, edits: dict[str, bytes]) -> str:
    """A commit on top of main with edits, written without moving any ref (no hook runs)."""
    repo = pygit2.Repository(str(store))
    main = repo.references["refs/heads/main"].peel(pygit2.Commit)
    index = pygit2.Index()
    index.read_tree(main.tree)
    for path, data in edits.items():
        index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    who = pygit2.Signature("Loop", LOOP)
    return str(repo.create_commit(None, who, who, message, index.write_tree(repo), [main.id]))


# ---------------------------------------------------------------- the world

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """G000 served; an approver, a proposer and an arbiter; G001-a proposed (PASS, no verdict); a hub."""
    world = signed_store_with_hub(tmp_path_factory.mktemp("roles"), trained_g000(tmp_path_factory, TINY))
    assert git(world["hub"], "rev-parse", "main") == git(world["store"], "rev-parse", "main")
    return world


@pytest.fixture
def keys(world):
    return world["keys"]


@pytest.fixture
def store(world, tmp_path):
    """A private copy of the world's store, pushing to a private copy of its hub."""
    hub = Path(shutil.copytree(world["hub"], tmp_path / "luna.git", symlinks=True))
    store = copy_store(world["store"], tmp_path / "luna")
    git(store, "remote", "set-url", "hub", str(hub))
    return store


def hub_of(store: Path) -> Path:
    return Path(git(store, "remote", "get-url", "hub"))


# ---------------------------------------------------------------- the attacks

def test_a_loop_with_the_propose_key_cannot_promote_its_own_candidate_without_a_verdict(store, keys):
    hub, main, candidate = hub_of(store), git(store, "rev-parse", "main"), git(store, "rev-parse", G001)
    hub_before = refs(hub)
    proc = lineage(store, "promote", G001, check=False, env=as_role(keys, "propose"))
    assert proc.returncode == 1
    assert (f"no arbiter verdict for {candidate[:12]} under the policy of {main[:12]}: "
            f"run 'lineage arbiter evaluate {G001}' as the arbiter") in proc.stderr, proc.stderr
    assert git(store, "rev-parse", "main") == main
    # The loop forges what it can: an approval signed with its own key, then main moved around the hook.
    forge_attestation(store, candidate, "approve", keys["propose"], "propose", LOOP)
    hooks_off_move(store, candidate)
    code, err = push(store, "main", "refs/lineage/log")
    assert code != 0 and f"lineage hub: refused to move refs/heads/main: no arbiter verdict for {candidate[:12]}" \
        in err, err
    proc = lineage(store, "push", check=False)
    assert proc.returncode == 1 and "no arbiter verdict" in proc.stderr, proc.stderr
    assert refs(hub) == hub_before


def test_a_verdict_signed_by_the_propose_key_is_refused(store, keys):
    hub, candidate = hub_of(store), git(store, "rev-parse", G001)
    hub_before, main = refs(hub), git(store, "rev-parse", "main")
    sign_verdict(store, G001, keys["propose"], LOOP)
    sign_approval(store, G001, keys["approve"])
    proc = lineage(store, "promote", G001, check=False)
    assert proc.returncode == 1 and f"the verdict on {candidate[:12]} does not verify under main's allowed_signers: " \
        f"it is signed by key" in proc.stderr and f"act as arbiter for {LOOP}" in proc.stderr, proc.stderr
    assert git(store, "rev-parse", "main") == main
    hooks_off_move(store, candidate)
    code, err = push(store, "main", "refs/lineage/log", f"refs/lineage/verdicts/{candidate}")
    assert code != 0 and "refused to move refs/heads/main: the verdict on" in err and "does not verify" in err, err
    assert f"refused to move refs/lineage/verdicts/{candidate}: the verdict" in err  # the ref itself is refused too
    assert refs(hub) == hub_before


def test_a_verdict_for_other_weights_is_refused(store, keys):
    hub, candidate = hub_of(store), git(store, "rev-parse", G001)
    hub_before = refs(hub)
    sign_verdict(store, G001, keys["arbiter"], weights="sha256:" + "0" * 64)
    sign_approval(store, G001, keys["approve"])
    proc = lineage(store, "promote", G001, check=False)
    why = f"the verdict on {candidate[:12]} binds weights sha256:000000000000…, but the commit's " \
          "reports/train/hashes.csv gives sha256:"
    assert proc.returncode == 1 and why in proc.stderr, proc.stderr
    hooks_off_move(store, candidate)
    code, err = push(store, "main", "refs/lineage/log", f"refs/lineage/verdicts/{candidate}")
    assert code != 0 and f"refused to move refs/heads/main: {why}" in err, err
    assert refs(hub) == hub_before


def test_a_verdict_for_another_commit_is_refused(store, keys):
    hub, candidate = hub_of(store), git(store, "rev-parse", G001)
    hub_before = refs(hub)
    other = git(store, "rev-parse", "candidates/G000-a")
    genuine = sign_verdict(store, "candidates/G000-a", keys["arbiter"])  # a real verdict, about G000-a
    git(store, "update-ref", f"refs/lineage/verdicts/{candidate}", genuine)  # filed under G001-a
    sign_approval(store, G001, keys["approve"])
    proc = lineage(store, "promote", G001, check=False)
    assert proc.returncode == 1 and f"no arbiter verdict for {candidate[:12]}" in proc.stderr, proc.stderr
    hooks_off_move(store, candidate)
    code, err = push(store, "main", "refs/lineage/log", f"refs/lineage/verdicts/{candidate}")
    assert code != 0 and f"the verdict {genuine[:12]} is about {other[:12]}, not {candidate[:12]}" in err, err
    assert "refused to move refs/heads/main: no arbiter verdict" in err
    assert refs(hub) == hub_before


def test_the_agent_cannot_loosen_the_policy_with_lineage_change(store, keys):
    hub, main = hub_of(store), git(store, "rev-parse", "main")
    hub_before = refs(hub)
    params = yaml.safe_load((store / "params.yaml").read_text())
    params["policy"]["max_law_violations"] = 100000
    (store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(store, "add", "params.yaml")
    proc = lineage(store, "change", "--reason", "laws are noise", check=False, env=as_role(keys, "propose"))
    assert proc.returncode == 1
    assert "your signing key" in proc.stderr and "may not approve under allowed_signers on main (it holds the " \
        "propose role)" in proc.stderr, proc.stderr
    assert git(store, "rev-parse", "main") == main
    # Around lineage: the change committed by hand, an attestation claiming the approve role signed with
    # the propose key, main moved with hooks off.
    message = "change: loosen\n\nApproved-Change: 1\nApproved-By: Loop <loop@x.invalid>\nReason: laws are noise\n"
    loosened = commit_on_main(store, message, {"params.yaml": (store / "params.yaml").read_bytes()})
    forge_attestation(store, loosened, "change", keys["propose"], "approve", LOOP)
    hooks_off_move(store, loosened)
    code, err = push(store, "main", "refs/lineage/log")
    assert code != 0 and f"the change attestation of {loosened[:12]} does not verify: signed by key" in err, err
    assert f"which allowed_signers does not allow to approve as {LOOP}" in err
    assert refs(hub) == hub_before


def test_an_approved_change_that_carries_a_generation_trailer_is_refused(store, keys):
    from lineage.store import refs as store_refs

    hub = hub_of(store)
    hub_before, main = refs(hub), git(store, "rev-parse", "main")
    sneaky = commit_on_main(store, "change: notes\n\nApproved-Change: 1\nApproved-By: Ada <ada@x.invalid>\n"
                                   "Reason: notes\nGeneration: G001\n", {"NOTES.md": b"notes\n"})
    # even an approver's signature does not make it a generation
    forge_attestation(store, sneaky, "change", keys["approve"], "approve", ROLE_PRINCIPALS["approve"])
    code = sh(["git", "update-ref", "refs/heads/main", sneaky, main], store, check=False)
    assert code.returncode != 0 and "an approved change carries a Generation: trailer" in code.stderr, code.stderr
    hooks_off_move(store, sneaky)
    code, err = push(store, "main", "refs/lineage/log")
    assert code != 0 and "refused to move refs/heads/main: an approved change carries a Generation: trailer" in err
    assert refs(hub) == hub_before
    assert store_refs.served_generation(pygit2.Repository(str(store))[sneaky]) == "G000"  # never read as G001


def test_an_honest_signed_promotion_is_accepted_and_pulled_with_its_verdict(world, store, keys, tmp_path):
    hub, candidate = hub_of(store), git(store, "rev-parse", G001)
    sign_verdict(store, G001, keys["arbiter"])
    lineage(store, "promote", G001)  # the store's configured key is the approver's: promote signs the approval
    lineage(store, "push")
    assert git(hub, "rev-parse", "main") == candidate
    assert git(hub, "rev-parse", f"refs/lineage/verdicts/{candidate}") == \
        git(store, "rev-parse", f"refs/lineage/verdicts/{candidate}")
    # a second copy, from before the promotion, pulls the move and the verdict with it (its hook judges both)
    clone = copy_store(world["store"], tmp_path / "clone")
    git(clone, "remote", "set-url", "hub", str(hub))
    lineage(clone, "pull")
    assert git(clone, "rev-parse", "main") == candidate
    assert git(clone, "rev-parse", f"refs/lineage/verdicts/{candidate}") == \
        git(hub, "rev-parse", f"refs/lineage/verdicts/{candidate}")
    verified = lineage(clone, "verify", "--signatures")
    assert "verdict PASS by arbiter@lineage.invalid; approved by ada@lineage.invalid" in verified.stdout


def test_a_proposer_may_roll_back_but_not_to_a_generation_people_withdrew(store, keys):
    hub = hub_of(store)
    sign_verdict(store, G001, keys["arbiter"])
    lineage(store, "promote", G001)
    lineage(store, "push")  # the hub takes one move of main per push
    lineage(store, "rollback", "--to", "G000", "--reason", "answers regressed", env=as_role(keys, "propose"))
    lineage(store, "push")  # the proposer's rollback to a generation never withdrawn: accepted
    assert git(hub, "rev-parse", "main") == git(store, "rev-parse", "main")
    hub_before, main = refs(hub), git(store, "rev-parse", "main")
    proc = lineage(store, "rollback", "--to", "G001", "--reason", "it was fine", check=False,
                   env=as_role(keys, "propose"))
    why = f"G001 was rolled back away from before: going back to it needs an approver's signature, not {LOOP}'s " \
          "propose key"
    assert proc.returncode == 1 and why in proc.stderr, proc.stderr
    assert git(store, "rev-parse", "main") == main
    # the refused rollback left its commit and the proposer's attestation: moved around the hook, pushed
    events = [json.loads(line) for line in lineage(store, "log", "--format", "jsonl").stdout.splitlines()]
    forged = next(e for e in reversed(events) if e["event"] == "ATTEST")["data"]["payload"]
    assert forged["action"] == "rollback" and forged["role"] == "propose"
    hooks_off_move(store, forged["commit"])
    code, err = push(store, "main", "refs/lineage/log")
    assert code != 0 and f"refused to move refs/heads/main: {why}" in err, err
    assert refs(hub) == hub_before
    hooks_off_move(store, main)
    lineage(store, "rollback", "--to", "G001", "--reason", "it was fine after all")  # the approver's key
    lineage(store, "push")
    assert git(hub, "rev-parse", "main") == git(store, "rev-parse", "main")


# ---------------------------------------------------------------- the hub's own rules

def test_hub_init_refuses_a_store_without_signers(world, tmp_path, store_template):
    plain = copy_store(store_template, tmp_path / "plain")
    proc = lineage(plain, "hub", "init", tmp_path / "plain.git", check=False)
    assert proc.returncode == 2 and "error: a hub needs signers: main lists no one in allowed_signers" in proc.stderr
    assert "lineage keys allow" in proc.stderr and not (tmp_path / "plain.git").exists()
    proc = lineage(tmp_path, "hub", "init", tmp_path / "nowhere.git", check=False)
    assert proc.returncode == 2 and "a hub needs signers: this is not a store" in proc.stderr
    assert git(world["hub"], "config", "lineage.rootCommit") == \
        git(world["store"], "rev-list", "--max-parents=0", "--first-parent", "main")


def test_a_first_push_from_another_root_is_refused(store, tmp_path):
    fresh = tmp_path / "fresh.git"
    lineage(store, "hub", "init", fresh, "--name", "fresh")
    repo = pygit2.Repository(str(store))
    main = repo.references["refs/heads/main"].peel(pygit2.Commit)
    who = pygit2.Signature("Mallory", "mallory@lineage.invalid")
    root = repo.create_commit(None, who, who, "lineage: init store\n\nLineage-Init: 1\n", main.tree_id, [])
    code = sh(["git", "push", "fresh", f"{root}:refs/heads/main"], store, check=False)
    assert code.returncode != 0 and f"the pushed history starts at {str(root)[:12]}, not at the store's root" \
        in code.stderr, code.stderr
    assert refs(fresh) == ""


def test_the_log_only_grows_linearly(store):
    hub = hub_of(store)
    hub_before = refs(hub)
    log = git(store, "rev-parse", "refs/lineage/log")
    tree = git(store, "hash-object", "-t", "tree", "/dev/null")
    merge = git(store, "commit-tree", tree, "-p", log, "-p", f"{log}~1", "-m", "{}")
    git(store, "update-ref", "refs/lineage/log", merge)
    code, err = push(store, "refs/lineage/log")
    assert code != 0 and f"the evolution log only grows linearly: {merge[:12]} has 2 parents" in err, err
    assert refs(hub) == hub_before


def test_verdicts_are_created_or_grown_never_deleted_or_rewound_and_only_an_arbiter_writes_them(store, keys):
    hub, candidate = hub_of(store), git(store, "rev-parse", G001)
    ref = f"refs/lineage/verdicts/{candidate}"
    first = sign_verdict(store, G001, keys["arbiter"])
    code, err = push(store, ref)
    assert code == 0, err
    second = sign_verdict(store, G001, keys["arbiter"], verdict="FAIL", reasons=["a second look"])
    assert git(store, "rev-parse", f"{second}^") == first  # a later verdict grows the chain
    assert push(store, ref)[0] == 0 and git(hub, "rev-parse", ref) == second
    hub_before = refs(hub)
    for spec, why in ((f":{ref}", "verdicts are never deleted"),
                      (f"{first}:{ref}", "verdicts are never rewound or rewritten")):
        code, err = push(store, spec)
        assert code != 0 and why in err, err
    junk = git(store, "commit-tree", git(store, "hash-object", "-t", "tree", "/dev/null"), "-p", second,
               "-m", "not a verdict")
    code, err = push(store, f"{junk}:{ref}")
    assert code != 0 and f"{junk[:12]} is not a verdict" in err, err
    git(store, "update-ref", ref, second)
    sign_verdict(store, G001, keys["approve"], ROLE_PRINCIPALS["approve"])  # an approver is no arbiter
    code, err = push(store, ref)
    assert code != 0 and "does not verify under the hub's allowed_signers" in err, err
    assert refs(hub) == hub_before
