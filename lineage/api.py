"""The verbs of lineage: the one facade the CLI (and Python users) call.

Each verb opens the store once and passes it down; a verb that changes the store first finishes
or undoes any command that was killed in it (``moves.recover``), then does its work. Every verb
returns a value and prints nothing; the CLI does the talking.
"""

from __future__ import annotations

import os
from pathlib import Path

from .core.errors import StoreError
from .loop import evolve as evolve_loop
from .loop import proposal as proposal_loop
from .loop import shadow as shadow_loop
from .loop import stats as stats_loop
from .moves import change as change_move
from .moves import exam as exam_move
from .moves import gc as gc_move
from .moves import init as init_move
from .moves import promote as promote_move
from .moves import propose as propose_move
from .moves import recover as recover_move
from .moves import register as register_move
from .moves import rollback as rollback_move
from .moves import sync as sync_move

# Results, re-exported so a caller needs only this module.
from .moves.change import Change
from .moves.init import TEMPLATE_FILES as TEMPLATE_FILES
from .moves.init import InitResult
from .moves.promote import Promotion
from .moves.propose import Proposal
from .moves.register import DataAdded
from .moves.rollback import Rollback
from .store import ledger, record, refs, weights
from .store import verify as verify_store
from .store.root import Store, find_root

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

PathLike = str | Path


def open_store(path: PathLike | Store = ".") -> Store:
    """The store containing path (a Store is returned as it is).

    Raises:
        NotAStoreError: path is not in a lineage store.
    """
    return Store.open(path)


def find_store(path: PathLike = ".") -> Path:
    """Root of the store containing path.

    Raises:
        NotAStoreError: path is not in a lineage store.
    """
    return find_root(path)


def _mutating(path: PathLike | Store) -> Store:
    """Open the store and finish or undo what a killed command left, before a verb changes it."""
    store = Store.open(path)
    recover_move.recover(store)
    return store


# ---------------------------------------------------------------- making and feeding a store


def init(path: PathLike = ".", protected_branch: str = "main", remote: str | None = None) -> InitResult:
    """Make a directory (or the current git repo) a lineage store; idempotent.

    Raises:
        InitConflictError: path is not a directory, or an existing dvc.yaml/stage script differs.
        DirtyTreeError: the git work tree has uncommitted changes.
    """
    return init_move.init(path, protected_branch, remote)


def data_add(file: PathLike, store: PathLike = ".", name: str | None = None) -> DataAdded:
    """Check a JSONL file through the data gate and register it as the next delta.

    Raises:
        DataGateError: the file has an unparsable line, a secret or an unsafe source.
    """
    return register_move.data_add(Store.open(store), file, name)


def corpus_era(era: int, out: PathLike) -> Path:
    """Write one era of the bundled corpus's training records to a JSONL file."""
    return register_move.corpus_era(era, out)


def corpus_exam(era: int, out: PathLike) -> Path:
    """Write one era of the bundled corpus's exam items to a JSONL file (for exam_add)."""
    return register_move.corpus_exam(era, out)


def exam_add(file: PathLike, store: PathLike = ".", delta: str | None = None) -> exam_move.ExamAdded:
    """Check exam items, merge them into exam/<kind>.jsonl and stage them; change() commits them.

    Raises:
        MalformedDataError: a bad line (file and line named) or an unknown kind.
        DataGateError: an item overlaps registered training data.
    """
    return exam_move.exam_add(Store.open(store), file, delta)


def exam_show(store: PathLike = ".") -> exam_move.ExamView:
    """The exam on the protected branch: items per kind and per delta, its digest, what is pending."""
    return exam_move.exam_show(Store.open(store))


# ---------------------------------------------------------------- moves


def propose(store: PathLike = ".", name: str = "a", overrides: list[str] | None = None, progress=None,
            again: bool = False) -> Proposal:
    """Train a candidate from the protected tip, gate it, commit, push data, freeze it (again: see moves.propose)."""
    return propose_move.propose(_mutating(store), name, overrides, progress=progress, again=again)


def promote(candidate: str, store: PathLike = ".") -> Promotion:
    """Fast-forward the protected branch to a candidate the arbiter re-derives as PASS.

    Raises:
        ArbiterRefusedError: the move is refused.
    """
    return promote_move.promote(_mutating(store), candidate)


def rollback(reason: str, to: str | None = None, store: PathLike = ".") -> Rollback:
    """Restore a promoted generation with a new commit on the protected branch."""
    return rollback_move.rollback(_mutating(store), reason, to)


def change(reason: str, store: PathLike = ".") -> Change:
    """Commit the staged policy/stage/code changes on the protected branch as an approved change."""
    return change_move.change(Store.open(store), reason)


def repair(store: PathLike = ".") -> recover_move.Repair:
    """Finish or undo killed commands, clear stale locks, report what is still in the way."""
    return recover_move.repair(Store.open(store))


def gc(store: PathLike = ".", cloud: bool = False, dry_run: bool = False) -> gc_move.GcResult:
    """Free DVC cache (and remote) space, never the data of anything the record reaches."""
    return gc_move.gc(_mutating(store), cloud, dry_run)


# ---------------------------------------------------------------- the loop


def evolve(store: PathLike = ".", cycle: int | None = None, k: int | None = None, seeds: list[int] | None = None,
           strategies: list[str] | None = None, progress=None) -> evolve_loop.WindowResult:
    """One evolution window: preconditions, K candidates, rank, freeze all, propose the best."""
    return evolve_loop.evolve(_mutating(store), cycle, k, seeds, strategies, progress)


def proposal_show(store: PathLike = ".") -> dict:
    """The loop's open (or last) proposal."""
    return proposal_loop.proposal_show(Store.open(store))


def proposal_decide(approve: bool, reason: str | None = None, store: PathLike = ".") -> dict:
    """Approve (promote, approval recorded) or reject (reason recorded) the proposal."""
    return proposal_loop.proposal_decide(_mutating(store), approve, reason)


def shadow(candidate: str, store: PathLike = ".") -> dict:
    """HEAD and a candidate side by side on everyday prompts: parity and differences."""
    return shadow_loop.shadow(Store.open(store), candidate)


def serve(store: PathLike = ".", port: int | None = None, bind: str | None = None, shadow: str | None = None,
          shadow_rate: float | None = None, ready=None, poll_seconds: float | None = None) -> dict:
    """Serve the protected branch's generation over OpenAI-compatible HTTP until stopped; cut over when it moves.

    Raises:
        ServeError: the port is taken, or the protected branch serves no generation yet.
        UsageError: the shadow candidate is unknown or failed its gate.
    """
    from .loop import serve as serving

    return serving.serve(Store.open(store), port, bind, shadow, shadow_rate, ready, poll_seconds)


def stats(store: PathLike = ".") -> stats_loop.LoopStats:
    """How the evolution loop is doing, from the log alone."""
    return stats_loop.stats(Store.open(store))


# ---------------------------------------------------------------- reading the record


def candidates(store: PathLike = ".") -> list[dict]:
    """Every frozen candidate, pass or fail, oldest generation first."""
    s = Store.open(store)
    return refs.frozen_candidates(s.repo, s.protected)


def rollbacks(store: PathLike = ".") -> list[dict]:
    """Every rollback on the protected branch, oldest first."""
    s = Store.open(store)
    return refs.rollbacks(s.repo, s.protected)


def events(store: PathLike = ".") -> list[ledger.Event]:
    """The evolution log, oldest first."""
    return ledger.read(Store.open(store).repo)


def events_jsonl(store: PathLike = ".") -> str:
    """The evolution log as evolution_log.jsonl."""
    return ledger.to_jsonl(events(store))


def lineage_csv(store: PathLike = ".") -> str:
    """One row per frozen candidate: lineage.csv."""
    return record.lineage_csv(Store.open(store))


def show(generation: str, store: PathLike = ".") -> record.GenerationView:
    """Manifest, metrics, verdict and card of a generation."""
    return record.show(Store.open(store), generation)


def status(store: PathLike = ".", check_remote: bool = True) -> record.StoreStatus:
    """HEAD generation, open candidates and remote sync."""
    return record.status(Store.open(store), check_remote)


def checkout(generation: str, store: PathLike = ".", dest: str | None = None) -> Path:
    """Materialise a generation's weights read-only, checked against its hashes."""
    return weights.checkout(Store.open(store), generation, dest)


def diff(a: str, b: str, store: PathLike = ".") -> dict:
    """Metrics, params, data and weight change between two generations."""
    return record.diff(Store.open(store), a, b)


def verify(store: PathLike = ".") -> verify_store.VerifyReport:
    """Re-hash every promoted generation; check evidence, tags and the log."""
    return verify_store.verify(Store.open(store))


def verify_signatures(store: PathLike = "."):
    """Judge again the signatures every move along the protected branch needed (verdicts, approvals, attestations)."""
    from .guard.audit import verify_signatures as check

    return check(Store.open(store))


def signed(store: PathLike = ".") -> bool:
    """True when allowed_signers on the protected branch lists anyone: every move needs signatures."""
    from .adapters import git
    from .guard.signers import SIGNERS_FILE, requires

    s = Store.open(store)
    return requires(git.read_blob(s.repo, s.tip(), SIGNERS_FILE))


def served_generation(store: PathLike = ".") -> str | None:
    """The generation the protected branch serves, or None."""
    s = Store.open(store)
    tip = s.tip()
    return refs.served_generation(tip) if tip else None


def load(store: PathLike = ".", generation: str | None = None, path_only: bool = False):
    """(model, tokenizer) of a generation (default: the one the protected branch serves).

    The weights are materialised read-only from the DVC cache (fetched from the remote if needed)
    and re-hashed against the generation's hashes.csv before loading; safetensors only.
    With path_only=True, return the directory instead.

    Raises:
        StoreError: the protected branch serves no generation yet.
    """
    s = Store.open(store)
    if generation is None:
        tip = s.tip()
        generation = refs.served_generation(tip) if tip else None
        if generation is None:
            raise StoreError("the protected branch serves no generation yet", "Promote one with 'lineage promote'.")
    path = weights.checkout(s, generation)
    if path_only:
        return path
    from .adapters.model import load as load_model  # torch, only when a model is asked for

    return load_model(path)


# ---------------------------------------------------------------- keys and the hub


def keys_init(principal: str | None = None, path: str | None = None, store: PathLike = ".", role: str = "approve"):
    """Create (or keep) a signing key and say which allowed_signers line would list it as role."""
    from .core.errors import NotAStoreError
    from .guard import signers

    try:
        opened: Store | None = Store.open(store)
    except NotAStoreError:
        opened = None
    return signers.keys_init(principal, path, opened, role)


def keys_allow(principal: str, public_key: str, role: str, store: PathLike = ".") -> str:
    """Stage an allowed_signers line giving a key one role; 'lineage change' commits it."""
    from .guard import signers

    return signers.keys_allow(Store.open(store), principal, public_key, role)


def hub_init(path: PathLike, store: PathLike | None = ".", name: str = "hub", dvc_remote: str | None = None):
    """Create a hub; register it as a remote of the store at `store` when that is a store.

    dvc_remote: the DVC remote the hub advertises to clones (default: the store's default DVC remote).
    """
    from .adapters import dvc
    from .core.errors import NotAStoreError
    from .guard import hub

    try:
        opened = Store.open(store) if store is not None else None
    except NotAStoreError:
        opened = None
    if dvc_remote is None and opened is not None:
        dvc_remote = dvc.default_remote_url(opened.root)
    return hub.init(path, opened.protected if opened else "main", opened, name, dvc_remote)


def hub_dvc_remote(path: PathLike, url: str) -> str:
    """Set the DVC remote a hub advertises to clones (kept in its config, published on refs/lineage/hub)."""
    from .guard import hub, hub_access

    hub.advertise(hub_access.require_hub(path), url)
    return url


def hub_serve(path: PathLike, port: int | None, bind: str = "127.0.0.1", echo=None, ssh_port: int | None = None):
    """Serve a hub over smart HTTP (lighttpd + git http-backend) and/or SSH (sshd) until SIGTERM or Ctrl-C."""
    from .moves import hub_serve

    return hub_serve.serve(path, port, bind, echo, ssh_port)


def hub_user_add_key(path: PathLike, name: str, role: str, public: str) -> tuple[str, str]:
    """Let a hub's user in over SSH with a public key (forced to git on the hub), with one role."""
    from .guard import hub_access

    return hub_access.add_ssh_key(path, name, role, public)


def hub_user_add(path: PathLike, name: str, role: str, password: str) -> tuple[str, str]:
    """Give a hub a user with a password and one role (proposer, arbiter, approver)."""
    from .guard import hub_access

    return hub_access.add_user(path, name, role, password)


def hub_user_remove(path: PathLike, name: str) -> None:
    """Take a user off a hub."""
    from .guard import hub_access

    hub_access.remove_user(path, name)


def hub_users(path: PathLike) -> list[tuple[str, str]]:
    """(name, role) of every user of a hub."""
    from .guard import hub_access

    return hub_access.users(path)


def hub_log(path: PathLike) -> list[dict]:
    """The hub's push log: who pushed each ref update, accepted or refused."""
    from .guard import hub_access

    return hub_access.read_log(path)


def clone(url: str, dest: PathLike, dvc_remote: str | None = None):
    """Clone a hub into a working store: its advertised DVC remote, the local hook, the served weights."""
    from .moves import clone as clone_move

    return clone_move.clone(url, dest, dvc_remote)


def push(store: PathLike = ".", remote: str = "hub") -> sync_move.PushResult:
    """Push DVC data, then every lineage ref atomically."""
    return sync_move.push(Store.open(store), remote)


def pull(store: PathLike = ".", remote: str = "hub") -> dict:
    """Fetch lineage refs and DVC data; fast-forward the protected branch through the arbiter."""
    return sync_move.pull(Store.open(store), remote)


def report_data(store: PathLike = ".") -> dict:
    """Everything `lineage report` draws, as plain JSON-ready data."""
    from .store import overview

    return overview.gather(Store.open(store))


# ---------------------------------------------------------------- the independent arbiter


def arbiter_init(home: PathLike | None = None, store: PathLike = "."):
    """Make the arbiter's private directory and seed, derive the sealed exam, stage its pin (exam/sealed.json)."""
    from .moves import arbiter_home

    return arbiter_home.init(Store.open(store), home)


def arbiter_seal(file: PathLike, home: PathLike | None = None, store: PathLike = "."):
    """Keep a sealed exam a person provides in the arbiter's directory; stage its pin."""
    from .moves import arbiter_home

    return arbiter_home.seal(Store.open(store), file, home)


def arbiter_evaluate(candidate: str, store: PathLike = ".", home: PathLike | None = None, push: str | None = None,
                     progress=None):
    """Measure a candidate on main's exam and the sealed exam, judge by main's policy, sign and store the verdict.

    Raises:
        UsageError: a stale candidate, no arbiter key, a rotated or missing sealed exam.
        IntegrityError: weights missing from the DVC remote, or not what hashes.csv lists.
    """
    from .moves import arbiter

    return arbiter.evaluate(Store.open(store), candidate, home, push, progress=progress)


def arbiter_watch(hub: str, store: PathLike = ".", home: PathLike | None = None, once: bool = False,
                  interval: float = 60.0, echo=None, progress=None) -> list:
    """Evaluate every frozen candidate on a hub that waits for a verdict; push the verdicts (once: one pass)."""
    from .loop import watch

    return watch.watch(Store.open(store), hub, home, once, interval, echo, progress)
