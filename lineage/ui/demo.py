"""`make demo`: a guided tour of a store on the bundled corpus, on a CPU, in a few minutes.

Three roles, three keys: a person (the approver) makes the store and approves; the loop (the
proposer) trains and proposes; the arbiter evaluates every candidate itself, on main's exam plus a
sealed exam only it holds, and signs its verdict. main moves only on a verdict PASS and an
approval. Every step says what it does and why, runs the real command, and stops on the first
real error. The stages fork from a warm server (lineage/adapters/warm.py) so each candidate pays
the imports of torch, transformers and TRL once, not in every stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ..core.gate import judge
from ..core.metrics import BudgetUsed, EvalMetrics
from ..core.policy import Policy

LINEAGE = [sys.executable, "-m", "lineage"]
ROLES = {"person": "approve", "loop": "propose", "arbiter": "arbiter"}


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


class Tour:
    """Runs each step as one of the three identities: its own signing key, printed as the prompt."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.keys = {who: base / "keys" / who for who in ROLES}
        self.arbiter_home = base / "arbiter-home"  # the arbiter's secrets: never inside the store

    def run(self, who: str, args: list[str], cwd: Path, expect_fail: bool = False) -> subprocess.CompletedProcess:
        print(f"{who}$ " + " ".join(a if " " not in a else repr(a) for a in args), flush=True)
        env = {**os.environ, "LINEAGE_SIGNING_KEY": str(self.keys[who])}
        proc = subprocess.run(args, cwd=cwd, text=True, capture_output=True, env=env)
        print((proc.stdout + proc.stderr).rstrip(), flush=True)
        if expect_fail and proc.returncode == 0:
            raise SystemExit(f"demo: expected this to be refused, but it succeeded: {' '.join(args)}")
        if not expect_fail and proc.returncode != 0:
            raise SystemExit(f"demo: step failed (exit {proc.returncode}): {' '.join(args)}")
        return proc

    def lineage(self, who: str, *args: str, cwd: Path, expect_fail: bool = False) -> subprocess.CompletedProcess:
        return self.run(who, [*LINEAGE, *args], cwd, expect_fail)

    def evaluate(self, candidate: str, store: Path, expect_fail: bool = False) -> subprocess.CompletedProcess:
        return self.lineage("arbiter", "arbiter", "evaluate", candidate, "--home", str(self.arbiter_home),
                            cwd=store, expect_fail=expect_fail)


def _git(store: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=store, text=True, capture_output=True, check=True).stdout.strip()


def dress_as_pass(store: Path, failed: str, dressed: str) -> None:
    """What a dishonest proposer can do with files alone: rewrite a failed candidate's claims.

    A new candidate commit with the same weights, metrics.json claiming a generalize of 1.0, a gate
    report re-judged on those claims (PASS) with consistent hashes, and dvc.lock's metrics md5 to
    match: every file agrees with every other; only the weights tell the truth.
    """
    _git(store, "checkout", "-q", "-b", dressed, failed)
    metrics_path, report_path, lock_path = store / "metrics.json", store / "reports" / "gate.json", store / "dvc.lock"
    old_metrics = metrics_path.read_bytes()
    claimed = json.loads(old_metrics)
    claimed["child"]["generalize"] = 1.0
    metrics = (json.dumps(claimed, indent=2, sort_keys=True) + "\n").encode()
    metrics_path.write_bytes(metrics)
    report = json.loads(report_path.read_text())
    policy = Policy.from_params(yaml.safe_load(_git(store, "show", "main:params.yaml")) or {})
    budget = BudgetUsed.from_dict(json.loads((store / "reports" / "train" / "metrics.json").read_text()))
    hashes = {**report["hashes"], "metrics": "sha256:" + hashlib.sha256(metrics).hexdigest()}
    forged = judge(policy, EvalMetrics.from_dict(claimed), budget, hashes=hashes, policy_source=report["policy_source"])
    report_path.write_text(json.dumps(forged.to_dict(), indent=2, sort_keys=True) + "\n")
    lock_path.write_text(lock_path.read_text().replace(hashlib.md5(old_metrics).hexdigest(),
                                                       hashlib.md5(metrics).hexdigest()))
    _git(store, "add", "metrics.json", "reports/gate.json", "dvc.lock")
    # on main's tip, like the failed candidate it replaces, with the same trailers (Generation: …)
    _git(store, "reset", "-q", "--soft", "main")
    _git(store, "commit", "-q", "-C", failed)
    _git(store, "checkout", "-q", "-f", "main")


def main(argv: list[str]) -> int:
    keep = "--keep" in argv
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    if not os.environ.get("GIT_AUTHOR_NAME") and subprocess.run(["git", "config", "user.email"],
                                                                capture_output=True).returncode != 0:
        os.environ.update(GIT_AUTHOR_NAME="lineage demo", GIT_AUTHOR_EMAIL="demo@lineage.invalid",
                          GIT_COMMITTER_NAME="lineage demo", GIT_COMMITTER_EMAIL="demo@lineage.invalid")
    base = Path(tempfile.mkdtemp(prefix="lineage-demo-"))
    report = Path.cwd() / "build" / "demo" / "lineage-report.html"
    store = base / "luna"
    tour = Tour(base)
    started = time.monotonic()
    print(f"demo store: {store}")
    server = subprocess.Popen([sys.executable, "-m", "lineage.adapters.warm", "serve", str(base / "warm.sock")],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if server.stdout is not None and "ready" in server.stdout.readline():
            os.environ["LINEAGE_WARM"] = str(base / "warm.sock")
        say("Three roles, three SSH keys kept outside the store: a person approves, the loop proposes, "
            "the arbiter judges. One key holds one role.")
        for who, role in ROLES.items():
            tour.lineage(who, "keys", "init", "--path", str(tour.keys[who]), "--principal", f"{who}@demo.invalid",
                         "--role", role, cwd=base)

        say("The person makes the store: git + DVC + the pipeline + era 0's data, and the exam on main. "
            "Their key is listed as the approver.")
        tour.lineage("person", "init", str(store), cwd=base)
        say("The person lists the loop as proposer and the arbiter as arbiter: an approved change, signed.")
        tour.lineage("person", "keys", "allow", "loop@demo.invalid", str(tour.keys["loop"]) + ".pub",
                     "--role", "propose", cwd=store)
        tour.lineage("person", "keys", "allow", "arbiter@demo.invalid", str(tour.keys["arbiter"]) + ".pub",
                     "--role", "arbiter", cwd=store)
        tour.lineage("person", "change", "--reason", "the loop proposes, the arbiter judges", cwd=store)

        say("The arbiter derives its sealed exam from a secret seed (never in the store); main pins its digest.")
        tour.lineage("arbiter", "arbiter", "init", "--home", str(tour.arbiter_home), cwd=store)
        tour.lineage("person", "change", "--reason", "pin the arbiter's sealed exam", cwd=store)

        say("The loop trains G000 from scratch: tiny Llama, tokenizer trained on the corpus, then its own gate.")
        tour.lineage("loop", "propose", cwd=store)
        say("The loop cannot promote it: main moves only on the arbiter's signed verdict.")
        tour.lineage("loop", "promote", "candidates/G000-a", cwd=store, expect_fail=True)
        say("The arbiter fetches the weights by content, evaluates them itself on main's exam and its sealed "
            "exam, compares with the loop's claims, and signs a verdict.")
        tour.evaluate("candidates/G000-a", store)
        say("The person promotes (and so approves): main fast-forwards to the commit the arbiter judged.")
        tour.lineage("person", "promote", "candidates/G000-a", cwd=store)

        say("New knowledge arrives: the loop registers era 1 through the data gate (DVC-tracked) ...")
        tour.lineage("loop", "corpus", "write", "1", str(base / "era1.jsonl"), cwd=store)
        tour.lineage("loop", "data", "add", str(base / "era1.jsonl"), cwd=store)
        say("... and the person approves era 1's exam on main: it is never read from a candidate.")
        tour.lineage("person", "corpus", "exam", "1", str(base / "exam1.jsonl"), cwd=store)
        tour.lineage("person", "exam", "add", str(base / "exam1.jsonl"), cwd=store)
        tour.lineage("person", "change", "--reason", "the exam of era 1", cwd=store)

        say("Training on the exam is refused at the door: the loop tries to register the visible answers.")
        items = [json.loads(line) for line in (store / "exam" / "generalize.jsonl").read_text().splitlines()]
        leak = [{"kind": "qa", "prompt": i["prompt"], "completion": i["choices"][i["answer"]] + ".",
                 "source": "leak/answers", "score": 1.0} for i in items if i["delta"] == "era1"]
        (base / "leak.jsonl").write_text("".join(json.dumps(r) + "\n" for r in leak))
        tour.lineage("loop", "data", "add", str(base / "leak.jsonl"), cwd=store, expect_fail=True)

        say("One evolution window: two candidates with distinct seeds and data strategies, ranked; "
            "the best is proposed only if it beats HEAD.")
        tour.lineage("loop", "evolve", "-k", "2", cwd=store)
        proposal = json.loads(tour.lineage("loop", "--json", "proposal", "show", cwd=store).stdout)
        say(f"The arbiter judges the proposal ({proposal['candidate']}) on its own numbers.")
        tour.evaluate(proposal["candidate"], store)
        say("The person approves: main fast-forwards, the burn-in runs.")
        tour.lineage("person", "proposal", "approve", cwd=store)

        say("Era 2 arrives: the loop registers its data; the person approves its exam on main.")
        tour.lineage("loop", "corpus", "write", "2", str(base / "era2.jsonl"), cwd=store)
        tour.lineage("loop", "data", "add", str(base / "era2.jsonl"), cwd=store)
        tour.lineage("person", "corpus", "exam", "2", str(base / "exam2.jsonl"), cwd=store)
        tour.lineage("person", "exam", "add", str(base / "exam2.jsonl"), cwd=store)
        tour.lineage("person", "change", "--reason", "the exam of era 2", cwd=store)

        say("A careless candidate: zero training steps. It learns nothing of era 2: its own gate fails "
            "'generalize'.")
        careless = tour.lineage("loop", "propose", "--name", "z", "-S", "train.max_steps=0", cwd=store,
                                expect_fail=True)
        failed = next(line.split()[2] for line in careless.stdout.splitlines() if line.startswith("G"))
        say("A dishonest loop rewrites its claims: metrics, gate report and dvc.lock all say PASS and agree "
            "with each other. The arbiter measures the weights and names the divergence.")
        dressed = failed.replace("-z", "-dressed")
        dress_as_pass(store, failed, dressed)
        tour.evaluate(dressed, store, expect_fail=True)
        tour.lineage("person", "promote", dressed, cwd=store, expect_fail=True)
        say("Plain git cannot sneak it on either: the hook runs the same checks.")
        tour.run("loop", ["git", "update-ref", "refs/heads/main", dressed], store, expect_fail=True)

        say("Roll back to G000: a new commit on main, never a rewrite; weights back in place.")
        tour.lineage("person", "rollback", "--to", "G000", "--reason", "demo: served answers regressed", cwd=store)

        say("Share it: a hub whose pre-receive hook enforces the same rules for everyone (a hub needs signers).")
        tour.lineage("person", "hub", "init", str(base / "luna.git"), cwd=store)
        tour.lineage("person", "push", cwd=store)
        tour.run("loop", ["git", "push", "--force", "hub", f"{dressed}:refs/heads/main"], store, expect_fail=True)

        say("Verify: re-hash every promoted generation's weights against our own sha256 record, and judge "
            "every signed link of main's history again.")
        tour.lineage("person", "verify", "--signatures", cwd=store)

        say("The fossil record: every attempt, pass or fail, and the rollback; git's own view of main.")
        tour.lineage("person", "log", cwd=store)
        tour.run("person", ["git", "log", "--first-parent", "--format=%h %s%n%(trailers:only,unfold)", "main"], store)

        say("The report: one self-contained HTML page (tree, metrics against the policy, per-delta recall, "
            "loss curves, budget, cards); it outlives the scratch store.")
        report.parent.mkdir(parents=True, exist_ok=True)
        browser = any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome"))
        tour.lineage("person", "report", "--out", str(report), *(["--png"] if browser else []), cwd=store)
        print(f"\ndemo finished in {time.monotonic() - started:.0f} s; store at {store}")
        print(f"report: {report}" + (f"  (overview picture: {report.with_suffix('.png')})" if browser else ""))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(Path(str(store) + ".dvc-remote"), ignore_errors=True)
            print(f"(removed {base}; pass DEMO_ARGS=--keep to keep it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
