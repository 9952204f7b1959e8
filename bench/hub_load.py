"""A served hub under load: 10 proposers push candidates at once, then 3 approvers race to promote.

    python bench/hub_load.py [--clients 10] [--rounds 3] [--racers 3]

It builds one world (a tiny G000 trained and promoted, an approver, a proposer and an arbiter listed in
allowed_signers, G001-a proposed with an arbiter-signed verdict: tests/conftest.py's helpers), makes a
hub with one user per client, serves it with `lineage hub serve` on a free loopback port, then:

1. **candidates**: each of CLIENTS proposer users pushes ROUNDS candidate branches and their frozen
   tags (one push each, all clients at once); prints pushes per second (baseline: the same pushes
   over the filesystem path, one hub copy, run first);
2. **the race**: RACERS approver users, each in its own copy of the store, run `lineage promote` and
   `lineage push` at the same moment.

It checks (and prints) that every candidate and frozen tag arrived, exactly one promotion won (main
moved once, one `accepted refs/heads/main` in the hub's push log, the others refused whole), and that
every push is in the log. Not a pass/fail test: the numbers are printed with the checks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import common  # noqa: E402

PASSWORD = "load-test"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--clients", type=int, default=10, help="proposer users pushing at once")
    ap.add_argument("--rounds", type=int, default=3, help="candidates each client pushes")
    ap.add_argument("--racers", type=int, default=3, help="approvers racing to promote the same candidate")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return common.sh(["git", *args], cwd, check=check, env={"GIT_TERMINAL_PROMPT": "0"})


def _world(base: Path) -> tuple[Path, Path, dict]:
    from conftest import add_signers, sign_verdict

    store = common.init_store(base / "luna", common.tiny_params())
    common.sh(common.lineage_cmd("propose"), store)
    common.sh(common.lineage_cmd("promote", "candidates/G000-a"), store)
    keys = add_signers(store, base / "keys")
    common.sh(common.lineage_cmd("corpus", "write", "1", str(base / "era1.jsonl")), store)  # new data for G001
    common.sh(common.lineage_cmd("data", "add", str(base / "era1.jsonl")), store)
    common.sh(common.lineage_cmd("corpus", "exam", "1", str(base / "exam1.jsonl")), store)
    common.sh(common.lineage_cmd("exam", "add", str(base / "exam1.jsonl")), store)
    common.sh(common.lineage_cmd("change", "--reason", "the exam of era 1"), store)
    common.sh(common.lineage_cmd("propose"), store, env={"LINEAGE_SIGNING_KEY": str(keys["propose"])})
    sign_verdict(store, "candidates/G001-a", keys["arbiter"])
    hub = base / "luna.git"
    common.sh(common.lineage_cmd("hub", "init", str(hub)), store)
    common.sh(common.lineage_cmd("push"), store)
    return store, hub, keys


def _serve(hub: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(common.lineage_cmd("hub", "serve", str(hub), "--port", "0"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("serving "):
        raise SystemExit(f"hub serve did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
    return proc, line.split(" at ", 1)[1].strip()


def _as(url: str, user: str) -> str:
    return url.replace("http://", f"http://{user}:{PASSWORD}@", 1)


def _candidate_pushes(store: Path, target, clients: int, rounds: int, tag: str) -> tuple[float, list[int]]:
    """Every client pushes its candidates (branch + frozen tag, one push each) at once; (seconds, exit codes)."""
    commit = _git(store, "rev-parse", "candidates/G001-a").stdout.strip()
    frozen = json.dumps({"commit": commit, "generation": "G001", "verdict": "PASS"})
    names = [f"G001-{tag}{c}x{r}" for c in range(clients) for r in range(rounds)]
    for name in names:
        _git(store, "tag", "-a", "-m", frozen, f"lineage/frozen/{name}", commit)

    def client(c: int) -> list[int]:
        codes = []
        for r in range(rounds):
            name = f"G001-{tag}{c}x{r}"
            codes.append(_git(store, "push", "-q", "--atomic", target(c), f"{commit}:refs/heads/candidates/{name}",
                              f"refs/tags/lineage/frozen/{name}", check=False).returncode)
        return codes

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        codes = [code for result in pool.map(client, range(clients)) for code in result]
    seconds = time.perf_counter() - started
    _git(store, "tag", "-d", *[f"lineage/frozen/{name}" for name in names])  # the approvers' copies must not carry them
    return seconds, codes


def run(args) -> dict:
    tmp = common.scratch_dir("hub-load", args.keep)
    base = Path(tmp if isinstance(tmp, Path) else tmp.name)
    common.isolate(base / "env")
    os.environ.update(HOME=str(base / "env"), XDG_CONFIG_HOME=str(base / "env" / "config"))  # no one's own key
    print(f"== hub load: building the world in {base} (a tiny G000 and G001-a: about a minute)")
    store, hub, _keys = _world(base)
    users = {**{f"loop{c}": "proposer" for c in range(args.clients)}, "judge": "arbiter",
             **{f"ada{r}": "approver" for r in range(args.racers)}}
    (base / "pw").write_text(PASSWORD + "\n")
    for name, role in users.items():
        common.sh(common.lineage_cmd("hub", "user", "add", str(hub), name, "--role", role, "--password-file",
                                     str(base / "pw")), base)

    by_path = Path(shutil.copytree(hub, base / "by-path.git", symlinks=True))
    path_s, path_codes = _candidate_pushes(store, lambda _c: str(by_path), args.clients, args.rounds, "p")
    server, url = _serve(hub)
    try:
        http_s, http_codes = _candidate_pushes(store, lambda c: _as(url, f"loop{c}"), args.clients, args.rounds, "h")
        pushes = args.clients * args.rounds
        heads = _git(hub, "for-each-ref", "--format=%(refname)", "refs/heads/candidates/", "refs/tags/lineage/frozen/")
        arrived = sum(1 for ln in heads.stdout.splitlines() if "-h" in ln.rsplit("/", 1)[-1])

        racers = []
        for r in range(args.racers):
            copy = Path(shutil.copytree(store, base / f"racer{r}", symlinks=True))
            _git(copy, "remote", "set-url", "hub", _as(url, f"ada{r}"))
            common.sh(common.lineage_cmd("promote", "candidates/G001-a"), copy)
            racers.append(copy)
        before = _git(hub, "rev-parse", "main").stdout.strip()
        with ThreadPoolExecutor(args.racers) as pool:
            procs = list(pool.map(lambda c: common.sh(common.lineage_cmd("push"), c, check=False), racers))
        raced = [p.returncode for p in procs]
        said = [next((ln for ln in p.stderr.splitlines() if ln.startswith("error:")), "pushed") for p in procs]
        after = _git(hub, "rev-parse", "main").stdout.strip()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    log = [json.loads(ln) for ln in (hub / "lineage" / "pushes.jsonl").read_text().splitlines()]
    main_wins = [e for e in log if e["ref"] == "refs/heads/main" and e["outcome"] == "accepted"
                 and e["user"].startswith("ada")]
    logged = sum(1 for e in log if e["user"].startswith("loop") and e["outcome"] == "accepted"
                 and e["ref"].startswith("refs/heads/candidates/"))
    checks = {
        "every candidate push accepted": all(c == 0 for c in http_codes),
        "every candidate branch and frozen tag arrived": arrived == 2 * pushes,
        "every candidate push in the hub's log": logged == pushes,
        "exactly one promotion won": sum(c == 0 for c in raced) == 1 and len(main_wins) == 1 and after != before,
    }
    rows = [["over the path (no web server)", pushes, f"{path_s:.2f}", f"{pushes / path_s:.1f}"],
            [f"served over HTTP, {args.clients} clients", pushes, f"{http_s:.2f}", f"{pushes / http_s:.1f}"]]
    print(common.table(rows, ["candidate pushes", "pushes", "seconds", "pushes/s"]))
    print(f"the race: {args.racers} approvers pushed the same promotion at once; exit codes {raced}")
    for line in said:
        print(f"  {line}")
    for what, ok in checks.items():
        print(f"  {'ok ' if ok else 'BAD'} {what}")
    result = {"pushes": pushes, "http_seconds": http_s, "path_seconds": path_s, "pushes_per_s": pushes / http_s,
              "path_pushes_per_s": pushes / path_s, "path_codes": path_codes, "race_codes": raced,
              "race_said": said, "checks": checks, "machine": common.machine()}
    common.write_result("hub_load", result)
    if not isinstance(tmp, Path):
        tmp.cleanup()
    return result


def main(argv: list[str] | None = None) -> int:
    return common.cli_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
