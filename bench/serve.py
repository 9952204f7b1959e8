"""`lineage serve` under load: requests/s and p50/p99 latency at steady state and during a cut-over.

Per model size (scratch hidden size; the default 64 is the tests' tiny model): a store whose G000 is
really trained and promoted, and a candidate G001-a (PASS) trained on era 1. A server runs with
`--port 0`; C client threads (httpx, one connection each) send completions (max_tokens 8) in a loop.

    steady      D seconds of load on G000 (the baseline)
    cut-over    the same load while `lineage promote candidates/G001-a` runs, until 3 s after the
                first G001 answer; then again while `lineage rollback --to G000` runs

Printed as ratios against the steady phase of the same run (target: p99 during a cut-over at most
2x steady, 0 failed requests, every answer from exactly one generation), with the cut-over's own
time (load + hash check + swap, from /health) against the size of the weights. The live burn-in is
off here (serve.burn_in_seconds 0) so each cut-over is one load.

Usage: python bench/serve.py [--serve-clients 8] [--serve-seconds 10] [--serve-hidden 64,256]
"""

from __future__ import annotations

import argparse
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "serve"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("serve")
    g.add_argument("--serve-clients", type=int, default=8, metavar="C", help="concurrent clients (default 8)")
    g.add_argument("--serve-seconds", type=float, default=10.0, metavar="D", help="steady phase (default 10 s)")
    g.add_argument("--serve-hidden", default="64", help="comma-separated scratch hidden sizes (default 64)")


def build_store(root: Path, hidden: int) -> Path:
    """G000 trained and promoted, era 1 and its exam registered, G001-a proposed (PASS)."""
    extra = {"scratch": {"hidden_size": hidden, "intermediate_size": hidden * 2},
             "serve": {"burn_in_seconds": 0.0, "poll_seconds": 0.2}}
    store = common.init_store(root / f"h{hidden}", common.tiny_params(extra))
    common.sh(common.lineage_cmd("propose"), store)
    common.sh(common.lineage_cmd("promote", "candidates/G000-a"), store)
    common.sh(common.lineage_cmd("corpus", "write", "1", str(root / "era1.jsonl")), store)
    common.sh(common.lineage_cmd("data", "add", str(root / "era1.jsonl")), store)
    common.sh(common.lineage_cmd("corpus", "exam", "1", str(root / "exam1.jsonl")), store)
    common.sh(common.lineage_cmd("exam", "add", str(root / "exam1.jsonl")), store)
    common.sh(common.lineage_cmd("change", "--reason", "the exam of era 1"), store)
    common.sh(common.lineage_cmd("propose", "--name", "a"), store)
    return store


class Load:
    """C client threads sending completions until stopped; every answer recorded with its time."""

    def __init__(self, url: str, clients: int) -> None:
        self.url, self.stop = url, threading.Event()
        self.answers: list[tuple[float, float, bool, str, str]] = []  # (end time, latency, ok, header gen, body gen)
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]

    def client(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=120) as c:
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    r = c.post("/v1/completions", json={"prompt": "The river", "max_tokens": 8})
                    ok = r.status_code == 200
                    header, body = r.headers.get("X-Lineage-Generation", ""), r.json()["lineage"]["generation"]
                except Exception:
                    ok, header, body = False, "", ""
                end = time.perf_counter()
                self.answers.append((end, end - start, ok, header, body))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)

    def window(self, start: float, end: float) -> dict:
        rows = [a for a in self.answers if start <= a[0] <= end]
        lat = sorted(a[1] for a in rows if a[2])
        pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
        return {"requests": len(rows), "failed": sum(not a[2] for a in rows),
                "mixed": sum(a[3] != a[4] for a in rows if a[2]), "seconds": end - start,
                "rps": len(rows) / max(end - start, 1e-9), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                "generations": sorted({a[4] for a in rows if a[2]})}


def cut_over(load: Load, store: Path, client, command: list[str], to: str) -> dict:
    """Load the server while command moves main; until 3 s after the first answer from `to`."""
    start = time.perf_counter()
    common.sh(command, store)
    moved = time.perf_counter()
    deadline = moved + 120
    while time.perf_counter() < deadline and not any(a[4] == to for a in load.answers[-4:]):
        time.sleep(0.05)
    seen = time.perf_counter()
    time.sleep(3)
    result = load.window(start, time.perf_counter())
    health = client.get("/health").json()
    result.update(command_s=moved - start, first_answer_after_move_s=seen - moved,
                  cutover_s=health["cutovers"][-1]["seconds"], cutover_result=health["cutovers"][-1]["result"])
    return result


def measure(store: Path, clients: int, seconds: float) -> dict:
    import httpx

    proc = subprocess.Popen(common.lineage_cmd("serve", "--port", "0"), cwd=store, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("serving "):
            raise RuntimeError(f"lineage serve did not start: {line!r}")
        url = line.split(" on ")[1].split(",")[0].strip()
        weights = sum(p.stat().st_size for p in (store / "models" / "child").glob("*.safetensors"))
        with httpx.Client(base_url=url, timeout=60) as client, Load(url, clients) as load:
            time.sleep(1)  # warm-up, not measured
            begin = time.perf_counter()
            time.sleep(seconds)
            steady = load.window(begin, time.perf_counter())
            promote = cut_over(load, store, client, common.lineage_cmd("promote", "candidates/G001-a"), "G001")
            back = cut_over(load, store, client, common.lineage_cmd("rollback", "--to", "G000", "--reason", "bench"),
                            "G000")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    phases = {"steady": steady, "promote": promote, "rollback": back}
    for name in ("promote", "rollback"):
        phases[name]["p99_vs_steady"] = phases[name]["p99_ms"] / steady["p99_ms"]
        phases[name]["rps_vs_steady"] = phases[name]["rps"] / steady["rps"]
    return {"weights_bytes": weights, "phases": phases}


def run(args) -> dict:
    sizes = [int(h) for h in args.serve_hidden.split(",") if h.strip()]
    rows, runs = [], []
    with common.scratch_dir("serve") as tmp:
        common.isolate(Path(tmp) / "home")
        for hidden in sizes:
            store = build_store(Path(tmp), hidden)
            r = measure(store, args.serve_clients, args.serve_seconds)
            r["hidden_size"] = hidden
            runs.append(r)
            for name, p in r["phases"].items():
                rows.append([f"h{hidden} ({common.human(r['weights_bytes'])})", name, p["requests"], p["failed"],
                             p["mixed"], f"{p['rps']:.1f}", f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}",
                             f"{p.get('p99_vs_steady', 1.0):.2f}x",
                             "" if "cutover_s" not in p else f"{p['cutover_s']:.2f} s ({p['cutover_result']})"])
    result = {"clients": args.serve_clients, "steady_seconds": args.serve_seconds, "runs": runs,
              "failed_requests": sum(p["failed"] for r in runs for p in r["phases"].values()),
              "worst_p99_vs_steady": max(r["phases"][n]["p99_vs_steady"] for r in runs
                                         for n in ("promote", "rollback")),
              "targets": {"p99 during a cut-over": "<= 2x steady", "failed requests": 0}}
    path = common.write_result(NAME, result)
    print(f"== serve: {args.serve_clients} clients; baseline = the steady phase of the same server")
    print(common.table(rows, ["model", "phase", "requests", "failed", "mixed", "req/s", "p50 ms", "p99 ms",
                              "p99/steady", "cut-over"]))
    print(f"failed requests {result['failed_requests']} (target 0); worst p99 during a cut-over "
          f"{result['worst_p99_vs_steady']:.2f}x steady (target <= 2x)")
    print(f"-> {path}")
    return result


if __name__ == "__main__":
    raise SystemExit(common.cli_main(__doc__, add_arguments, run))
