"""One evolution window on the bundled corpus: wall time and peak memory with K=1 and K=3.

A store with the default params trains and promotes G000 (real training, not timed), registers
era 1, and is copied once per run; each copy runs `lineage evolve -k K` (K candidates through the
whole pipeline, ranked, frozen, the best proposed). The baseline is the K=1 window of the same
run: the K=3 / K=1 ratio says what each extra candidate costs (3.0x would be no overhead shared
and none saved). Candidates run one after another, so on 2 cores the ratio is close to K.

Usage: python bench/window.py [--window-ks 1,3] [--window-repeats N]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "window"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("window")
    g.add_argument("--window-ks", default="1,3", help="window sizes to time (default 1,3; the first is the baseline)")
    g.add_argument("--window-repeats", type=int, default=None, metavar="N",
                   help="windows per K (default 1, or --repeats); each trains K real candidates")


def _g000(base: Path) -> Path:
    """Default params, G000 trained and promoted, era 1 registered (the state a window starts from)."""
    store = base / "luna"
    common.sh(common.lineage_cmd("-q", "init", str(store)), base)
    common.sh(common.lineage_cmd("-q", "propose"), store)
    common.sh(common.lineage_cmd("-q", "promote", "candidates/G000-a"), store)
    common.sh(common.lineage_cmd("corpus", "write", "1", str(base / "era1.jsonl")), store)
    common.sh(common.lineage_cmd("-q", "data", "add", str(base / "era1.jsonl")), store)
    common.sh(common.lineage_cmd("corpus", "exam", "1", str(base / "exam1.jsonl")), store)
    common.sh(common.lineage_cmd("-q", "exam", "add", str(base / "exam1.jsonl")), store)
    common.sh(common.lineage_cmd("-q", "change", "--reason", "the exam of era 1"), store)
    return store


def _window(template: Path, dest: Path, k: int) -> dict:
    shutil.copytree(template, dest, symlinks=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = common.sh(common.lineage_cmd("--json", "evolve", "-k", str(k)), dest)
    wall = time.perf_counter() - start
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out = {}
    frozen = common.sh(["git", "tag", "-l", "lineage/frozen/G001-*"], dest).stdout.split()
    if len(frozen) != k:
        raise RuntimeError(f"window K={k} froze {len(frozen)} candidates, expected {k}\n{proc.stdout}\n{proc.stderr}")
    common.rmtree(dest)
    return {"wall_s": wall, "peak_rss_mib": peak, "frozen": len(frozen), "state": out.get("state"),
            "verdicts": [c.get("verdict") for c in out.get("ranked", [])]}


def run(args) -> dict:
    ks = [int(x) for x in args.window_ks.split(",") if x.strip()]
    repeats = args.window_repeats or getattr(args, "repeats", None) or 1
    with common.scratch_dir(NAME) as tmp:
        tmp = Path(tmp)
        common.isolate(tmp / "home")
        t = time.perf_counter()
        template = _g000(tmp)
        setup = time.perf_counter() - t
        print(f"window: G000 (default params) trained and promoted in {setup:.0f} s; era 1 registered")
        runs: dict[int, list[dict]] = {k: [] for k in ks}
        for r in range(repeats):
            for k in ks:  # alternated, so load drifts hit every K alike
                runs[k].append(_window(template, tmp / f"w{k}-{r}", k))
                w = runs[k][-1]
                print(f"  K={k}: {w['wall_s']:.0f} s, peak RSS {w['peak_rss_mib']:.0f} MiB, {w['state']}, "
                      f"verdicts {', '.join(map(str, w['verdicts']))}")
    base_k = ks[0]
    med = {k: common.median([x["wall_s"] for x in v]) for k, v in runs.items()}
    rows = [{"k": k, "median_s": med[k], "per_candidate_s": med[k] / k,
             f"ratio_vs_k{base_k}": med[k] / med[base_k],
             "peak_rss_mib": max(x["peak_rss_mib"] for x in runs[k]),
             "samples": common.summary([x["wall_s"] for x in runs[k]])} for k in ks]
    result = {"repeats": repeats, "baseline_k": base_k, "g000_setup_s": setup, "windows": rows,
              "note": "candidates run sequentially; peak RSS is the largest single process (a training run)"}
    path = common.write_result(NAME, result)
    print(f"== window: `lineage evolve -k K`, medians of {repeats}; baseline = the K={base_k} window of this run")
    print(common.table([[r["k"], f"{r['median_s']:.0f}", f"{r['per_candidate_s']:.0f}",
                         f"{r[f'ratio_vs_k{base_k}']:.2f}x", f"{r['peak_rss_mib']:.0f}"] for r in rows],
                       ["K", "window s", "s per candidate", f"vs K={base_k}", "peak RSS MiB"]))
    print(f"-> {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    return common.cli_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
