"""The three roles, signed: approvals, approved changes and rollbacks as SSH-signed attestations, and
the arbiter's signed verdict as a promotion's evidence.

One real store is built per module with real ed25519 keys (ssh-keygen): alice, the approver `lineage
init` adopts; a proposer (the loop) and an arbiter listed through `lineage keys allow` + `lineage
change`; mallory, listed nowhere. G000 promoted (a verdict, alice's approval), G001 proposed with a
verdict (snapshot taken here), G001 promoted, rolled back to G000 by the proposer. Each test works on
a copy and tampers with the evolution log the way an attacker with write access to the repository
could; `lineage verify --signatures` must name the first bad link.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pygit2
import pytest
from conftest import copy_store, relaxed_tiny, run, run_cli, sign_verdict, write_template_params

from lineage.core.canonical import canonical_json

pytestmark = pytest.mark.slow

TINY = relaxed_tiny(10, 5, eval={"max_new_tokens": 4})
LOG = "refs/lineage/log"


def keygen(path: Path, comment: str) -> Path:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], cwd=path.parent, check=True)
    return path


def lineage(store, *args, key: Path | None = None, check=True):
    code, out, err = run_cli(*args, cwd=store, env={"LINEAGE_SIGNING_KEY": str(key) if key else ""})
    if check:
        assert code == 0, f"lineage {args} exited {code}\n{out}\n{err}"
    return code, out, err


def git(store, *args) -> str:
    return run(["git", *args], cwd=store, check=True)[1].strip()


def events(store) -> list[dict]:
    return [json.loads(line) for line in lineage(store, "log", "--format", "jsonl")[1].splitlines()]


def attestation(store, action: str, generation: str) -> dict:
    return next(e["data"] for e in events(store) if e["event"] == "ATTEST"
                and e["data"]["payload"]["action"] == action and e["data"]["payload"]["generation"] == generation)


def rewrite_log(store: Path, edit) -> None:
    """Rebuild refs/lineage/log with edit(event) applied to each event (None drops it): a forged history."""
    repo = pygit2.Repository(str(store))
    chain, commit = [], repo[repo.references[LOG].target]
    while True:
        chain.append(commit)
        if not commit.parents:
            break
        commit = commit.parents[0]
    parent = None
    for commit in reversed(chain):
        event = edit(json.loads(commit.message))
        if event is not None:
            parent = repo.create_commit(None, commit.author, commit.committer, canonical_json(event).decode() + "\n",
                                        commit.tree_id, [parent] if parent else [])
    repo.references[LOG].set_target(parent)


def forge(store: Path, action: str, generation: str, change=None, drop=False, resign: Path | None = None,
          namespace: str = "lineage-approve") -> None:
    """Alter, re-sign (with ssh-keygen itself, in namespace) or drop one attestation in the log."""
    def edit(event):
        data = event.get("data") or {}
        if (event["event"] != "ATTEST" or data["payload"]["action"] != action
                or data["payload"]["generation"] != generation):
            return event
        if drop:
            return None
        data["payload"].update(change or {})
        if resign:
            proc = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(resign), "-n", namespace],
                                  input=canonical_json(data["payload"]), capture_output=True, check=True)
            data["signature"] = proc.stdout.decode()
        return event
    rewrite_log(store, edit)


def verify_signatures(store) -> tuple[int, str, str | None]:
    code, out, err = lineage(store, "verify", "--signatures", check=False)
    first = next((ln.split(": ", 1)[1] for ln in out.splitlines() if ln.startswith("first bad link: ")), None)
    return code, out + err, first


ARBITER = "arbiter@lineage.invalid"


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """Keys, and a store whose allowed_signers lists alice (approve), loop (propose) and arbiter (arbiter):
    snapshots before and after G001's promotion."""
    base = tmp_path_factory.mktemp("signatures")
    keys = {name: keygen(base / name, f"{name}@lineage.invalid") for name in ("alice", "mallory", "loop", "arbiter")}
    store = base / "luna"
    write_template_params(store, TINY)
    alice, loop = keys["alice"], keys["loop"]
    lineage(base, "init", str(store), key=alice)
    lineage(store, "keys", "allow", "loop@lineage.invalid", f"{loop}.pub", "--role", "propose")
    lineage(store, "keys", "allow", ARBITER, f"{keys['arbiter']}.pub", "--role", "arbiter")
    lineage(store, "change", "--reason", "a proposer and an arbiter", key=alice)
    lineage(store, "propose", key=loop)
    sign_verdict(store, "candidates/G000-a", keys["arbiter"], ARBITER)
    lineage(store, "promote", "candidates/G000-a", key=alice)  # an approver's promote signs the approval
    lineage(store, "corpus", "write", "1", str(base / "era1.jsonl"))
    lineage(store, "data", "add", str(base / "era1.jsonl"))
    lineage(store, "corpus", "exam", "1", str(base / "exam1.jsonl"))
    lineage(store, "exam", "add", str(base / "exam1.jsonl"))
    lineage(store, "change", "--reason", "the exam of era 1", key=alice)
    lineage(store, "propose", key=loop)
    sign_verdict(store, "candidates/G001-a", keys["arbiter"], ARBITER)
    proposed = copy_store(store, base / "proposed")
    lineage(store, "promote", "candidates/G001-a", key=alice)
    lineage(store, "rollback", "--to", "G000", "--reason", "answers regressed", key=loop)
    return {"final": store, "proposed": proposed, **keys}


@pytest.fixture
def final(signed, tmp_path):
    return copy_store(signed["final"], tmp_path / "luna")


@pytest.fixture
def proposed(signed, tmp_path):
    return copy_store(signed["proposed"], tmp_path / "luna")


def public(key: Path) -> str:
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def test_init_with_a_signing_key_lists_it_as_the_first_approver_only(signed):
    text = (signed["final"] / "allowed_signers").read_text()
    assert f'test@lineage.invalid namespaces="lineage-approve,git" {public(signed["alice"])}' in text
    assert f'loop@lineage.invalid namespaces="lineage-propose,git" {public(signed["loop"])}' in text
    assert f'{ARBITER} namespaces="lineage-arbiter,git" {public(signed["arbiter"])}' in text
    assert git(signed["final"], "log", "--reverse", "--format=%s", "--", "allowed_signers").splitlines()[0] == \
        "lineage: init store"


def test_promotions_and_rollback_carry_signatures_that_verify(final, signed):
    code, out, first = verify_signatures(final)
    assert code == 0 and first is None, out
    assert "verify: OK" in out
    for link in ("G000 (promote", "G001 (promote", "G000 (rollback from G001"):
        assert any(ln.startswith(f"signed  {link}") for ln in out.splitlines()), out
    assert f"verdict PASS by {ARBITER}; approved by test@lineage.invalid" in out
    assert "rollback signed by loop@lineage.invalid (propose)" in out
    # The approval binds what the commit holds, and ssh-keygen alone accepts its signature.
    att = attestation(final, "approve", "G001")
    p = att["payload"]
    commit = git(final, "rev-parse", "lineage/gen/G001^{commit}")
    hashes = subprocess.run(["git", "show", f"{commit}:reports/train/hashes.csv"], cwd=final,
                            capture_output=True).stdout
    gate = subprocess.run(["git", "show", f"{commit}:reports/gate.json"], cwd=final, capture_output=True).stdout
    assert p["commit"] == commit and p["parent"] == git(final, "rev-parse", f"{commit}^")
    assert p["weights"] == "sha256:" + hashlib.sha256(hashes).hexdigest()
    assert p["gate_report"] == "sha256:" + hashlib.sha256(gate).hexdigest()
    assert p["policy"].startswith("sha256:") and p["signer"] == "test@lineage.invalid" and p["role"] == "approve"
    (final.parent / "sig").write_text(att["signature"])
    by_hand = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(final / "allowed_signers"), "-I", p["signer"],
                              "-n", "lineage-approve", "-s", str(final.parent / "sig")],
                             input=canonical_json(p), capture_output=True)
    assert by_hand.returncode == 0, by_hand.stderr
    # The verdict is an in-toto statement about exactly that commit and weights, signed in lineage-arbiter.
    message = git(final, "log", "-1", "--format=%B", f"refs/lineage/verdicts/{commit}")
    stored = json.loads(message)
    statement = stored["statement"]
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["digest"]["gitCommit"] == commit
    assert statement["predicate"]["policy_commit"] == p["parent"] and statement["predicate"]["verdict"] == "PASS"
    (final.parent / "verdict.sig").write_text(stored["signature"])
    by_hand = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(final / "allowed_signers"), "-I", ARBITER,
                              "-n", "lineage-arbiter", "-s", str(final.parent / "verdict.sig")],
                             input=canonical_json(statement), capture_output=True)
    assert by_hand.returncode == 0, by_hand.stderr
    rollback = attestation(final, "rollback", "G000")["payload"]
    assert rollback["commit"] == git(final, "rev-parse", "main") and rollback["role"] == "propose"
    assert rollback["weights"] == attestation(final, "approve", "G000")["payload"]["weights"]
    # lineage promote signs no attestation of its own any more
    assert not [e for e in events(final) if e["event"] == "ATTEST" and e["data"]["payload"]["action"] == "promote"]


def test_a_tampered_approval_is_named_as_the_first_bad_link(final):
    forge(final, "approve", "G001", {"approved_by": "Mallory <m@lineage.invalid>"})
    code, out, first = verify_signatures(final)
    assert code == 1
    assert first.startswith("G001 (promote") and "altered after signing" in first, out
    assert any(ln.startswith("signed  G000 (promote") for ln in out.splitlines())


def test_an_approval_signed_by_a_key_not_in_allowed_signers_is_named(final, signed):
    forge(final, "approve", "G001", resign=signed["mallory"])
    code, out, first = verify_signatures(final)
    mallory = run(["ssh-keygen", "-lf", str(signed["mallory"])], cwd=final, check=True)[1].split()[1]
    assert code == 1
    assert first.startswith("G001 (promote"), out
    assert f"signed by key {mallory}, which allowed_signers does not allow to approve" in first


def test_an_approval_whose_weights_digest_differs_from_the_commit_is_named(final, signed):
    forged = "sha256:" + hashlib.sha256(b"other weights").hexdigest()
    forge(final, "approve", "G001", {"weights": forged}, resign=signed["alice"])  # a valid signature, wrong content
    code, out, first = verify_signatures(final)
    assert code == 1
    assert first.startswith("G001 (promote"), out
    assert "weights" in first and "does not match the commit's reports/train/hashes.csv" in first


def test_an_approval_signed_by_the_proposer_in_its_own_namespace_is_named(final, signed):
    forge(final, "approve", "G001", {"role": "propose", "signer": "loop@lineage.invalid"}, resign=signed["loop"],
          namespace="lineage-propose")
    code, out, first = verify_signatures(final)
    assert code == 1 and first.startswith("G001 (promote"), out
    assert "signed by loop@lineage.invalid's propose key; only a key with the approve role may sign it" in first


def test_a_missing_verdict_is_named(final):
    commit = git(final, "rev-parse", "lineage/gen/G001^{commit}")
    git(final, "update-ref", "-d", f"refs/lineage/verdicts/{commit}")
    code, out, first = verify_signatures(final)
    assert code == 1 and first.startswith("G001 (promote") and "no arbiter verdict for" in first, out


def test_a_missing_attestation_is_named_and_the_earliest_bad_link_comes_first(final):
    forge(final, "rollback", "G000", drop=True)
    code, out, first = verify_signatures(final)
    assert code == 1
    assert first.startswith("G000 (rollback from G001") and "requires a signed rollback attestation" in first, out
    forge(final, "approve", "G000", drop=True)  # now an earlier link is bad too: it is the one named
    code, out, first = verify_signatures(final)
    assert code == 1 and first.startswith("G000 (promote") and "no approval of G000" in first, out
    assert "verify: 2 problem(s)" in out


def test_a_candidate_that_edits_allowed_signers_is_refused(proposed, signed):
    repo = pygit2.Repository(str(proposed))
    candidate = repo.references["refs/heads/candidates/G001-a"].peel(pygit2.Commit)
    signers = repo[candidate.tree["allowed_signers"].id].data + \
        b"mallory@lineage.invalid " + (signed["mallory"].parent / "mallory.pub").read_bytes()
    builder = repo.TreeBuilder(candidate.tree)
    builder.insert("allowed_signers", repo.create_blob(signers), pygit2.enums.FileMode.BLOB)
    sneaky = repo.create_commit(None, candidate.author, candidate.committer, candidate.message, builder.write(),
                                candidate.parent_ids)
    repo.references["refs/heads/candidates/G001-a"].set_target(sneaky)
    before = git(proposed, "rev-parse", "main")
    code, _, err = lineage(proposed, "promote", "candidates/G001-a", key=signed["alice"], check=False)
    assert code == 1 and "edits allowed_signers, the list of who may propose, judge and approve" in err
    assert git(proposed, "rev-parse", "main") == before


def test_a_rollback_commit_that_edits_allowed_signers_is_refused(final):
    tree = git(final, "write-tree")
    repo = pygit2.Repository(str(final))
    builder = repo.TreeBuilder(repo[tree])
    builder.insert("allowed_signers", repo.create_blob(b"mallory@x ssh-ed25519 AAAA\n"), pygit2.enums.FileMode.BLOB)
    message = "rollback: G000 -> G000\n\nsneaky\n\nRollback-From: G001\nRollback-To: G000\nReason: sneaky"
    main = git(final, "rev-parse", "main")
    sneaky = run(["git", "commit-tree", str(builder.write()), "-p", main, "-m", message],
                 cwd=final, check=True)[1].strip()
    code, _, err = run(["git", "update-ref", "refs/heads/main", sneaky, main], cwd=final)
    assert code != 0 and "the rollback changes allowed_signers" in err
    assert git(final, "rev-parse", "main") == main


def test_a_promotion_without_an_approval_is_refused_and_moves_nothing(proposed, signed):
    before = git(proposed, "rev-parse", "main")
    commit = git(proposed, "rev-parse", "candidates/G001-a")
    for key in (None, signed["loop"], signed["mallory"], signed["arbiter"]):  # none of them is an approver
        code, _, err = lineage(proposed, "promote", "candidates/G001-a", key=key, check=False)
        assert code == 1 and f"no approval of G001 ({commit[:12]}) by an approver (autonomy manual)" in err, err
        assert "'lineage proposal approve' or 'lineage promote candidates/G001-a' with their key" in err
    code, _, err = run(["git", "merge", "--ff-only", "candidates/G001-a"], cwd=proposed)
    assert code != 0 and "no approval of G001" in err
    assert git(proposed, "rev-parse", "main") == before


def test_a_rollback_without_a_permitted_signature_is_refused_and_moves_nothing(final, signed):
    before = git(final, "rev-parse", "main")
    code, _, err = lineage(final, "rollback", "--to", "G001", "--reason", "back", check=False)
    assert code == 1 and "no signing key is configured" in err and "hint: Run 'lineage keys init'" in err
    code, _, err = lineage(final, "rollback", "--to", "G001", "--reason", "back", key=signed["mallory"], check=False)
    assert code == 1 and "may not roll back under allowed_signers" in err
    assert 'namespaces="lineage-approve,git" ssh-ed25519' in err  # the line an approver would add
    code, _, err = lineage(final, "rollback", "--to", "G001", "--reason", "back", key=signed["arbiter"], check=False)
    assert code == 1 and "may not roll back under allowed_signers on main (it holds the arbiter role)" in err
    # G001 was rolled back away from: the proposer may not bring it back alone; an approver may
    code, _, err = lineage(final, "rollback", "--to", "G001", "--reason", "back", key=signed["loop"], check=False)
    assert code == 1 and "G001 was rolled back away from before: going back to it needs an approver's" in err, err
    assert git(final, "rev-parse", "main") == before
    lineage(final, "rollback", "--to", "G001", "--reason", "back after all", key=signed["alice"])
    assert "Rollback-To: G001" in git(final, "log", "-1", "--format=%B", "main")


def test_the_hub_refuses_an_unapproved_move_and_accepts_a_signed_one(proposed, signed):
    lineage(proposed, "hub", "init", str(proposed.parent / "hub.git"))
    lineage(proposed, "push")  # the first push replays init, the change and G000: its signatures travel
    main = git(proposed, "rev-parse", "main")
    # a user with hooks off moves main by hand: the local arbiter is skipped, the hub's is not
    git(proposed, "-c", "core.hooksPath=/dev/null", "update-ref", "refs/heads/main", "candidates/G001-a", main)
    code, _, err = lineage(proposed, "push", check=False)
    assert code == 1 and "no approval of G001" in err
    assert git(proposed.parent / "hub.git", "rev-parse", "main") == main
    git(proposed, "-c", "core.hooksPath=/dev/null", "update-ref", "refs/heads/main", main)
    lineage(proposed, "promote", "candidates/G001-a", key=signed["alice"])
    lineage(proposed, "push")
    assert git(proposed.parent / "hub.git", "rev-parse", "main") == git(proposed, "rev-parse", "candidates/G001-a")
    # another copy pulls the move: its own log lacks the approval, the hub's log it fetched has it
    other = copy_store(signed["proposed"], proposed.parent / "other")
    git(other, "remote", "add", "hub", str(proposed.parent / "hub.git"))
    lineage(other, "pull")
    assert git(other, "rev-parse", "main") == git(proposed, "rev-parse", "main")
    code, out, _ = verify_signatures(other)
    assert code == 0 and any(ln.startswith("signed  G001 (promote") for ln in out.splitlines()), out


def test_allowed_signers_changes_only_with_an_approvers_signature(final, signed):
    before = git(final, "rev-parse", "main")
    lineage(final, "keys", "allow", "mallory@lineage.invalid", str(signed["mallory"]) + ".pub", "--role", "propose")
    code, _, err = lineage(final, "change", "--reason", "mallory may propose", key=signed["mallory"], check=False)
    assert code == 1 and "may not approve" in err
    code, _, err = lineage(final, "change", "--reason", "mallory may propose", key=signed["loop"], check=False)
    assert code == 1 and "may not approve under allowed_signers on main (it holds the propose role)" in err
    assert git(final, "rev-parse", "main") == before
    lineage(final, "change", "--reason", "mallory may propose", key=signed["alice"])
    assert "mallory@lineage.invalid namespaces=\"lineage-propose,git\"" in (final / "allowed_signers").read_text()
    code, out, first = verify_signatures(final)
    assert code == 0, out
    assert any(ln.startswith("signed  change ") and "change signed by test@lineage.invalid" in ln
               for ln in out.splitlines())


def test_one_key_holds_one_role(final, signed):
    code, _, err = lineage(final, "keys", "allow", "bob@lineage.invalid", str(signed["loop"]) + ".pub",
                           "--role", "approve", check=False)
    assert code == 2 and "one key holds one role" in err.splitlines()[0], err
    code, _, err = lineage(final, "keys", "allow", "bob@lineage.invalid", str(signed["mallory"]) + ".pub", check=False)
    assert code == 2 and "--role" in err  # exactly one role, always named
    # written by hand, a second role for the proposer's key is refused by the arbiter
    text = (final / "allowed_signers").read_text()
    (final / "allowed_signers").write_text(text + f'loop@lineage.invalid namespaces="lineage-approve" '
                                                  f'{public(signed["loop"])}\n')
    git(final, "add", "allowed_signers")
    before = git(final, "rev-parse", "main")
    code, _, err = lineage(final, "change", "--reason", "the loop approves too", key=signed["alice"], check=False)
    assert code == 1 and "breaks one key, one role" in err and "lists the key of line" in err, err
    assert git(final, "rev-parse", "main") == before


def test_approving_a_proposal_signs_the_approval_with_a_key_allowed_to_approve(proposed, signed):
    commit = git(proposed, "rev-parse", "candidates/G001-a")
    proposal = {"schema_version": 1, "window": "G001", "candidate": "candidates/G001-a", "commit": commit,
                "current_head": git(proposed, "rev-parse", "main"), "improvement": 0.1, "composite": 0.5,
                "head_composite": 0.4, "risk": "low", "risk_reasons": ["data only"], "criteria": [], "hashes": {},
                "status": "open", "cycle": None}
    (proposed / ".lineage").mkdir(exist_ok=True)
    (proposed / ".lineage" / "proposal.json").write_text(json.dumps(proposal))
    code, _, err = lineage(proposed, "proposal", "approve", key=signed["mallory"], check=False)
    assert code == 1 and "may not approve under allowed_signers" in err
    code, _, err = lineage(proposed, "proposal", "approve", key=signed["loop"], check=False)
    assert code == 1 and "may not approve under allowed_signers on main (it holds the propose role)" in err
    lineage(proposed, "proposal", "approve", key=signed["alice"])
    assert git(proposed, "rev-parse", "main") == commit
    approval = attestation(proposed, "approve", "G001")["payload"]
    assert approval["commit"] == commit and approval["approved_by"] == "Lineage Test <test@lineage.invalid>"
    moved = next(e for e in events(proposed) if e["event"] == "COMMIT" and e["generation"] == "G001")
    assert moved["data"]["approved_by"] == approval["approved_by"]
    code, out, _ = verify_signatures(proposed)
    assert code == 0 and f"verdict PASS by {ARBITER}; approved by test@lineage.invalid" in out, out


def test_verify_signatures_without_allowed_signers_says_nothing_can_be_checked(store):
    code, out, first = verify_signatures(store)
    assert code == 1
    assert first.startswith("main has no allowed_signers") and "lineage keys init" in first


def test_keys_init_creates_one_key_and_a_new_store_adopts_it_as_approver(tmp_path):
    code, out, err = run_cli("keys", "init", "--principal", "ops@lineage.invalid", cwd=tmp_path)
    assert code == 0, err
    key = Path(out.split()[1])
    assert key.is_file() and key.name == "signing_key" and ".config/lineage" in str(key)
    assert 'allowed_signers line: ops@lineage.invalid namespaces="lineage-approve,git" ssh-ed25519 ' in out
    assert "--role approve" in out
    again = run_cli("keys", "init", "--role", "arbiter", cwd=tmp_path)[1]
    assert again.startswith(f"kept {key}") and out.split()[2] == again.split()[2]  # same fingerprint
    assert 'namespaces="lineage-arbiter,git"' in again
    code, out, err = run_cli("init", tmp_path / "luna", cwd=tmp_path)
    assert code == 0 and "allowed_signers" in out, err
    listed = (tmp_path / "luna" / "allowed_signers").read_text()
    assert f'namespaces="lineage-approve,git" {" ".join(Path(str(key) + ".pub").read_text().split()[:2])}' in listed


def test_keys_allow_refuses_something_that_is_not_a_key(store):
    code, _, err = run_cli("keys", "allow", "bob@lineage.invalid", "not-a-key", "--role", "approve", cwd=store)
    assert code == 2
    assert err.splitlines()[0].startswith("error: 'not-a-key' is neither a key file nor an SSH public key")
    code, _, err = run_cli("keys", "allow", "bob,eve", "ssh-ed25519 AAAA", "--role", "approve", cwd=store)
    assert code == 2 and "must be one word" in err
