"""Benchmarks: the one entry point (`make bench` runs `python bench/run.py $(BENCH_ARGS)`).

Cases (each prints ratios against a baseline measured in the same run, medians of several runs,
and writes bench/results/<case>.json; none is a pass/fail test):

    pipeline   `dvc repro train` vs the same stages run directly with python (real training);
               tokens/s and peak memory of the training backend
    window     one `lineage evolve` window with K=3 vs K=1 (real training, default params)
    hooks      git commit/checkout with the reference-transaction hook vs core.hooksPath=/dev/null
    promotion  `lineage promote`/`rollback` vs `cp -r` of the weights, per model size (synthetic);
               `lineage verify` vs `sha256sum` of the same files
    record     `lineage log/show/status` on 10,000 generations and 50,000 events vs `git log`
    storage    DVC cache growth per generation, full weights vs LoRA, against the model's size
    arbiter    `lineage arbiter evaluate` of a candidate vs that candidate's training time
    warm       `dvc repro` with stages forked from a warm server vs a process per stage
    dvc_calls  lineage's data operations through DVC's Python API in-process vs the dvc CLI
    serve      `lineage serve`: requests/s, p50/p99 at steady state and during a promotion's and a
               rollback's cut-over (20 s per size; baseline: the steady phase of the same server)
    validity   the gate's confusion matrix: seven kinds of candidate per seed (one that earned main,
               six that did not), each judged by `lineage arbiter evaluate` and `lineage promote`

Usage: python bench/run.py [--only hooks,promotion] [--repeats N] [case options, see --help]
       e.g. make bench BENCH_ARGS="--only promotion --sizes 10M,1G,4G"
Defaults are modest (the machines are small and shared); heavy cases are opt-in by flags.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import arbiter  # noqa: E402
import common  # noqa: E402
import dvc_calls  # noqa: E402
import gate_validity  # noqa: E402
import hooks  # noqa: E402
import promotion_size  # noqa: E402
import record_scale  # noqa: E402
import serve  # noqa: E402
import storage  # noqa: E402
import warm  # noqa: E402
import window  # noqa: E402

BIN = common.BIN


# --- pipeline: DVC's bookkeeping on top of the training itself ----------------------------------

def _timed_rss(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a child process tree, run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def pipeline_add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("pipeline")
    g.add_argument("--pipeline-repeats", type=int, default=None, metavar="N",
                   help="pipeline runs (default 1, or --repeats); each trains the default G000 twice")


def pipeline_run(args) -> dict:
    """`dvc repro train` against the same three stages run directly (default params, real training)."""
    repeats = args.pipeline_repeats or args.repeats or 1
    rows = {"dvc repro train": [], "direct stages (baseline)": [], "eval stage": []}
    peaks, backend_rows = [], []
    for _ in range(repeats):
        with common.scratch_dir("pipeline") as tmp:
            tmp = Path(tmp)
            common.isolate(tmp / "home")
            store = common.init_store(tmp / "a")
            wall, peak = _timed_rss([str(BIN / "dvc"), "repro", "train"], store)
            rows["dvc repro train"].append(wall)
            peaks.append(peak)
            train = json.loads((store / "reports" / "train" / "metrics.json").read_text())
            manifest = json.loads((store / "reports" / "train" / "manifest.json").read_text())
            backend_rows.append({"backend": manifest.get("backend"), "tokens": train["tokens"],
                                 "steps": train["steps"], "train_s": train["wall_minutes"] * 60,
                                 "tokens_per_s": train["tokens"] / (train["wall_minutes"] * 60),
                                 "peak_memory_mb": train.get("peak_memory_mb")})
            rows["eval stage"].append(common.timed([str(BIN / "dvc"), "repro", "eval"], store))
            base = common.init_store(tmp / "b")
            start = time.perf_counter()
            for stage in ("parent", "prepare", "train"):
                subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=base, check=True, capture_output=True)
            rows["direct stages (baseline)"].append(time.perf_counter() - start)
            shutil.rmtree(tmp / "a.dvc-remote", ignore_errors=True)
    med = {k: common.median(v) for k, v in rows.items()}
    result = {"repeats": repeats, "median_seconds": med, "samples": {k: common.summary(v) for k, v in rows.items()},
              "peak_rss_mib_dvc_repro_train": max(peaks),
              "ratio_dvc_vs_direct": med["dvc repro train"] / med["direct stages (baseline)"],
              "training_backend": {"runs": backend_rows,
                                   "median_tokens_per_s": common.median([b["tokens_per_s"] for b in backend_rows]),
                                   "gpu": None, "unsloth": "not run: no GPU on this machine"},
              "targets": {"dvc repro train": "<= 180 s, <= 4096 MiB", "eval": "< 60 s"}}
    path = common.write_result("pipeline", result)
    print(f"== pipeline: medians of {repeats}; baseline = the stages run directly with python")
    print(common.table([[k, f"{v:.1f}"] for k, v in med.items()], ["case", "median s"]))
    print(f"dvc repro train / direct stages: {result['ratio_dvc_vs_direct']:.2f}x; peak RSS {max(peaks):.0f} MiB "
          f"(targets: {result['targets']})")
    tb = result["training_backend"]
    print(f"training backend {backend_rows[0]['backend']} (CPU): {tb['median_tokens_per_s']:.0f} tokens/s, "
          f"peak {max(b['peak_memory_mb'] or 0 for b in backend_rows):.0f} MB in training; Unsloth: {tb['unsloth']}")
    print(f"-> {path}")
    return result


# --- the entry point ----------------------------------------------------------------------------

CASES = {
    "pipeline": (pipeline_add_arguments, pipeline_run),
    "window": (window.add_arguments, window.run),
    "hooks": (hooks.add_arguments, hooks.run),
    "promotion": (promotion_size.add_arguments, promotion_size.run),
    "record": (record_scale.add_arguments, record_scale.run),
    "storage": (storage.add_arguments, storage.run),
    "arbiter": (arbiter.add_arguments, arbiter.run),
    "warm": (warm.add_arguments, warm.run),
    "dvc_calls": (dvc_calls.add_arguments, dvc_calls.run),
    "validity": (gate_validity.add_arguments, gate_validity.run),
    "serve": (serve.add_arguments, serve.run),
}
ALIASES = {"promotion_size": "promotion", "record_scale": "record", "hook": "hooks", "verify": "promotion",
           "gate_validity": "validity"}


def _headline(case: str, r: dict) -> str:
    """One line per case for the closing summary."""
    if case == "pipeline":
        return (f"dvc repro train / direct stages {r['ratio_dvc_vs_direct']:.2f}x; training "
                f"{r['training_backend']['median_tokens_per_s']:.0f} tokens/s on CPU")
    if case == "window":
        ratio = f"ratio_vs_k{r['baseline_k']}"
        return "; ".join(f"K={w['k']} {w['median_s']:.0f} s ({w[ratio]:.2f}x K={r['baseline_k']})"
                         for w in r["windows"])
    if case == "storage":
        return "; ".join(f"{c['finetune']}: +{common.human(c['child_cache_growth_bytes'])} per generation "
                         f"({c['share_of_model']:.2f}x the weights)" for c in r["children"])
    if case == "hooks":
        c = r["cases"]["commit"]
        return (f"git commit +{c['extra_ms']:.1f} ms ({c['ratio']:.2f}x) with the hook, target < 10 ms; "
                f"refusal {r['protected_refusal']['median_ms']:.0f} ms; "
                f"pack-refs with hook exit {r['pack_refs_all']['hook']['exit']}")
    if case == "promotion":
        return ("; ".join(f"{s['label']}: promote {s['ratio_vs_cp']['promote']:.2f}x, rollback "
                          f"{s['ratio_vs_cp']['rollback']:.2f}x of cp -r" for s in r["sizes"])
                + f"; verify {r['verify']['throughput_vs_sha256sum']:.2f}x sha256sum throughput")
    if case == "record":
        return "; ".join(f"{rd['state'].split(' (')[0]}: lineage log {rd['cases']['lineage log']['median_s']:.2f} s "
                         f"({rd['cases']['lineage log']['ratio_vs_git_log']:.1f}x git log)" for rd in r["rounds"])
    if case == "serve":
        return (f"failed requests {r['failed_requests']} (target 0); p99 during a cut-over "
                f"{r['worst_p99_vs_steady']:.2f}x steady (target <= 2x); cut-over "
                + ", ".join(f"{common.human(x['weights_bytes'])} {x['phases']['promote']['cutover_s']:.2f} s"
                            for x in r["runs"]))
    if case == "validity":
        return (f"false accepts {r['false_accepts']} of {r['expected_rejects_judged']} (target 0), false rejects "
                f"{r['false_rejects']} of {r['expected_accepts_judged']} (target <= 1 in 25)"
                + (" [TINY: harness check only]" if r["tiny"] else ""))
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(CASES),
                    help=f"comma-separated cases to run (default all: {','.join(CASES)})")
    ap.add_argument("--repeats", type=int, default=None, metavar="N",
                    help="runs per measurement for every case (each case has its own default)")
    for add, _ in CASES.values():
        add(ap)
    args = ap.parse_args(argv)
    chosen = []
    for name in (n.strip() for n in args.only.split(",") if n.strip()):
        name = ALIASES.get(name, name)
        if name not in CASES:
            ap.error(f"unknown case {name!r}; choose from {', '.join(CASES)}")
        chosen.append(name)
    print(f"machine: {json.dumps(common.machine())}")
    results, started = {}, time.perf_counter()
    for name in chosen:
        t = time.perf_counter()
        results[name] = CASES[name][1](args)
        print(f"({name}: {time.perf_counter() - t:.0f} s)\n")
    print("== summary")
    for name, r in results.items():
        print(f"  {name:10} {_headline(name, r)}")
    common.write_result("summary", {"cases": chosen, "headlines": {n: _headline(n, r) for n, r in results.items()},
                                    "wall_s": round(time.perf_counter() - started, 1)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
