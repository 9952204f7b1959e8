"""`make demo`: a guided tour of a store on the bundled corpus, on a CPU, in a few minutes.

Every step says what it does and why, runs the real command, and stops on the first real error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINEAGE = [sys.executable, "-m", "lineage"]


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def run(args: list[str], cwd: Path, expect_fail: bool = False) -> subprocess.CompletedProcess:
    print("$ " + " ".join(a if " " not in a else repr(a) for a in args), flush=True)
    proc = subprocess.run(args, cwd=cwd, text=True, capture_output=True)
    print((proc.stdout + proc.stderr).rstrip(), flush=True)
    if expect_fail and proc.returncode == 0:
        raise SystemExit(f"demo: expected this to be refused, but it succeeded: {' '.join(args)}")
    if not expect_fail and proc.returncode not in (0,):
        raise SystemExit(f"demo: step failed (exit {proc.returncode}): {' '.join(args)}")
    return proc


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
    started = time.monotonic()
    print(f"demo store: {store}")
    try:
        say("A signing key for this demo (kept outside the store): every move of main will carry an "
            "SSH-signed attestation, and init lists the key in allowed_signers.")
        os.environ["LINEAGE_SIGNING_KEY"] = str(base / "keys" / "signing_key")
        run(LINEAGE + ["keys", "init", "--path", os.environ["LINEAGE_SIGNING_KEY"]], base)

        say("Make a store: git + DVC + the pipeline + the first delta of the bundled corpus (era 0).")
        run(LINEAGE + ["init", str(store)], base)

        say("Train G000 from scratch as a candidate: tiny Llama, tokenizer trained on the corpus, then the gate.")
        run(LINEAGE + ["propose"], store)

        say("Promote it: the arbiter re-derives the verdict from the evidence and fast-forwards main.")
        run(LINEAGE + ["promote", "candidates/G000-a"], store)

        say("New knowledge arrives: register era 1 through the data gate (DVC-tracked).")
        run(LINEAGE + ["corpus", "write", "1", str(base / "era1.jsonl")], store)
        run(LINEAGE + ["data", "add", str(base / "era1.jsonl")], store)

        say("The exam belongs to main: a person approves era 1's exam items (never read from a candidate).")
        run(LINEAGE + ["corpus", "exam", "1", str(base / "exam1.jsonl")], store)
        run(LINEAGE + ["exam", "add", str(base / "exam1.jsonl")], store)
        run(LINEAGE + ["change", "--reason", "the exam of era 1"], store)

        say("One evolution window: two candidates with distinct seeds and data strategies, ranked; "
            "the best is proposed only if it beats HEAD.")
        run(LINEAGE + ["evolve", "-k", "2"], store)
        run(LINEAGE + ["proposal", "show"], store)

        say("A careless candidate: zero training steps. It learns nothing new, so it must fail 'generalize'.")
        run(LINEAGE + ["propose", "--name", "z", "-S", "train.max_steps=0"], store, expect_fail=True)

        say("Try to sneak the failed candidate onto main with plain git: the hook runs the arbiter.")
        run(["git", "update-ref", "refs/heads/main", "candidates/G002-z"], store, expect_fail=True)

        say("A person approves: the arbiter re-checks the evidence, main fast-forwards, burn-in runs.")
        run(LINEAGE + ["proposal", "approve"], store)

        say("Roll back to G000: a new commit on main, never a rewrite; weights back in place.")
        run(LINEAGE + ["rollback", "--to", "G000", "--reason", "demo: served answers regressed"], store)

        say("Re-promotion after a rollback is earned again: a fresh candidate from the restored tip.")
        run(LINEAGE + ["propose", "--name", "r"], store)
        run(LINEAGE + ["promote", "candidates/G003-r"], store)

        say("Share it: a local hub whose pre-receive hook enforces the same rules; data first, then refs.")
        run(LINEAGE + ["hub", "init", str(base / "luna.git")], store)
        run(LINEAGE + ["push"], store)
        run(["git", "push", "--force", "hub", "candidates/G002-z:refs/heads/main"], store, expect_fail=True)

        say("Verify: re-hash every promoted generation's weights against our own sha256 record, and check "
            "every signed link of main's history against allowed_signers.")
        run(LINEAGE + ["verify", "--signatures"], store)

        say("The fossil record: every attempt, pass or fail, and git's own view of main.")
        run(LINEAGE + ["log"], store)
        run(["git", "log", "--first-parent", "--format=%h %s%n%(trailers:only,unfold)", "main"], store)

        say("The report: one self-contained HTML page (tree, metrics against the policy, per-delta recall, "
            "loss curves, budget, cards); it outlives the scratch store.")
        report.parent.mkdir(parents=True, exist_ok=True)
        browser = any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome"))
        run(LINEAGE + ["report", "--out", str(report)] + (["--png"] if browser else []), store)
        print(f"\ndemo finished in {time.monotonic() - started:.0f} s; store at {store}")
        print(f"report: {report}" + (f"  (overview picture: {report.with_suffix('.png')})" if browser else ""))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(Path(str(store) + ".dvc-remote"), ignore_errors=True)
            print(f"(removed {base}; pass DEMO_ARGS=--keep to keep it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
