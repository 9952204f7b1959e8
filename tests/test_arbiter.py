"""The independent arbiter: a proposer and an arbiter, two identities on one machine.

Each has its own HOME, git identity and keys; the proposer never has the arbiter's key or its
directory (the sealed exam and its seed). One world is built per module (the slow tests): the proposer's store P
(G000 served, era 1 registered and examined on main) with the arbiter's key listed in
allowed_signers (namespace lineage-arbiter) and the arbiter's sealed exam pinned on main; the
arbiter's own clone A of P (its own DVC cache: weights come by content from the DVC remote). P
proposes an honest candidate and a wild one (a learning rate that wrecks its voice: FAIL), and
builds by hand a candidate trained on the visible generalize answers. `lineage arbiter watch P
--once` in A judges the frozen ones and pushes the verdicts back to P; forged candidates (pygit2
commits on top of main, the way a proposer who owns its repository could write them) are judged
one by one with `lineage arbiter evaluate`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pygit2
import pytest
import yaml
from conftest import VENV_BIN, clone_store, commit_on_protected_branch, relaxed_tiny, run, trained_g000

from lineage.core import corpus, sealed
from lineage.core.errors import PolicyError
from lineage.core.exam import render_items
from lineage.core.gate import judge
from lineage.core.metrics import BudgetUsed, EvalMetrics
from lineage.core.overlap import TrainingIndex, checked_text
from lineage.core.policy import Policy
from lineage.guard import verdict
from lineage.moves.arbiter_fetch import file_set_problem
from lineage.moves.arbiter_judge import divergences
from lineage.store import waiting
from lineage.store.exam import pin_digest, read_exam
from lineage.store.root import Store

slow = pytest.mark.slow  # the tests that use the trained world

TINY = relaxed_tiny(10, 5, eval={"max_new_tokens": 4})
# main's policy in this module: the relaxed one, but a child must keep its parent's voice
STRICT_VOICE = 0.02
MALLORY = pygit2.Signature("Proposer", "proposer@lineage.invalid")


# ---------------------------------------------------------------- two identities

def identity(base: Path, name: str, key: Path | None) -> dict:
    """Environment of one person: HOME, XDG config, git identity and signing key of their own."""
    home = base / f"{name}-home"
    (home / ".config").mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(f"[user]\n\tname = {name}\n\temail = {name}@lineage.invalid\n[init]\n\tdefaultBranch = main\n")
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_GLOBAL": str(gitconfig),
            "LINEAGE_SIGNING_KEY": str(key) if key else "", "LINEAGE_ARBITER_HOME": ""}


def keygen(path: Path, comment: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], cwd=path.parent, check=True)
    return path


def lineage(cwd, env: dict, *args, check: bool = True) -> tuple[int, str, str]:
    code, out, err = run([sys.executable, "-m", "lineage", *map(str, args)], cwd=cwd, env=env)
    if check:
        assert code == 0, f"lineage {args} exited {code}\n{out}\n{err}"
    return code, out, err


def git(cwd, *args, env: dict | None = None) -> str:
    return run(["git", *args], cwd=cwd, check=True, env=env)[1].strip()


def dvc(cwd, *args, env: dict | None = None) -> str:
    return run([str(VENV_BIN / "dvc"), *args], cwd=cwd, check=True, env=env)[1]


def blob(store: Path, rev: str, path: str) -> bytes:
    repo = pygit2.Repository(str(store))
    commit = repo.revparse_single(rev).peel(pygit2.Commit)
    return repo[commit.tree[path].id].data


def forge(store: Path, tree_from: str, parent: str, branch: str, edits: dict) -> str:
    """A commit (no hook runs) of tree_from's tree with edits (path -> bytes, None drops), on a new branch."""
    repo = pygit2.Repository(str(store))
    index = pygit2.Index()
    index.read_tree(repo.revparse_single(tree_from).peel(pygit2.Tree))
    for path, data in edits.items():
        if data is None:
            index.remove(path)
        else:
            index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    source = repo.revparse_single(tree_from).peel(pygit2.Commit)
    commit = repo.create_commit(None, MALLORY, MALLORY, source.message, index.write_tree(repo),
                                [repo.revparse_single(parent).peel(pygit2.Commit).id])
    repo.references.create(f"refs/heads/{branch}", commit)
    return str(commit)


def verdict_refs(store: Path) -> str:
    return git(store, "for-each-ref", "--format=%(objectname) %(refname)", "refs/lineage/verdicts/")


def stored_verdict(store: Path, commit: str) -> verdict.Verdict:
    found = verdict.read(pygit2.Repository(str(store)), commit)
    assert found, f"no verdict for {commit}"
    return found[0]


# ---------------------------------------------------------------- the world

def exam_on_main(store: Path) -> list[str]:
    """Write eras 0 and 1's exam on main unless main has it (a store made before the exam belonged to main)."""
    exam = read_exam(pygit2.Repository(str(store)), pygit2.Repository(str(store)).revparse_single("main"))
    if any(i["delta"] == "era1" for i in exam.of("generalize")):
        return []
    items: dict[str, list] = {}
    for era in (0, 1):
        for record in (r for r in corpus.generate()[era] if r["kind"] == "probe"):
            kind = record["probe"]
            keep = {"recall": ("prompt", "choices", "answer"), "generalize": ("prompt", "choices", "answer"),
                    "tone": ("text",), "law": ("prompt", "rule")}[kind]
            item = {k: record[k] for k in keep}
            if kind in ("recall", "generalize"):
                item["delta"] = f"era{era}"
            if item not in items.setdefault(kind, []):
                items[kind].append(item)
    (store / "exam").mkdir(exist_ok=True)
    for kind, rows in items.items():
        (store / "exam" / f"{kind}.jsonl").write_text(render_items(rows))
    return [f"exam/{kind}.jsonl" for kind in items]


def leak_candidate(store: Path, env: dict, generation: str) -> str:
    """Train, by hand, a candidate whose extra delta holds the visible generalize answers.

    The proposer bypasses `data add` (it writes the .dvc with dvc itself) and its own prepare stage
    skips the exam checks; then it commits, pushes its data and freezes the candidate as propose would.
    """
    branch = f"candidates/{generation}-leak"
    waiting.place(Store.open(store))  # era 1's registration rides along, put in place as propose does
    git(store, "checkout", "-q", "-b", branch, "main")
    exam = read_exam(pygit2.Repository(str(store)), pygit2.Repository(str(store)).revparse_single("main"))
    rows = [{"kind": "qa", "prompt": i["prompt"], "completion": i["choices"][i["answer"]] + ".",
             "source": "leak/answers", "score": 1.0} for i in exam.of("generalize") if i["delta"] == "era1"]
    delta = "data/deltas/d002-leak.jsonl"
    (store / delta).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows * 4))
    dvc(store, "add", "-q", delta)
    (store / "stages" / "prepare.py").write_text(
        "from lineage.pipeline import prepare\nfrom lineage.pipeline.common import run_stage\n\n"
        "prepare.check_overlap = lambda *a, **k: None  # the proposer's own pipeline checks nothing\n"
        "prepare.require_generalize = lambda *a, **k: None\n"
        "raise SystemExit(run_stage(prepare.main))\n")
    # the warm server's fork runs the patched script as __main__, so the patch holds there too
    run([str(VENV_BIN / "dvc"), "repro", "-f"], cwd=store, env=env, check=True)
    dvc(store, "push", "-q")
    git(store, "add", "-A")
    git(store, "commit", "-q", "-m", f"{generation}-leak: PASS\n\nGeneration: {generation}\nParent: G000\n"
                                     "Verdict: PASS\nGate-Report: none", env=env)
    commit = git(store, "rev-parse", "HEAD")
    git(store, "checkout", "-q", "-f", "main")
    return commit


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("arbiter")
    arbiter_key = keygen(base / "keys" / "arbiter", "arbiter@lineage.invalid")
    proposer_key = keygen(base / "keys" / "proposer", "proposer@lineage.invalid")
    arb = identity(base, "arbiter", arbiter_key)
    prop = identity(base, "proposer", None)
    arbiter_home = Path(arb["XDG_CONFIG_HOME"]) / "lineage" / "arbiter"

    proposer = clone_store(trained_g000(tmp_path_factory, TINY), base / "proposer")
    remote = Path(str(proposer) + ".dvc-remote")
    store = base / "arbiter"
    git(base, "clone", "-q", str(proposer), str(store), env=arb)
    dvc(store, "remote", "add", "--local", "-f", "-d", "origin", str(remote))

    # the arbiter derives its sealed exam; the pin travels to main with its key and the exam
    _, out, _ = lineage(store, arb, "arbiter", "init")
    assert "staged the pin exam/sealed.json" in out and (arbiter_home / "seed").is_file()
    assert oct(arbiter_home.stat().st_mode & 0o777) == "0o700"
    (proposer / "exam").mkdir(exist_ok=True)
    (proposer / "exam" / "sealed.json").write_text((store / "exam" / "sealed.json").read_text())
    public = (base / "keys" / "arbiter.pub").read_text().split()
    (proposer / "allowed_signers").write_text(
        f'arbiter@lineage.invalid namespaces="lineage-arbiter" {public[0]} {public[1]}\n')
    params = yaml.safe_load((proposer / "params.yaml").read_text())
    params["policy"]["max_tone_drift"] = STRICT_VOICE
    (proposer / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    paths = ["exam/sealed.json", "allowed_signers", "params.yaml", *exam_on_main(proposer)]
    git(proposer, "add", *paths)
    commit_on_protected_branch(proposer, "the arbiter's key, its sealed exam, a strict voice", *paths)
    git(store, "fetch", "-q", "origin")
    git(store, "reset", "-q", "--hard", "origin/main")

    # the proposer's candidates: honest, wild (its voice wrecked: FAIL), and one trained on the test
    lineage(proposer, prop, "propose", "--name", "honest")
    code, out, err = lineage(proposer, prop, "propose", "--name", "wild", "-S", "train.learning_rate=0.05",
                             check=False)
    assert code == 1 and "FAIL" in out and "tone_drift" in out, out + err
    leak = leak_candidate(proposer, prop, "G009")
    git(store, "fetch", "-q", "origin", "+refs/heads/candidates/*:refs/heads/candidates/*")

    # the arbiter's watch over the proposer's store: the frozen candidates judged, verdicts pushed
    _, watched, err = lineage(store, arb, "arbiter", "watch", str(proposer), "--once")
    return {"proposer": proposer, "store": store, "arb": arb, "prop": prop, "home": arbiter_home,
            "arbiter_key": arbiter_key, "proposer_key": proposer_key, "watched": watched, "leak": leak,
            "main": git(proposer, "rev-parse", "main"), "base": base}


def commit_of(world, ref: str) -> str:
    return git(world["proposer"], "rev-parse", ref)


def evaluate(world, candidate: str, env: dict | None = None, *args) -> tuple[int, str, str]:
    """`lineage arbiter evaluate` in the arbiter's clone, after it fetched the proposer's candidates."""
    git(world["store"], "fetch", "-q", "origin", "+refs/heads/candidates/*:refs/heads/candidates/*")
    return lineage(world["store"], env or world["arb"], "arbiter", "evaluate", candidate, *args, check=False)


def refused(world, candidate: str, env: dict | None = None, *args) -> str:
    """Evaluate a candidate that must be refused: one error line, exit non-zero, no verdict written."""
    before = verdict_refs(world["store"])
    code, out, err = evaluate(world, candidate, env, *args)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code != 0 and len(errors) == 1, f"exit {code}\n{out}\n{err}"
    assert verdict_refs(world["store"]) == before
    return errors[0]


# ---------------------------------------------------------------- verdicts

@slow
def test_watch_judges_each_frozen_candidate_once_and_pushes_its_verdict(world):
    lines = world["watched"].splitlines()
    assert any(ln.startswith("candidates/G001-honest: PASS") for ln in lines), world["watched"]
    assert any(ln.startswith("candidates/G002-wild: FAIL") for ln in lines), world["watched"]
    assert len(lines) == 2, world["watched"]  # the leak candidate was never frozen: watch does not see it
    for name in ("candidates/G001-honest", "candidates/G002-wild"):
        commit = commit_of(world, name)
        assert git(world["proposer"], "rev-parse", f"refs/lineage/verdicts/{commit}") == \
            git(world["store"], "rev-parse", f"refs/lineage/verdicts/{commit}")
    _, again, _ = lineage(world["store"], world["arb"], "arbiter", "watch", str(world["proposer"]), "--once")
    assert again.strip() == f"nothing to judge on {world['proposer']}"


@slow
def test_an_honest_candidate_gets_a_signed_pass_verdict_that_verifies_as_the_arbiters(world):
    commit = commit_of(world, "candidates/G001-honest")
    found = stored_verdict(world["proposer"], commit)
    p = found.predicate
    assert found.passed and p["failed"] == [] and p["divergences"] == []
    signers = blob(world["proposer"], "main", "allowed_signers")
    assert verdict.check(found, signers) is None
    # the same key listed for another role does not make it an arbiter
    assert "does not let act as arbiter" in verdict.check(found, signers.replace(b"lineage-arbiter",
                                                                                 b"lineage-approve"))
    repo = pygit2.Repository(str(world["proposer"]))
    main = repo.revparse_single("main")
    assert p["policy_commit"] == world["main"] and p["served"] == {"generation": "G000", "commit": world["main"]}
    assert p["exam"] == read_exam(repo, main).digest() and p["sealed_exam"] == pin_digest(repo, main)
    params = yaml.safe_load(blob(world["proposer"], "main", "params.yaml"))
    assert p["policy"] == Policy.from_params(params).digest()
    from lineage.core.hashes import parse_hashes_csv, weights_digest
    rows = parse_hashes_csv(blob(world["proposer"], commit, "reports/train/hashes.csv").decode())
    assert p["weights"] == weights_digest(rows) == "sha256:" + found.statement["subject"][0]["digest"]["sha256"]
    assert p["arbiter"] == "arbiter@lineage.invalid" and p["key"].startswith("SHA256:")
    assert set(verdict.PREDICATE_FIELDS) <= set(p)
    assert p["metrics"]["sealed"]["items"] == 36 and p["metrics"]["gains"]["sealed"] is not None


@slow
def test_a_failed_candidate_dressed_as_a_pass_gets_a_fail_verdict_naming_the_divergence(world):
    wild = "candidates/G002-wild"
    claimed = json.loads(blob(world["proposer"], wild, "metrics.json"))
    measured_drift = claimed["tone_drift"]
    assert measured_drift > STRICT_VOICE
    claimed["tone_drift"] = 0.001
    claimed["child"]["generalize"] = 1.0
    metrics = (json.dumps(claimed, indent=2, sort_keys=True) + "\n").encode()
    policy = Policy.from_params(yaml.safe_load(blob(world["proposer"], "main", "params.yaml")))
    train = json.loads(blob(world["proposer"], wild, "reports/train/metrics.json"))
    old_report = json.loads(blob(world["proposer"], wild, "reports/gate.json"))
    hashes = {**old_report["hashes"], "metrics": "sha256:" + hashlib.sha256(metrics).hexdigest()}
    report = judge(policy, EvalMetrics.from_dict(claimed), BudgetUsed.from_dict(train), hashes=hashes,
                   policy_source=old_report["policy_source"])
    assert report.verdict == "PASS"
    lock = blob(world["proposer"], wild, "dvc.lock").replace(
        hashlib.md5(blob(world["proposer"], wild, "metrics.json")).hexdigest().encode(),
        hashlib.md5(metrics).hexdigest().encode())
    forge(world["proposer"], wild, "main", "candidates/G002-dressed",
          {"metrics.json": metrics, "reports/gate.json": (json.dumps(report.to_dict(), indent=2) + "\n").encode(),
           "dvc.lock": lock})
    code, out, err = evaluate(world, "candidates/G002-dressed", None, "--push", "origin")
    print(out)  # the exact summary a person sees
    assert code == 1, out + err
    dressed = commit_of(world, "candidates/G002-dressed")
    assert out.rstrip().endswith("pushed to origin")
    assert git(world["proposer"], "rev-parse", f"refs/lineage/verdicts/{dressed}") == \
        git(world["store"], "rev-parse", f"refs/lineage/verdicts/{dressed}")
    assert out.splitlines()[0].split(": ", 1)[1].startswith("FAIL")
    assert "claimed tone_drift 0.0010, measured" in out and "claimed generalize 1.00, measured" in out
    found = stored_verdict(world["store"], dressed)
    assert not found.passed and "tone_drift" in found.predicate["failed"] and "claims" in found.predicate["failed"]
    assert any(d.startswith("claimed tone_drift 0.0010") for d in found.predicate["divergences"])
    assert found.predicate["claimed"]["tone_drift"] == 0.001
    assert verdict.check(found, blob(world["proposer"], "main", "allowed_signers")) is None


@slow
def test_a_candidate_trained_on_the_visible_answers_fails_on_overlap_with_both_gains_shown(world):
    git(world["proposer"], "branch", "-f", "candidates/G009-leak", world["leak"])
    code, out, err = evaluate(world, "candidates/G009-leak")
    print(out)
    assert code == 1, out + err
    found = stored_verdict(world["store"], world["leak"])
    assert not found.passed and "overlap" in found.predicate["failed"]
    assert any("d002-leak.jsonl" in r and "overlaps" in r for r in found.predicate["reasons"])
    gains = found.predicate["metrics"]["gains"]
    assert isinstance(gains["visible"], float) and isinstance(gains["sealed"], float)
    assert f"generalize gain: visible {gains['visible']:+.2f}, sealed {gains['sealed']:+.2f}" in out


@slow
def test_the_arbiter_judges_by_mains_policy_and_exam_whatever_the_candidate_edits(world):
    honest = "candidates/G001-honest"
    params = yaml.safe_load(blob(world["proposer"], honest, "params.yaml"))
    params["policy"].update(max_tone_drift=1.0, sealed_margin=1.0, claim_tolerance=1.0)
    params["eval"]["batch_size"] = 1
    generalize = [json.loads(line) for line in blob(world["proposer"], honest, "exam/generalize.jsonl").splitlines()]
    for item in generalize:
        item["answer"] = (item["answer"] + 1) % len(item["choices"])
    forged = forge(world["proposer"], honest, "main", "candidates/G001-edits", {
        "params.yaml": yaml.safe_dump(params, sort_keys=False).encode(),
        "exam/generalize.jsonl": render_items(generalize).encode(), "exam/sealed.json": None})
    code, out, err = evaluate(world, "candidates/G001-edits")
    print(out)
    assert code == 0, out + err
    mine = stored_verdict(world["store"], forged).predicate
    honest_verdict = stored_verdict(world["store"], commit_of(world, honest)).predicate
    for key in ("policy", "exam", "sealed_exam", "policy_commit", "weights"):
        assert mine[key] == honest_verdict[key], key
    for key in ("child", "parent", "tone_drift", "sealed"):
        assert mine["metrics"][key] == honest_verdict["metrics"][key], key
    assert mine["metrics"]["criteria"] == honest_verdict["metrics"]["criteria"]


# ---------------------------------------------------------------- refused: one line, nothing written

@slow
def test_dvc_lock_pointing_at_other_weights_is_refused(world):
    honest = "candidates/G001-honest"
    served_md5 = next(o["md5"] for o in yaml.safe_load(blob(world["proposer"], "main", "dvc.lock"))["stages"]["train"]
                      ["outs"] if o["path"] == "models/child")
    mine = next(o["md5"] for o in yaml.safe_load(blob(world["proposer"], honest, "dvc.lock"))["stages"]["train"]
                ["outs"] if o["path"] == "models/child")
    lock = blob(world["proposer"], honest, "dvc.lock").replace(mine.encode(), served_md5.encode())
    forge(world["proposer"], honest, "main", "candidates/G001-otherlock", {"dvc.lock": lock})
    line = refused(world, "candidates/G001-otherlock")
    assert "integrity check failed" in line and "sha256" in line and "!= recorded" in line


@slow
def test_hashes_csv_recomputed_for_other_weights_is_refused(world):
    honest = "candidates/G001-honest"
    forge(world["proposer"], honest, "main", "candidates/G001-othercsv",
          {"reports/train/hashes.csv": blob(world["proposer"], "main", "reports/train/hashes.csv")})
    line = refused(world, "candidates/G001-othercsv")
    assert "integrity check failed" in line and "sha256" in line


@slow
def test_an_extra_file_in_the_weights_directory_is_refused(world):
    """The proposer adds a file hashes.csv does not list to the DVC directory, in the DVC remote."""
    honest = "candidates/G001-honest"
    remote = Path(str(world["proposer"]) + ".dvc-remote") / "files" / "md5"
    lock = blob(world["proposer"], honest, "dvc.lock")
    mine = next(o for o in yaml.safe_load(lock)["stages"]["train"]["outs"] if o["path"] == "models/child")
    listing = json.loads((remote / mine["md5"][:2] / mine["md5"][2:]).read_text())
    extra = b"import os  # transformers would run this with trust_remote_code\n"
    extra_md5 = hashlib.md5(extra).hexdigest()
    (remote / extra_md5[:2]).mkdir(exist_ok=True)
    (remote / extra_md5[:2] / extra_md5[2:]).write_bytes(extra)
    listing = sorted(listing + [{"md5": extra_md5, "relpath": "modeling_luna.py"}], key=lambda e: e["relpath"])
    text = json.dumps(listing, sort_keys=True)
    new_md5 = hashlib.md5(text.encode()).hexdigest() + ".dir"
    (remote / new_md5[:2]).mkdir(exist_ok=True)
    (remote / new_md5[:2] / new_md5[2:]).write_text(text)
    forge(world["proposer"], honest, "main", "candidates/G001-extra",
          {"dvc.lock": lock.replace(mine["md5"].encode(), new_md5.encode())})
    line = refused(world, "candidates/G001-extra")
    assert "modeling_luna.py" in line and "hashes.csv does not list" in line


@slow
def test_weights_missing_from_the_dvc_remote_are_refused(world):
    honest = "candidates/G001-honest"
    lock = blob(world["proposer"], honest, "dvc.lock")
    mine = next(o["md5"] for o in yaml.safe_load(lock)["stages"]["train"]["outs"] if o["path"] == "models/child")
    forge(world["proposer"], honest, "main", "candidates/G001-nowhere",
          {"dvc.lock": lock.replace(mine.encode(), b"0123456789abcdef0123456789abcdef.dir")})
    line = refused(world, "candidates/G001-nowhere")
    assert "neither in the local cache nor in the DVC remote" in line or "could not be fetched" in line


@slow
def test_a_rotated_sealed_exam_is_refused(world, tmp_path):
    home = tmp_path / "rotated"
    shutil.copytree(world["home"], home)
    items = [json.loads(line) for line in (home / "sealed.jsonl").read_text().splitlines()]
    (home / "sealed.jsonl").write_text(render_items(items[1:]))  # a sealed exam main does not pin
    line = refused(world, "candidates/G001-honest", None, "--home", str(home))
    assert "sealed exam is rotated or expired" in line
    empty = tmp_path / "none"
    line = refused(world, "candidates/G001-honest", None, "--home", str(empty))
    assert "sealed exam is rotated or expired" in line and "holds none" in line


@slow
def test_no_key_and_a_key_without_the_arbiter_role_are_refused(world, tmp_path):
    nobody = identity(tmp_path, "nobody", None)
    line = refused(world, "candidates/G001-honest", nobody, "--home", str(world["home"]))
    assert "no signing key" in line and "lineage keys init" in line and "arbiter" in line
    proposer = {**world["prop"], "LINEAGE_SIGNING_KEY": str(world["proposer_key"])}
    line = refused(world, "candidates/G001-honest", proposer, "--home", str(world["home"]))
    assert "no arbiter key" in line and "lineage-arbiter" in line


@slow
def test_a_stale_candidate_is_refused(world):
    forge(world["proposer"], "candidates/G001-honest", "main~1", "candidates/G001-stale", {})
    line = refused(world, "candidates/G001-stale")
    assert "is stale" in line and "re-propose" in line


@slow
def test_a_candidate_that_changes_a_registered_delta_is_refused(world):
    honest = "candidates/G001-honest"
    era0 = "data/deltas/d000-era0.jsonl.dvc"
    forge(world["proposer"], honest, "main", "candidates/G001-rewrites",
          {era0: blob(world["proposer"], honest, era0).replace(b"md5: ", b"md5: 0")})
    line = refused(world, "candidates/G001-rewrites")
    assert f"modifies the registered delta {era0}" in line


@slow
def test_the_proposer_never_holds_the_arbiters_secrets(world):
    prop_config = Path(world["prop"]["XDG_CONFIG_HOME"])
    assert not (prop_config / "lineage" / "arbiter").exists()
    assert not list(world["proposer"].rglob("sealed.jsonl")) and not list(world["proposer"].rglob("seed"))
    pin = json.loads(blob(world["proposer"], "main", "exam/sealed.json"))
    assert set(pin) == {"schema_version", "digest", "items", "created_at", "arbiter"} and pin["items"] == 144


@slow
def test_seal_imports_a_sealed_exam_and_stages_its_pin(world, tmp_path):
    store = clone_store(world["store"], tmp_path / "copy")
    home = tmp_path / "home"
    items = [json.loads(line) for line in (world["home"] / "sealed.jsonl").read_text().splitlines()][:5]
    (tmp_path / "mine.jsonl").write_text(render_items(items))
    _, out, _ = lineage(store, world["arb"], "arbiter", "seal", tmp_path / "mine.jsonl", "--home", home)
    assert "5 items" in out and "staged the pin exam/sealed.json" in out and "lineage change" in out
    pin = json.loads((store / "exam" / "sealed.json").read_text())
    assert pin["items"] == 5 and (home / "sealed.jsonl").read_text() == render_items(items)
    assert "exam/sealed.json" in git(store, "diff", "--cached", "--name-only")
    (tmp_path / "bad.jsonl").write_text('{"delta": "era1", "prompt": "Q?", "choices": [" a"], "answer": 0}\n')
    code, _, err = lineage(store, world["arb"], "arbiter", "seal", tmp_path / "bad.jsonl", "--home", home,
                           check=False)
    assert code != 0 and "bad.jsonl:1" in err and "generalize item" in err


# ---------------------------------------------------------------- pure parts (fast)

def test_the_sealed_exam_is_drawn_by_the_secret_seed_in_phrasings_the_visible_exam_never_uses():
    eras = corpus.generate()
    one, again = sealed.derive("seed-one", eras), sealed.derive("seed-one", eras)
    other = sealed.derive("seed-two", eras)
    assert one == again and len(one) == len(sealed.facts(eras)) == corpus.ERAS * corpus.ISLANDS_PER_ERA * 3
    assert sealed.digest(one) != sealed.digest(other)
    assert sum(a["prompt"] != b["prompt"] or a["choices"] != b["choices"] for a, b in zip(one, other, strict=True)) \
        > len(one) // 2
    visible = {r["prompt"] for era in eras for r in era if "prompt" in r}
    phrasings = {t for pool in sealed.PARAPHRASES.values() for t in pool}
    for fact, item in zip(sealed.facts(eras), one, strict=True):
        assert item["prompt"] not in visible and item["delta"] == fact.era
        assert any(item["prompt"] == t.format(s=fact.subject) for t in phrasings)
        assert item["choices"][item["answer"]] == f" {fact.obj}" and len(set(item["choices"])) == corpus.CHOICES
    assert sealed.parse(render_items(one), "sealed.jsonl") == one


def test_no_sealed_item_overlaps_the_bundled_training_data():
    index = TrainingIndex(r.get("text") or r["prompt"] + r["completion"]
                          for era in corpus.generate() for r in era if r["kind"] != "probe")
    hits = [i["prompt"] for i in sealed.derive("any seed") if index.find(checked_text("generalize", i))]
    assert hits == []


def test_the_sealed_rule_and_the_claims_name_both_numbers():
    assert sealed.sealed_rule(0.5, 0.05, 0.2) == ("trained on the test: visible generalize gain +0.50, sealed "
                                                  "generalize gain +0.05 (more than policy.sealed_margin 0.2 apart)")
    assert sealed.sealed_rule(0.3, 0.15, 0.2) is None
    measured = {"child": {"recall": 0.42, "generalize": 0.3, "law_violations": 2, "recall_by_delta": {"d0": 0.4}},
                "parent": {"recall": 0.5, "generalize": 0.3, "law_violations": 0}, "tone_drift": 0.01}
    claimed = {"child": {"recall": 1.0, "generalize": 0.31, "law_violations": 0, "recall_by_delta": {"d0": 0.4}},
               "parent": {"recall": 0.5, "generalize": 0.3, "law_violations": 0}, "tone_drift": 0.01}
    assert divergences(claimed, measured, 0.02) == ["claimed recall 1.00, measured 0.42",
                                                    "claimed law_violations 0, measured 2"]
    assert divergences(measured, measured, 0.0) == []
    assert divergences(None, measured, 0.02) == ["the candidate claims no readable metrics.json"]


def test_the_file_set_must_be_exactly_what_hashes_csv_lists():
    rows = [{"path": "model.safetensors", "sha256": "a", "bytes": 1},
            {"path": "config.json", "sha256": "b", "bytes": 1}]
    assert file_set_problem(["config.json", "hashes.csv", "model.safetensors"], rows, "G001") is None
    assert "modeling.py, which hashes.csv does not list" in file_set_problem(
        ["config.json", "model.safetensors", "modeling.py"], rows, "G001")
    assert "lists config.json, which the weights of G001 do not hold" in file_set_problem(
        ["model.safetensors"], rows, "G001")


def test_the_policy_holds_the_sealed_margin_and_the_claim_tolerance():
    policy = Policy()
    assert (policy.sealed_margin, policy.claim_tolerance) == (0.2, 0.02)
    assert Policy.from_dict({"sealed_margin": 0.5}).digest() != policy.digest()
    template = yaml.safe_load((Path(__file__).parents[1] / "lineage" / "template" / "params.yaml").read_text())
    assert Policy.from_params(template).sealed_margin == 0.2
    for bad in ({"sealed_margin": 1.5}, {"claim_tolerance": -0.1}, {"claim_tolerance": "small"}):
        with pytest.raises(PolicyError):
            Policy.from_dict(bad)
