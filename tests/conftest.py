"""Shared fixtures: an isolated environment, CLI/command runners and real stores built once.

Stores are real (git + DVC + the bundled template). The expensive ones are built once per
session and copied per test:

    store_template          lineage init + tiny params committed on main (nothing run)
    prepared_template       + `dvc repro prepare` (a scratch parent, the data gate, probes)
    trained_store_template  + `dvc repro train` (a tiny first generation, uncommitted)

Every store trains a tiny Llama (TINY_PARAMS) so the whole suite stays within minutes on two
CPU cores.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

VENV_BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[1]

# Small enough that a whole parent -> prepare -> train run takes seconds on a CPU. A first
# generation trained from the scratch base runs scratch.max_steps; later ones train.max_steps.
TINY_STEPS = 40
TINY_PARAMS = {
    "scratch": {"hidden_size": 64, "num_layers": 2, "intermediate_size": 128, "num_heads": 4,
                "max_steps": TINY_STEPS},
    "train": {"max_steps": TINY_STEPS},
}


def relaxed_tiny(scratch_steps: int, train_steps: int, budget_steps: int | None = 100, **sections) -> dict:
    """Params for a tiny store whose gate judges the evidence, not a few-step model's quality.

    The scratch model of TINY_PARAMS trained at lr 0.003, a policy that lets any complete run pass,
    and any further sections (eval, evolve, or extra train keys) merged on top.
    """
    policy = {"generalize_gain": -1.0, "max_tone_drift": 1.0, "recall_tolerance": 1.0,
              "delta_recall_tolerance": 1.0, "max_law_violations": 100,
              "first_generation": {"min_recall": 0.0, "min_generalize": 0.0}}
    if budget_steps is not None:
        policy["budget"] = {"max_steps": budget_steps}
    params = {"scratch": {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4,
                          "learning_rate": 0.003, "max_steps": scratch_steps},
              "train": {"max_steps": train_steps, "checkpoint_every": 1000}, "policy": policy}
    return _merge(params, sections)


TEST_GITCONFIG = """\
[user]
\tname = Lineage Test
\temail = test@lineage.invalid
[init]
\tdefaultBranch = main
"""
# Variables from the developer's shell that would change what git, DVC or lineage do.
LEAKY_VARS = ("LINEAGE_DEBUG", "LINEAGE_LOG", "LINEAGE_SIGNING_KEY", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE",
              "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
              "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "DVC_REMOTE", "CUDA_VISIBLE_DEVICES",
              "LINEAGE_FAULT", "LINEAGE_PROGRESS", "LINEAGE_WARM_CHILD")


def isolate(mp: pytest.MonkeyPatch, base: Path) -> None:
    """Point HOME, git and DVC configuration at fresh files under base; keep the venv first on PATH."""
    home = base / "home"
    for sub in ("", ".config", ".cache", "dvc-global", "dvc-system", "dvc-site"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(TEST_GITCONFIG)
    for var in LEAKY_VARS:
        mp.delenv(var, raising=False)
    mp.setenv("HOME", str(home))
    mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    mp.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
    mp.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    mp.setenv("DVC_NO_ANALYTICS", "1")
    mp.setenv("DVC_GLOBAL_CONFIG_DIR", str(home / "dvc-global"))
    mp.setenv("DVC_SYSTEM_CONFIG_DIR", str(home / "dvc-system"))
    mp.setenv("DVC_SITE_CACHE_DIR", str(home / "dvc-site"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    mp.setenv("TOKENIZERS_PARALLELISM", "false")
    # Two busy-waiting OpenMP threads per process on a shared 2-core machine make a tiny model's
    # training step ~50x slower; one thread gives the same weights in a fraction of the time.
    mp.setenv("OMP_NUM_THREADS", "1")
    # Stage commands run `python …`: it must be this venv's interpreter.
    mp.setenv("PATH", str(VENV_BIN) + os.pathsep + os.environ.get("PATH", ""))


@pytest.fixture(scope="session", autouse=True)
def session_environment(tmp_path_factory):
    """Isolation for the session-scoped stores (built before any test's own fixture runs), and a warm
    stage server for this worker: the pipeline's stages fork from a process that imported torch,
    transformers and TRL once (lineage/adapters/warm.py) instead of paying ~10 s of imports each.
    LINEAGE_TEST_COLD=1 runs every stage in its own process instead."""
    mp = pytest.MonkeyPatch()
    isolate(mp, tmp_path_factory.mktemp("session-env"))
    server = None
    if not os.environ.get("LINEAGE_TEST_COLD"):
        sock = tmp_path_factory.getbasetemp() / "warm.sock"
        log = open(tmp_path_factory.getbasetemp() / "warm.log", "w")  # lives as long as the server
        server = subprocess.Popen([sys.executable, "-m", "lineage.adapters.warm", "serve", str(sock)],
                                  stdout=subprocess.PIPE, stderr=log, text=True)
        ready = server.stdout.readline() if server.stdout else ""
        if "ready" in ready:
            mp.setenv("LINEAGE_WARM", str(sock))
    yield
    if server is not None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    mp.undo()


@pytest.fixture(autouse=True)
def isolated_environment(session_environment, tmp_path_factory, monkeypatch):
    """Each test gets its own HOME, git identity and DVC config directories."""
    isolate(monkeypatch, tmp_path_factory.mktemp("env"))


# ---------------------------------------------------------------- runners

def run(cmd: list[str] | str, cwd: Path | str, env: dict | None = None, timeout: float = 300,
        check: bool = False) -> tuple[int, str, str]:
    """Run a command; return (exit code, stdout, stderr)."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc.returncode, proc.stdout, proc.stderr


def run_cli(*args: str, cwd: Path | str = ".", **kw) -> tuple[int, str, str]:
    """Run `python -m lineage ARGS` in cwd; return (exit code, stdout, stderr)."""
    return run([sys.executable, "-m", "lineage", *map(str, args)], cwd=cwd, **kw)


def sh(args: list, cwd: Path | str, check: bool = True, env: dict | None = None,
       timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command; fail the test (with its output) when it exits non-zero and check is set."""
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def lineage(cwd: Path | str, *args, check: bool = True, env: dict | None = None,
            fault: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m lineage ARGS` in cwd (killed at fault point `fault` when given)."""
    extra = {**(env or {}), **({"LINEAGE_FAULT": fault} if fault else {})}
    return sh([sys.executable, "-m", "lineage", *args], cwd, check, extra)


def git(store: Path, *args: str) -> str:
    """Run git in store, fail the test on error, return stdout."""
    return run(["git", *args], cwd=store, check=True)[1]


def dvc(store: Path, *args: str, check: bool = False, **kw) -> tuple[int, str, str]:
    """Run the venv's dvc in store; return (exit code, stdout, stderr)."""
    return run([str(VENV_BIN / "dvc"), *args], cwd=store, check=check, **kw)


def stage(store: Path, name: str, **kw) -> tuple[int, str, str]:
    """Run one stage script directly (python stages/NAME.py), as DVC would."""
    return run(["python", f"stages/{name}.py"], cwd=store, **kw)


def error_lines(stderr: str) -> list[str]:
    """The 'error: …' lines a command printed."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def read_params(store: Path) -> dict:
    return yaml.safe_load((store / "params.yaml").read_text())


def _merge(into: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def commit_on_protected_branch(store: Path, message: str, *paths: str) -> None:
    """Commit paths straight onto the checked-out protected branch, as a person with direct access.

    The store's reference-transaction hook refuses any commit on the protected branch that is not
    a promoted generation; setting a store up for a test (its policy, its params) is not one.
    """
    git(store, "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", message, "--", *paths)


def set_params(store: Path, changes: dict, commit: str | None = None) -> None:
    """Deep-merge changes into the store's params.yaml; commit only params.yaml when a message is given."""
    params = _merge(read_params(store), changes)
    (store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if commit:
        commit_on_protected_branch(store, commit, "params.yaml")


def copy_store(src: Path, dest: Path) -> Path:
    """Copy a store (links kept as links) to dest; it shares src's DVC remote."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def clone_store(src: Path, dest: Path) -> Path:
    """Copy a store and its local DVC remote; point the copy at its own remote."""
    shutil.copytree(src, dest, symlinks=True)
    remote = Path(str(src) + ".dvc-remote")
    if remote.is_dir():
        shutil.copytree(remote, Path(str(dest) + ".dvc-remote"), symlinks=True)
        from lineage.adapters.dvc import set_default_remote  # DVC's own Config, without a dvc process

        set_default_remote(dest, str(dest) + ".dvc-remote", local=True)
    return dest


def write_template_params(store: Path, sections: dict, parents: bool = False) -> Path:
    """Make the store directory and write the template's params.yaml with each section updated."""
    store.mkdir(parents=parents)
    params = yaml.safe_load((PROJECT / "lineage" / "template" / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return store


def init_store(path: Path) -> Path:
    """`lineage init path` through the CLI; fail the test on error."""
    code, out, err = run_cli("init", path, cwd=path.parent)
    assert code == 0, f"lineage init failed ({code})\n{out}\n{err}"
    return path


class Booby:
    """Unpickling this creates the marker file: proof that something was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path):
    """Where a hostile pickle would write if anything loaded it; the test fails if it appears."""
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a pickle was loaded"


# The runners as fixtures, for tests that prefer not to import from conftest.
@pytest.fixture
def cli():
    return run_cli


# ---------------------------------------------------------------- stores

@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """A fresh store with tiny params committed on main; nothing run yet. Copy it, never edit it."""
    root = init_store(tmp_path_factory.mktemp("store-template") / "store")
    set_params(root, TINY_PARAMS, commit="test: tiny params")
    return root


@pytest.fixture
def store(store_template, tmp_path) -> Path:
    """A private copy of the fresh tiny store."""
    return copy_store(store_template, tmp_path / "store")


@pytest.fixture(scope="session")
def prepared_template(store_template, tmp_path_factory) -> Path:
    """The tiny store after `dvc repro prepare`: a scratch parent, the prepared data and probes."""
    root = copy_store(store_template, tmp_path_factory.mktemp("prepared-template") / "store")
    dvc(root, "repro", "prepare", check=True)
    return root


@pytest.fixture
def prepared_store(prepared_template, tmp_path) -> Path:
    """A private copy of the prepared tiny store."""
    return copy_store(prepared_template, tmp_path / "store")


@pytest.fixture(scope="session")
def trained_store_template(prepared_template, tmp_path_factory) -> Path:
    """The tiny store after `dvc repro train`: a first generation, uncommitted. Copy it, never edit it."""
    root = copy_store(prepared_template, tmp_path_factory.mktemp("trained-template") / "store")
    dvc(root, "repro", "train", check=True)
    return root


@pytest.fixture
def trained_store(trained_store_template, tmp_path) -> Path:
    """A private copy of the trained tiny store."""
    return copy_store(trained_store_template, tmp_path / "store")


# ---------------------------------------------------------------- trained stores, built once per run

def _shared_root(tmp_path_factory) -> Path:
    """A directory every xdist worker of this run sees (the parent of the workers' own base temps)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "trained-stores"


def trained_g000(tmp_path_factory, params: dict | None, change: dict | None = None,
                 era1: bool = True) -> Path:
    """A store whose main serves G000 trained with params (the template's defaults updated by these
    sections; None: the defaults), with era 1 registered (waiting for a candidate) and era 1's exam approved on main.
    `change` is committed by `lineage change` before training. Built once per run for each distinct
    recipe, shared by every module and worker that asks for it: never edit it, copy it with clone_store.
    """
    recipe = json.dumps({"params": params, "change": change, "era1": era1}, sort_keys=True)
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    root = _shared_root(tmp_path_factory)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker builds; the others wait and reuse it
        if not (folder / "READY").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            store = folder / "luna"
            if params is None:
                store.mkdir()
                (store / "params.yaml").write_text((PROJECT / "lineage" / "template" / "params.yaml").read_text())
            else:
                write_template_params(store, params)
            lineage(folder, "init", store)
            if change:
                set_params(store, change)
                sh(["git", "add", "params.yaml"], store)
                lineage(store, "change", "--reason", "the test's own settings")
            assert "PASS" in lineage(store, "propose").stdout
            lineage(store, "promote", "candidates/G000-a")
            if era1:  # era 1's data waits for the next candidate; its exam is on main
                lineage(store, "corpus", "write", "1", folder / "era1.jsonl")
                lineage(store, "data", "add", folder / "era1.jsonl")
                lineage(store, "corpus", "exam", "1", folder / "exam1.jsonl")
                lineage(store, "exam", "add", folder / "exam1.jsonl")
                lineage(store, "change", "--reason", "the exam of era 1")
            (folder / "recipe.json").write_text(recipe)
            (folder / "READY").touch()
    return folder / "luna"


@pytest.fixture(scope="session")
def real_g000(tmp_path_factory):
    """G000 on the bundled corpus with the template's params, pre-trained 300 scratch steps instead of
    600 (half the cost; it still clears the first-generation floors: recall 1.0, generalize 0.94): a child
    trained with the template's settings can honestly beat it under the template's policy."""
    return trained_g000(tmp_path_factory, {"scratch": {"max_steps": 300}})




# Under `pytest -n 2` (make test) a module runs whole on one worker, so its module fixtures are
# built once. (xdist's own loadgroup marks do not take effect with pytest 9: it renames node ids,
# which pytest 9 no longer reads back.) Modules are handed out longest first (measured with
# --durations), so the two workers finish together; the rest follow in collection order.
LONGEST_FIRST = ["test_gate_honesty", "test_evolve", "test_promotion", "test_gc", "test_faults", "test_train_stage",
                 "test_signatures", "test_report", "test_adversarial", "test_hub_http", "test_s3_remote"]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid.split("::", 1)[0]

    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        stem = Path(item.nodeid.split("::", 1)[0]).stem
        return LONGEST_FIRST.index(stem) if stem in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


# ---------------------------------------------------------------- roles: signers, verdicts, approvals

# One principal per role; one key each (one key holds one role).
ROLE_PRINCIPALS = {"approve": "ada@lineage.invalid", "propose": "loop@lineage.invalid",
                   "arbiter": "arbiter@lineage.invalid"}


def make_key(path: Path, comment: str) -> Path:
    """An ed25519 key pair at path and path.pub (ssh-keygen, no passphrase); an existing one is kept."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], path.parent)
    return path


def add_signers(store: Path, keys_dir: Path | None = None, signer: Path | None = None) -> dict[str, Path]:
    """Give a store an approver, a proposer and an arbiter, as a person would.

    Makes a key per role under keys_dir (default: beside the store), lists each with one role through
    `lineage keys allow`, commits them with `lineage change` signed by `signer` (default: the new
    approver key; a store whose main lists an approver already needs that one), and sets the store's
    git config lineage.signingKey to the approver's key. Returns {role: private key path}.
    """
    keys_dir = keys_dir or store.parent / f"{store.name}-keys"
    keys = {role: make_key(keys_dir / role, who) for role, who in ROLE_PRINCIPALS.items()}
    for role, key in keys.items():
        lineage(store, "keys", "allow", ROLE_PRINCIPALS[role], f"{key}.pub", "--role", role)
    lineage(store, "change", "--reason", "signers: an approver, a proposer and an arbiter",
            env={"LINEAGE_SIGNING_KEY": str(signer or keys["approve"])})
    sh(["git", "config", "lineage.signingKey", keys["approve"]], store)
    return keys


def one_error(code: int, err: str, *needles: str, exit_code: int = 1) -> str:
    """The command exited exit_code with exactly one 'error:' line holding every needle, and a hint."""
    assert code == exit_code, err
    errors = error_lines(err)
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    assert any(line.startswith("hint: ") for line in err.splitlines()), err
    assert "Traceback" not in err
    return errors[0]


def as_role(keys: dict, role: str) -> dict:
    """The environment that makes lineage sign with the key of one role (keys: add_signers' result)."""
    return {"LINEAGE_SIGNING_KEY": str(keys[role])}


def refs(repo: Path) -> str:
    """Every ref with its value: 'nothing moved' means this is byte-for-byte the same."""
    return sh(["git", "for-each-ref", "--format=%(objectname) %(refname)"], repo).stdout.strip()


def hooks_off_move(store: Path, commit: str) -> None:
    """Move main with the local hook switched off (documented: the owner of .git can)."""
    sh(["git", "-c", "core.hooksPath=/dev/null", "update-ref", "refs/heads/main", commit], store)


def signed_store_with_hub(base: Path, g000: Path) -> dict:
    """A copy of a trained G000 store given an approver, a proposer and an arbiter, G001-a proposed by the
    proposer (PASS, no verdict yet), and a hub beside it holding all of it: {store, hub, keys, base}."""
    store = clone_store(g000, base / "luna")
    keys = add_signers(store, base / "keys")
    assert "PASS" in lineage(store, "propose", env=as_role(keys, "propose")).stdout
    hub = base / "luna.git"
    lineage(store, "hub", "init", hub)
    lineage(store, "push")
    return {"store": store, "hub": hub, "keys": keys, "base": base}


def sign_verdict(store: Path, candidate: str, key: Path, principal: str = ROLE_PRINCIPALS["arbiter"],
                 **predicate) -> str:
    """Sign and store a verdict about a candidate as the arbiter would, without evaluating it.

    The enforcement must not depend on how a verdict was made: this binds the candidate's commit, its
    weights digest, its parent as the policy commit, the parent's exam and sealed-exam pin, and the
    candidate's own metrics (PASS unless `verdict=` says otherwise); `predicate` overrides any field
    (weights=, commit=, policy_commit=, ...). Returns the verdict's commit on refs/lineage/verdicts/.
    """
    from lineage.adapters import ssh
    from lineage.core.hashes import parse_hashes_csv, weights_digest
    from lineage.core.policy import Policy
    from lineage.guard import verdict
    from lineage.store import refs
    from lineage.store.exam import pin_digest, read_exam
    from lineage.store.root import Store

    opened = Store.open(store)
    repo = opened.repo
    commit = repo[refs.candidate_commit(repo, candidate)]
    parent = commit.parents[0]

    def blob(c, path):
        return repo[c.tree[path].id].data.decode()

    weights = weights_digest(parse_hashes_csv(blob(commit, "reports/train/hashes.csv")))
    metrics = json.loads(blob(commit, "metrics.json"))
    fields = {"verdict": "PASS", "failed": [], "reasons": [],
              "generation": refs.generation_of_name(candidate), "candidate": candidate,
              "policy_commit": str(parent.id),
              "policy": Policy.from_params(yaml.safe_load(blob(parent, "params.yaml"))).digest(),
              "exam": read_exam(repo, parent).digest(), "sealed_exam": pin_digest(repo, parent),
              "served": {"generation": refs.served_generation(parent), "commit": str(parent.id)},
              "metrics": metrics, "claimed": metrics, "divergences": [], "arbiter": principal,
              "key": ssh.fingerprint(ssh.public_key(key)), "evaluated_at": "20250101T000000Z",
              "lineage_version": "test"}
    fields.update(predicate)
    statement = verdict.statement(candidate, fields.pop("commit", str(commit.id)), fields.pop("weights", weights),
                                  fields)
    return verdict.store(opened, verdict.sign(key, statement))


def sign_approval(store: Path, candidate: str, key: Path) -> None:
    """Sign an approval of a candidate with key and log it (as 'lineage proposal approve' does), not promoting."""
    from lineage.guard.attest import attest
    from lineage.store import refs
    from lineage.store.root import Store

    opened = Store.open(store)
    before = os.environ.get("LINEAGE_SIGNING_KEY")
    os.environ["LINEAGE_SIGNING_KEY"] = str(key)
    try:
        attest(opened, refs.candidate_commit(opened.repo, candidate), "approve", approved_by=opened.person())
    finally:
        if before is None:
            del os.environ["LINEAGE_SIGNING_KEY"]
        else:
            os.environ["LINEAGE_SIGNING_KEY"] = before
