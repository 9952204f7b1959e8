"""Reading the record at scale: a synthetic lineage of 10,000 generations and 50,000 log events.

A store made by `lineage init` (nothing trained) is filled fast with pygit2, shaped as lineage
writes it: per generation a candidate commit with `Generation:`/`Parent:`/`Verdict:` trailers, a
branch `candidates/GNNNNN-a` and an annotated frozen tag `lineage/frozen/GNNNNN-a` whose message is
the JSON promotion.frozen_candidates reads; passed ones (4 in 5) are the first-parent chain of
main with a `lineage/gen/` tag; failed ones fork from main's tip and stay off it. The evolution log
refs/lineage/log gets the events as lineage.store.ledger writes them (one commit per event over the
empty tree, canonical JSON message). The last generation's commit holds real small evidence files,
so `lineage show` has something to read.

Times (medians of 3) `lineage log`, `lineage log --format jsonl`, `lineage log --format csv`,
`lineage show <gen>` and `lineage status --no-remote` against `git log --oneline main`
(baseline), first with objects and refs as written (loose), then after `git gc` (packed, as
git's auto-maintenance would leave a long-lived store, were it not refused by the hook: see
bench/hooks.py). Target: `lineage log` < 1 s. A command
over 1 s is profiled (cProfile) and its top functions are printed.

Usage: python bench/record_scale.py [--generations N] [--events N] [--record-repeats N] [--profile]
"""

from __future__ import annotations

import argparse
import json
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "record_scale"
TARGET_S = 1.0
FAIL_EVERY = 5  # generation i fails when i % 5 == 4


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("record_scale")
    g.add_argument("--generations", type=int, default=10_000, metavar="N", help="generations (default 10000)")
    g.add_argument("--events", type=int, default=50_000, metavar="N", help="evolution-log events (default 50000)")
    g.add_argument("--record-repeats", type=int, default=None, metavar="N",
                   help="runs per command (default 3, or --repeats)")
    g.add_argument("--profile", action="store_true", help="profile every lineage command, not only slow ones")
    g.add_argument("--no-gc", action="store_true", help="skip the packed (after git gc) round")


# --- building ---------------------------------------------------------------------------------

def _evidence(repo, gen: str, parent: str, base_tree, policy_commit: str, params: dict):
    """A tree: base_tree plus small but well-formed evidence files of one generation."""
    import hashlib

    import pygit2

    from lineage.core.canonical import digest_obj
    from lineage.core.gate import judge
    from lineage.core.metrics import BudgetUsed, EvalMetrics
    from lineage.core.policy import Policy

    pretty = lambda obj: (json.dumps(obj, sort_keys=True, indent=2) + "\n").encode()  # noqa: E731
    manifest = {"schema_version": 1, "base_model": "scratch", "method": "cpt", "finetune": "full", "seed": 1234,
                "parent": {"generation": parent, "kind": "generation"}, "deltas_seen": ["d000-era0"],
                "data": {"new": [], "replay": []}, "synthetic": "lineage bench/record_scale.py"}
    scores = {"recall": 0.9, "generalize": 0.8, "recall_by_delta": {"d000-era0": 0.9}, "law_violations": 0}
    metrics = {"schema_version": 1, "child": scores, "parent": {**scores, "generalize": 0.7},
               "parent_is_generation": True, "tone_drift": 0.01}
    train = {"status": "COMPLETE", "reason": None, "steps": 20, "tokens": 6400, "wall_minutes": 0.02,
             "peak_memory_mb": 512.0, "output_mb": 0.5, "manifest_digest": digest_obj(manifest),
             "weights_sha256": "sha256:" + "0" * 64}
    hashes_csv = b"path,sha256,bytes\nmodel.safetensors," + b"0" * 64 + b",1\n"
    metrics_b = pretty(metrics)
    policy = Policy.from_params(params)
    report = judge(policy, EvalMetrics.from_dict(metrics), BudgetUsed.from_dict(train),
                   hashes={"metrics": "sha256:" + hashlib.sha256(metrics_b).hexdigest(),
                           "hashes_csv": "sha256:" + hashlib.sha256(hashes_csv).hexdigest(),
                           "manifest": digest_obj(manifest), "child_weights": train["weights_sha256"]},
                   policy_source={"ref": "main", "commit": policy_commit})
    files = {"metrics.json": metrics_b, "reports/train/metrics.json": pretty(train),
             "reports/train/manifest.json": pretty(manifest), "reports/train/hashes.csv": hashes_csv,
             "reports/gate.json": pretty(report.to_dict()),
             "MODEL_CARD.md": f"# {gen}\n\nA synthetic generation (lineage bench).\n".encode()}
    index = pygit2.Index()
    index.read_tree(base_tree)
    for path, data in files.items():
        index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    return index.write_tree(repo)


def build(root: Path, generations: int, events: int) -> dict:
    """Fill the store; return counts and how long each part took."""
    import pygit2
    import yaml

    from lineage.core.canonical import canonical_json
    from lineage.store.ledger import Event

    repo = pygit2.Repository(str(root))
    params = yaml.safe_load((root / "params.yaml").read_text())
    init = repo.references["refs/heads/main"].peel(pygit2.Commit)
    tree = init.tree.id
    t0 = 1_700_000_000
    sig = lambda name, email, t: pygit2.Signature(name, email, t, 0)  # noqa: E731
    who = ("lineage bench", "bench@lineage.invalid")
    started = time.perf_counter()
    tip, served = init.id, None
    last_promoted = None
    n_pass = 0
    last_pass = max((i for i in range(generations) if i % FAIL_EVERY != FAIL_EVERY - 1), default=-1)
    for i in range(generations):
        gen = f"G{i:05d}"
        verdict = "FAIL" if i % FAIL_EVERY == FAIL_EVERY - 1 else "PASS"
        parent = served or "base"
        t = t0 + 60 * i
        commit_tree = _evidence(repo, gen, parent, init.tree, str(tip), params) if i == last_pass else tree
        failed = "" if verdict == "PASS" else " (tone_drift)"
        message = (f"{gen}-a: {verdict}{failed}\n\nGeneration: {gen}\nParent: {parent}\nVerdict: {verdict}\n"
                   f"Gate-Report: sha256:{i:064x}")
        commit = repo.create_commit(None, sig(*who, t), sig(*who, t), message, commit_tree, [tip])
        branch = f"candidates/{gen}-a"
        repo.references.create(f"refs/heads/{branch}", commit)
        frozen = {"schema_version": 1, "generation": gen, "branch": branch, "commit": str(commit), "parent": served,
                  "verdict": verdict, "failed": ["tone_drift"] if verdict == "FAIL" else [],
                  "composite": round(0.6 + (i % 100) / 1000, 4), "reason": None}
        repo.create_tag(f"lineage/frozen/{gen}-a", commit, pygit2.enums.ObjectType.COMMIT, sig(*who, t + 1),
                        json.dumps(frozen, sort_keys=True))
        if verdict == "PASS":
            repo.create_tag(f"lineage/gen/{gen}", commit, pygit2.enums.ObjectType.COMMIT, sig(*who, t + 2),
                            json.dumps({"generation": gen, "commit": str(commit), "previous": str(tip)}))
            tip, served, last_promoted = commit, gen, gen
            n_pass += 1
    repo.references["refs/heads/main"].set_target(tip)  # pygit2: no hook runs, as documented
    built_generations = time.perf_counter() - started

    started = time.perf_counter()
    kinds = ("PROPOSE", "MANIFEST_FROZEN", "TRAIN_COMPLETE", "EVAL_COMPLETE", "COMMIT")
    per_gen = max(1, events // max(generations, 1))
    if per_gen >= len(kinds):  # e.g. 5 per generation: PROPOSE ... COMMIT (or REJECT)
        sequence = list(kinds[:-1]) + ["ARBITER_VERIFY"] * (per_gen - len(kinds)) + ["COMMIT"]
    else:
        sequence = list(kinds[:per_gen - 1]) + ["COMMIT"]
    empty = repo.TreeBuilder().write()
    lsig = pygit2.Signature("lineage", "lineage@localhost", t0, 0)
    prev = None
    for k in range(events):
        i = min(k // per_gen, generations - 1)
        kind = sequence[k % per_gen]
        failed = i % FAIL_EVERY == FAIL_EVERY - 1
        if kind == "COMMIT" and failed:
            kind = "REJECT"
        data = {"PROPOSE": {"branch": f"candidates/G{i:05d}-a", "parent": f"G{i - 1:05d}" if i else None,
                            "overrides": []},
                "MANIFEST_FROZEN": {"manifest": f"sha256:{k:064x}"},
                "TRAIN_COMPLETE": {"steps": 20, "tokens": 6400, "wall_minutes": 0.02, "peak_memory_mb": 512.0,
                                   "loss_final": 3.2, "weights_sha256": f"sha256:{k:064x}"},
                "EVAL_COMPLETE": {"recall": 0.9, "generalize": 0.8, "tone_drift": 0.01, "law_violations": 0,
                                  "verdict": "FAIL" if failed else "PASS"},
                "COMMIT": {"old": "0" * 40, "new": "1" * 40, "ref": "main"},
                "REJECT": {"failed": ["tone_drift"], "reason": None},
                "ARBITER_VERIFY": {"candidate": f"candidates/G{i:05d}-a", "verdict": "PASS"}}[kind]
        event = Event(kind, f"G{i:05d}", "lineage bench <bench@lineage.invalid>", float(t0 + k), data)
        message = canonical_json(event.to_dict()).decode() + "\n"
        prev = repo.create_commit(None, lsig, lsig, message, empty, [prev] if prev else [])
    if prev is not None:
        repo.references.create("refs/lineage/log", prev, force=True)
    built_events = time.perf_counter() - started
    # the work tree follows main (which now holds the last generation's evidence); no hook for this
    common.sh(["git", "-c", "core.hooksPath=/dev/null", "reset", "-q", "--hard", "main"], root)
    return {"generations": generations, "promoted": n_pass, "events": events, "show_generation": last_promoted,
            "build_s": {"generations": round(built_generations, 1), "events": round(built_events, 1)}}


# --- measuring --------------------------------------------------------------------------------

def profile(root: Path, args: list[str], out: Path, top: int = 12) -> dict:
    """cProfile one lineage command in a child process; the top functions by own time."""
    prof = out / ("-".join(a.strip("-") for a in args) + ".prof")
    common.sh([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "lineage", *args], root)
    stats = pstats.Stats(str(prof))
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        rows.append({"function": f"{Path(file).name}:{line}({func})", "file": file, "calls": nc,
                     "tottime_s": round(tt, 4), "cumtime_s": round(ct, 4)})
    by_own = sorted(rows, key=lambda r: -r["tottime_s"])[:top]
    wrappers = ("/lineage/cli.py", "/lineage/__main__.py")  # the CLI frames: everything is under them
    ours = sorted((r for r in rows if "/lineage/" in r["file"] and not r["file"].endswith(wrappers)),
                  key=lambda r: -r["cumtime_s"])[:top]
    return {"top_own_time": by_own, "lineage_by_cumulative": ours}


def measure(root: Path, cases: dict, repeats: int, label: str, want_profile: bool, prof_dir: Path) -> dict:
    samples = {name: [] for name in cases}
    outputs = {}
    for _ in range(repeats):
        for name, cmd in cases.items():  # interleaved: drift on a shared machine hits all alike
            start = time.perf_counter()
            proc = common.sh(cmd, root)
            samples[name].append(time.perf_counter() - start)
            outputs[name] = proc.stdout
    base = common.median(samples["git log --oneline main"])
    rows = {}
    for name, values in samples.items():
        med = common.median(values)
        rows[name] = {"median_s": med, "ratio_vs_git_log": med / base, "samples": common.summary(values),
                      "output_lines": outputs[name].count("\n")}
        if name.startswith("lineage ") and name != "lineage --version" and (want_profile or med > TARGET_S):
            rows[name]["profile"] = profile(root, cases[name][1:], prof_dir)
    return {"state": label, "cases": rows}


def run(args) -> dict:
    repeats = args.record_repeats or getattr(args, "repeats", None) or 3
    with common.scratch_dir(NAME) as tmp:
        tmp = Path(tmp)
        common.isolate(tmp / "home")
        root = common.init_store(tmp / "store")
        t = time.perf_counter()
        info = build(root, args.generations, args.events)
        print(f"record_scale: {info['generations']} generations ({info['promoted']} promoted), {info['events']} events "
              f"built in {time.perf_counter() - t:.0f} s")
        gen = info["show_generation"]
        cases = {
            "git log --oneline main": ["git", "log", "--oneline", "main"],
            "lineage --version": common.lineage_cmd("--version"),
            "lineage log": common.lineage_cmd("log"),
            "lineage log --format jsonl": common.lineage_cmd("log", "--format", "jsonl"),
            "lineage log --format csv": common.lineage_cmd("log", "--format", "csv"),
            f"lineage show {gen}": common.lineage_cmd("show", gen),
            "lineage status --no-remote": common.lineage_cmd("status", "--no-remote"),
        }
        prof_dir = tmp / "profiles"
        prof_dir.mkdir()
        rounds = [measure(root, cases, repeats, "as written (loose objects and refs)", args.profile, prof_dir)]
        if not args.no_gc:
            t = time.perf_counter()
            # hooks off: in a store, `git gc`/`git pack-refs` is refused by the reference-transaction
            # hook (pruning the loose refs/heads/main looks like deleting it; see bench/hooks.py),
            # and git prunes loose refs one transaction each, starting the hook twice per ref.
            common.sh(["git", "-c", "core.hooksPath=/dev/null", "gc", "-q"], root)
            info["gc_s"] = round(time.perf_counter() - t, 1)
            rounds.append(measure(root, cases, repeats, "after git gc (packed)", args.profile, prof_dir))

    expected = {"lineage log": info["generations"] + 2, "lineage log --format jsonl": info["events"],
                "lineage log --format csv": info["generations"] + 1}
    for r in rounds:
        for name, lines in expected.items():
            got = r["cases"][name]["output_lines"]
            if got != lines:
                print(f"  warning: {name} printed {got} lines, expected {lines} ({r['state']})")
    result = {"repeats": repeats, "target": {"lineage log": f"< {TARGET_S:g} s"}, **info, "rounds": rounds}
    path = common.write_result(NAME, result)
    print(f"== record_scale: {info['generations']} generations, {info['events']} events; medians of {repeats}; "
          f"baseline = git log --oneline main ({info['promoted']} commits)")
    header = ["command"] + [f"{r['state'].split(' (')[0]} s" for r in rounds] + \
             [f"{r['state'].split(' (')[0]} ratio" for r in rounds]
    lines = []
    for name in cases:
        lines.append([name] + [f"{r['cases'][name]['median_s']:.2f}" for r in rounds] +
                     [f"{r['cases'][name]['ratio_vs_git_log']:.1f}x" for r in rounds])
    print(common.table(lines, header))
    log_s = [r["cases"]["lineage log"]["median_s"] for r in rounds]
    print(f"target lineage log < {TARGET_S:g} s: " + ", ".join(
        f"{r['state'].split(' (')[0]} {s:.2f} s {'met' if s < TARGET_S else 'MISSED'}"
        for r, s in zip(rounds, log_s, strict=True)))
    for r in rounds:
        for name, row in r["cases"].items():
            if "profile" in row:
                print(f"profile of `{name}` ({r['state']}), lineage functions by cumulative time:")
                for p in row["profile"]["lineage_by_cumulative"][:6]:
                    print(f"    {p['cumtime_s']:7.2f} s cum  {p['tottime_s']:6.2f} s own  "
                          f"{p['calls']:>7} calls  {p['function']}")
                print("  top own time:")
                for p in row["profile"]["top_own_time"][:6]:
                    print(f"    {p['tottime_s']:7.2f} s own  {p['calls']:>7} calls  {p['function']}")
    print(f"-> {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    return common.cli_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
