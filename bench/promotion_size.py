"""Promotion and rollback time against model size, with `cp -r` of the same weights as baseline.

Training a real 1 GB generation is out of reach here, so the generations are SYNTHETIC but
complete: a store where a tiny G000 was really trained (`lineage propose`) and promoted, then per
size two candidate commits whose evidence the arbiter accepts — models/child with a valid
safetensors file of the target size, hashes.csv, the manifest (parent = the served generation),
reports/train/metrics.json, metrics.json (child better than parent), reports/gate.json from
lineage.core.gate.judge with the hashes the arbiter checks, and a dvc.lock whose train out carries the
DVC .dir md5 of the directory (from `dvc add` of a scratch copy; its objects stay in the cache).
Each candidate is checked with lineage.guard.arbiter.check_move before anything is timed.

Per size S: promote a base generation B(S) (not timed), then per repeat: a fresh candidate X on
the current tip (same weights X(S), different contents from B), timed `lineage promote`, timed
`lineage rollback --to B` (so both moves swap S bytes of weights in models/child), and the
baseline `cp -r models/child` to a scratch directory. The point: promote/rollback stay flat in
size because DVC links weights out of its cache instead of copying them.

Usage: python bench/promotion_size.py [--sizes 10M,200M] [--promotion-repeats N]
       heavy, opt-in: --sizes 10M,1G,4G  (needs about 3x the largest size free on disk)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "promotion_size"
CHUNK = 8 << 20
SMALL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "train_args.json")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("promotion_size")
    g.add_argument("--sizes", default="10M,200M",
                   help="comma-separated weight sizes (default 10M,200M; e.g. 10M,1G,4G is opt-in and heavy)")
    g.add_argument("--promotion-repeats", type=int, default=None, metavar="N",
                   help="promote/rollback/cp repeats per size (default: 3, or --repeats)")
    g.add_argument("--keep", action="store_true", help="keep the scratch store (its path is printed)")


# --- synthetic weights ------------------------------------------------------------------------

def write_safetensors(path: Path, size: int, seed: int) -> str:
    """A valid safetensors file of exactly `size` bytes (one U8 tensor), streamed; return its sha256."""
    meta = {"__metadata__": {"format": "pt", "lineage_bench": "synthetic weights"}}

    def header_for(n: int) -> bytes:
        h = json.dumps({**meta, "bench.synthetic": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}},
                       separators=(",", ":")).encode()
        return h + b" " * (-len(h) % 8)

    n = size
    for _ in range(4):  # the header's length depends on n's digits: settle it
        header = header_for(n)
        n = max(size - 8 - len(header), 1)
    header = header_for(n)
    block = bytearray(random.Random(seed).randbytes(CHUNK))
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for part in (struct.pack("<Q", len(header)), header):
            f.write(part)
            digest.update(part)
        left, k = n, 0
        while left:
            block[:8] = struct.pack("<Q", (seed * 1_000_003 + k) % 2**64)  # every chunk differs
            piece = memoryview(block)[:min(left, CHUNK)]
            f.write(piece)
            digest.update(piece)
            left -= len(piece)
            k += 1
    return digest.hexdigest()


def build_child(dest: Path, size: int, seed: int, template: Path, manifest: dict) -> list[dict]:
    """models/child-shaped directory: small files from G000, synthetic weights, manifest, hashes.csv."""
    from lineage.core.canonical import write_json
    from lineage.core.hashes import hash_dir, hashes_csv

    dest.mkdir(parents=True)
    for name in SMALL_FILES:
        if (template / name).exists():
            shutil.copyfile(template / name, dest / name)
    write_safetensors(dest / "model.safetensors", size, seed)
    write_json(dest / "manifest.json", manifest)
    rows = hash_dir(dest)
    (dest / "hashes.csv").write_text(hashes_csv(rows))
    return rows


def dvc_dir_md5(store: Path, scratch: Path) -> dict:
    """`dvc add` a directory inside the store; return its lock entry; leave only the cache objects."""
    import yaml

    common.sh([str(common.BIN / "dvc"), "add", "-q", scratch.relative_to(store).as_posix()], store)
    dvcfile = scratch.with_name(scratch.name + ".dvc")
    out = yaml.safe_load(dvcfile.read_text())["outs"][0]
    dvcfile.unlink()
    (scratch.parent / ".gitignore").unlink(missing_ok=True)
    common.rmtree(scratch)
    return {"md5": out["md5"], "size": out["size"], "nfiles": out["nfiles"]}


# --- candidate commits ------------------------------------------------------------------------

def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _set_out(entries: list[dict], path: str, **values) -> None:
    for e in entries:
        if e["path"] == path:
            e.update(values)
            return
    raise KeyError(path)


class Store:
    """A real store with a trained G000, and the means to add synthetic generations to it."""

    def __init__(self, root: Path):
        import pygit2

        self.root = root
        self.repo = pygit2.Repository(str(root))
        g000 = self.tip()
        self.template_manifest = json.loads(self.blob(g000, "reports/train/manifest.json"))
        self.probes = json.loads(self.blob(g000, "reports/gate.json"))["hashes"]["probes"]
        self.child_template = root / "models" / "child"
        self.weights: dict[str, dict] = {}  # name -> {rows, digest, lock}

    def tip(self):
        import pygit2

        return self.repo.references["refs/heads/main"].peel(pygit2.Commit)

    def blob(self, commit, path: str) -> bytes:
        from lineage.adapters.git import read_blob

        return read_blob(self.repo, commit, path)

    def served(self) -> dict:
        """The generation main serves: name, commit, weights digest, child dir md5 entry, scores."""
        from lineage.adapters import dvc
        from lineage.core.hashes import parse_hashes_csv, weights_digest
        from lineage.store.refs import served_generation

        tip = self.tip()
        gen = served_generation(tip)
        commit = self.gen_commit(gen)
        child = dvc.lock_outs(self.blob(commit, "dvc.lock"))["train"]["models/child"]
        rows = parse_hashes_csv(self.blob(commit, "reports/train/hashes.csv").decode())
        return {"generation": gen, "commit": str(commit.id), "digest": weights_digest(rows),
                "md5": child["md5"], "size": child["size"], "nfiles": child["nfiles"],
                "metrics": json.loads(self.blob(commit, "metrics.json")),
                "manifest": json.loads(self.blob(commit, "reports/train/manifest.json"))}

    def gen_commit(self, gen: str):
        import pygit2

        from lineage.adapters.git import trailers

        walker = self.repo.walk(self.tip().id, pygit2.enums.SortMode.TOPOLOGICAL)
        walker.simplify_first_parent()
        for c in walker:
            if trailers(c.message).get("Generation") == gen:
                return c
        raise KeyError(gen)

    def manifest_for(self, parent: dict) -> dict:
        m = json.loads(json.dumps(self.template_manifest))
        m["parent"] = {"commit": parent["commit"], "dvc_md5": parent["md5"], "generation": parent["generation"],
                       "kind": "generation", "weights_sha256": parent["digest"]}
        m["synthetic"] = "lineage bench/promotion_size.py: weights are filler, not a trained model"
        return m

    def make_weights(self, name: str, size: int, seed: int, parent: dict) -> dict:
        """Write, hash and `dvc add` one synthetic child directory (parent fixed in its manifest)."""
        from lineage.core.hashes import weights_digest

        manifest = self.manifest_for(parent)
        scratch = self.root / "bench-scratch" / name
        t = time.perf_counter()
        rows = build_child(scratch, size, seed, self.child_template, manifest)
        csv_text = (scratch / "hashes.csv").read_text()
        lock = dvc_dir_md5(self.root, scratch)
        shutil.rmtree(self.root / "bench-scratch", ignore_errors=True)
        w = {"rows": rows, "digest": weights_digest(rows), "lock": lock, "manifest": manifest,
             "hashes_csv": csv_text, "parent": parent["generation"], "bytes": size,
             "setup_s": time.perf_counter() - t}
        self.weights[name] = w
        return w

    def candidate(self, w: dict, parent: dict) -> tuple[str, str, str]:
        """Commit a candidate on a branch forked from main's tip; freeze it; return (gen, branch, commit)."""
        import pygit2
        import yaml

        from lineage.adapters import cards
        from lineage.core.canonical import canonical_json, digest_bytes, digest_obj
        from lineage.core.cards import card_metadata, render_card_body, render_eval_md
        from lineage.core.gate import judge
        from lineage.core.metrics import BudgetUsed, EvalMetrics
        from lineage.core.policy import Policy
        from lineage.store.refs import next_generation

        assert w["parent"] == parent["generation"], "weights were built for another parent"
        tip = self.tip()
        gen = next_generation(self.repo)
        branch = f"candidates/{gen}-a"
        manifest = w["manifest"]
        pretty = lambda obj: (json.dumps(obj, sort_keys=True, indent=2) + "\n").encode()  # noqa: E731
        train = {"status": "COMPLETE", "reason": None, "steps": 20, "tokens": 6400, "wall_minutes": 0.02,
                 "peak_memory_mb": 512.0, "output_mb": round(w["bytes"] / 2**20, 3), "loss_start": 3.6,
                 "loss_final": 3.2, "manifest_digest": digest_obj(manifest), "weights_sha256": w["digest"],
                 "resumed": False}
        pc = parent["metrics"]["child"]  # the parent generation's own scores are the parent here
        bump = lambda x: round(min(1.0, x + 0.01), 6)  # noqa: E731
        child = {**pc, "recall": bump(pc["recall"]), "generalize": bump(pc["generalize"]),
                 "recall_by_delta": {k: bump(v) for k, v in pc.get("recall_by_delta", {}).items()}}
        metrics = {"schema_version": 1, "child": child, "parent": pc, "parent_is_generation": True,
                   "tone_drift": 0.01, "eval_seconds": 1.0, "weight_change_pct": 100.0}
        metrics_b, train_b, manifest_b = pretty(metrics), pretty(train), pretty(manifest)
        csv_b = w["hashes_csv"].encode()
        policy = Policy.from_params(yaml.safe_load(self.blob(tip, "params.yaml")) or {})
        hashes = {"child_weights": w["digest"], "parent_weights": parent["digest"],
                  "manifest": digest_obj(manifest), "hashes_csv": "sha256:" + hashlib.sha256(csv_b).hexdigest(),
                  "metrics": "sha256:" + hashlib.sha256(metrics_b).hexdigest(), "probes": self.probes,
                  "policy_commit": str(tip.id)}
        em, bu = EvalMetrics.from_dict(metrics), BudgetUsed.from_dict(train)
        report = judge(policy, em, bu, hashes=hashes,
                       policy_source={"ref": "main", "commit": str(tip.id), "candidate_policy_differs": False})
        if report.verdict != "PASS":
            raise RuntimeError(f"synthetic candidate fails its own gate: {report.failed}")
        gate_b = pretty(report.to_dict())
        card = {"generation": None, "parent_generation": parent["generation"], "parent_hash": parent["digest"],
                "base_model": manifest.get("base_model"),
                "data": [{"path": d["path"], "sha256": d["sha256"], "records": d["records"]}
                         for d in manifest.get("data", {}).get("new", [])],
                "method": manifest.get("method"), "finetune": manifest.get("finetune"), "seed": manifest.get("seed"),
                "weights_kind": "full"}
        card_md = cards.render(card_metadata(report, em, card), render_card_body(report, em, card)).encode()
        eval_md = render_eval_md(report, em).encode()
        parent_json = pretty({"base_model": manifest.get("base_model"), "commit": str(tip.id),
                              "deltas_seen": manifest.get("deltas_seen", []), "dvc_md5": parent["md5"],
                              "generation": parent["generation"], "kind": "generation",
                              "weights_sha256": parent["digest"]})

        lock = yaml.safe_load(self.blob(tip, "dvc.lock"))
        st = lock["stages"]
        child_out = {"md5": w["lock"]["md5"], "size": w["lock"]["size"], "nfiles": w["lock"]["nfiles"]}
        parent_out = {"md5": parent["md5"], "size": parent["size"], "nfiles": parent["nfiles"]}
        files = {"metrics.json": metrics_b, "reports/train/metrics.json": train_b,
                 "reports/train/manifest.json": manifest_b, "reports/train/hashes.csv": csv_b,
                 "reports/gate.json": gate_b, "EVAL.md": eval_md, "MODEL_CARD.md": card_md,
                 "reports/parent.json": parent_json}
        sized = lambda p: {"md5": _md5(files[p]), "size": len(files[p])}  # noqa: E731
        _set_out(st["parent"]["outs"], "models/parent", **parent_out)
        _set_out(st["parent"]["outs"], "reports/parent.json", **sized("reports/parent.json"))
        _set_out(st["train"]["deps"], "models/parent", **parent_out)
        for p in ("reports/train/hashes.csv", "reports/train/manifest.json", "reports/train/metrics.json"):
            _set_out(st["train"]["outs"], p, **sized(p))
        _set_out(st["train"]["outs"], "models/child", **child_out)
        _set_out(st["eval"]["deps"], "models/child", **child_out)
        _set_out(st["eval"]["deps"], "models/parent", **parent_out)
        _set_out(st["eval"]["deps"], "reports/parent.json", **sized("reports/parent.json"))
        _set_out(st["eval"]["outs"], "metrics.json", **sized("metrics.json"))
        for p in ("metrics.json", "reports/train/metrics.json", "reports/train/manifest.json",
                  "reports/train/hashes.csv"):
            _set_out(st["gate"]["deps"], p, **sized(p))
        for p in ("reports/gate.json", "EVAL.md", "MODEL_CARD.md"):
            _set_out(st["gate"]["outs"], p, **sized(p))
        files["dvc.lock"] = yaml.safe_dump(lock, sort_keys=False).encode()

        index = pygit2.Index()
        index.read_tree(tip.tree)
        for path, data in files.items():
            index.add(pygit2.IndexEntry(path, self.repo.create_blob(data), pygit2.enums.FileMode.BLOB))
        tree = index.write_tree(self.repo)
        sig = pygit2.Signature("lineage bench", "bench@lineage.invalid")
        message = (f"{gen}-a: PASS\n\nGeneration: {gen}\nParent: {parent['generation']}\nVerdict: PASS\n"
                   f"Gate-Report: {digest_bytes(gate_b)}\n")
        commit = self.repo.create_commit(None, sig, sig, message, tree, [tip.id])
        # branch and frozen tag through git, as `lineage propose` makes them (the hook's fast path)
        common.sh(["git", "branch", branch, str(commit)], self.root)
        frozen = {"schema_version": 1, "generation": gen, "branch": branch, "commit": str(commit),
                  "parent": parent["generation"], "verdict": "PASS", "failed": [], "composite": report.composite,
                  "reason": None}
        common.sh(["git", "tag", "-a", f"lineage/frozen/{gen}-a", "-m", canonical_json(frozen).decode(), str(commit)],
                  self.root)
        return gen, branch, str(commit)

    def check(self, commit: str) -> float:
        """The arbiter's verdict on moving main to commit (raises if refused); its wall seconds."""
        import pygit2

        from lineage.guard.arbiter import check_move

        repo = pygit2.Repository(str(self.root))  # fresh: no cached refs
        t = time.perf_counter()
        decision = check_move(repo, str(self.tip().id), commit, "main")
        elapsed = time.perf_counter() - t
        if decision.verdict != "PASS":
            raise RuntimeError(f"arbiter: {decision}")
        return elapsed


def link_kind(store: Path, lock: dict) -> str:
    """How DVC put models/child/model.safetensors in place: hardlink, symlink, or copy/reflink."""
    from lineage.adapters import dvc

    cache = dvc.cache_dir(store)
    listing = {e["relpath"]: e["md5"] for e in dvc.dir_listing(cache, lock["md5"])}
    work = store / "models" / "child" / "model.safetensors"
    obj = dvc.cache_path(cache, listing["model.safetensors"])
    if work.is_symlink():
        return "symlink"
    ws, cs = work.stat(), obj.stat()
    if (ws.st_ino, ws.st_dev) == (cs.st_ino, cs.st_dev):
        return f"hardlink (st_nlink={ws.st_nlink})"
    return "copy or reflink (own inode, st_nlink=1)"


def verify_files(root: Path) -> list[Path]:
    """The distinct cache files `lineage verify` re-hashes: every promoted generation's child files."""
    import pygit2

    from lineage.adapters import dvc, git
    from lineage.store.refs import promoted_history
    from lineage.store.weights import child_md5

    repo = pygit2.Repository(str(root))
    cache = dvc.cache_dir(root)
    files = set()
    for _gen, commit, _kind in promoted_history(repo, git.protected_branch(repo)):
        for e in dvc.dir_listing(cache, child_md5(repo, commit)):
            if e["relpath"] not in ("hashes.csv",):
                files.add(dvc.cache_path(cache, e["md5"]))
    return sorted(files)


def measure_verify(root: Path, repeats: int) -> dict:
    """`lineage verify` against `sha256sum` of the same files, alternated, warm page cache for both."""
    files = verify_files(root)
    total = sum(f.stat().st_size for f in files)
    common.sh(common.lineage_cmd("-q", "verify"), root)  # warm-up, and it must pass
    samples = {"lineage verify": [], "sha256sum": []}
    for _ in range(repeats):
        samples["lineage verify"].append(common.timed(common.lineage_cmd("-q", "verify"), root))
        samples["sha256sum"].append(common.timed(["sha256sum", *map(str, files)], root))
    med = {k: common.median(v) for k, v in samples.items()}
    return {"files": len(files), "bytes": total, "median_s": med,
            "mib_per_s": {k: total / 2**20 / v for k, v in med.items()},
            "throughput_vs_sha256sum": med["sha256sum"] / med["lineage verify"],
            "samples": {k: common.summary(v) for k, v in samples.items()},
            "target": ">= 0.9x sha256sum, faster with several files on 2 cores"}


def fs_type(path: Path) -> str:
    proc = common.sh(["stat", "-f", "-c", "%T", str(path)], ".", check=False)
    return proc.stdout.strip() or "unknown"


def run(args) -> dict:
    sizes = [common.parse_size(s) for s in args.sizes.split(",") if s.strip()]
    repeats = args.promotion_repeats or getattr(args, "repeats", None) or 3
    keep = getattr(args, "keep", False)
    holder = common.scratch_dir(NAME, keep=keep)
    tmp = Path(holder if keep else holder.name)
    need = 3 * max(sizes) + (1 << 30)
    free = shutil.disk_usage(tmp).free
    if free < need:
        raise SystemExit(f"promotion_size: {common.human(free)} free under {tmp}, about {common.human(need)} needed")
    try:
        return _run(tmp, sizes, repeats)
    finally:
        if keep:
            print(f"kept: {tmp}")
        else:
            holder.cleanup()


def _run(tmp: Path, sizes: list[int], repeats: int) -> dict:
    common.isolate(tmp / "home")
    root = tmp / "luna"
    t = time.perf_counter()
    common.init_store(root, common.tiny_params())
    common.sh(common.lineage_cmd("-q", "propose"), root)
    common.sh(common.lineage_cmd("-q", "promote", "candidates/G000-a"), root)
    print(f"promotion_size: store with a really trained tiny G000 ready in {time.perf_counter() - t:.0f} s "
          f"({root}, {fs_type(root)}); "
          f"cache.type {common.sh([str(common.BIN / 'dvc'), 'config', 'cache.type'], root).stdout.strip()}")
    store = Store(root)
    copy_to = tmp / "cp-baseline"
    per_size = []
    for size in sizes:
        label = common.human(size)
        served = store.served()
        wb = store.make_weights(f"b{size}", size, seed=2 * size + 1, parent=served)
        gen_b, branch_b, commit_b = store.candidate(wb, served)
        store.check(commit_b)
        first_promote = common.timed(common.lineage_cmd("-q", "promote", branch_b), root)
        base = store.served()
        assert base["generation"] == gen_b, (base["generation"], gen_b)
        wx = store.make_weights(f"x{size}", size, seed=2 * size + 2, parent=base)
        samples = {"promote": [], "rollback": [], "cp -r": [], "arbiter check_move": [], "dvc checkout (no-op)": []}
        kinds = set()
        for r in range(repeats):
            gen_x, branch_x, commit_x = store.candidate(wx, base)
            samples["arbiter check_move"].append(store.check(commit_x))
            samples["promote"].append(common.timed(common.lineage_cmd("-q", "promote", branch_x), root))
            if store.served()["generation"] != gen_x:
                raise RuntimeError(f"promote of {gen_x} did not make it the served generation")
            kinds.add(link_kind(root, wx["lock"]))
            if r == 0:  # weights really in place, as recorded (untimed)
                from lineage.core.hashes import check_against

                check_against(root / "models" / "child", wx["rows"], gen_x)
            samples["rollback"].append(common.timed(
                common.lineage_cmd("-q", "rollback", "--to", gen_b, "--reason", "bench"), root))
            if store.served()["generation"] != gen_b:
                raise RuntimeError(f"rollback to {gen_b} did not make it the served generation")
            kinds.add(link_kind(root, wb["lock"]))
            # the fixed cost inside both commands: DVC starting up to find nothing to do
            samples["dvc checkout (no-op)"].append(
                common.timed([str(common.BIN / "dvc"), "checkout", "-q", "--force"], root))
            if copy_to.exists():
                common.rmtree(copy_to)
            samples["cp -r"].append(common.timed(["cp", "-r", str(root / "models" / "child"), str(copy_to)], tmp))
            common.rmtree(copy_to)
        med = {k: common.median(v) for k, v in samples.items()}
        row = {"bytes": size, "label": label, "base_generation": gen_b, "first_promote_s": first_promote,
               "setup_s_per_weights": round(wb["setup_s"], 2), "link_type": sorted(kinds),
               "median_s": med, "ratio_vs_cp": {k: med[k] / med["cp -r"] for k in ("promote", "rollback")},
               "samples": {k: common.summary(v) for k, v in samples.items()}}
        per_size.append(row)
        print(f"  {label}: promote {med['promote']:.2f} s, rollback {med['rollback']:.2f} s, "
              f"cp -r {med['cp -r']:.3f} s, "
              f"arbiter {med['arbiter check_move'] * 1000:.0f} ms; DVC linked: {', '.join(sorted(kinds))}")

    # flatness: how much each grew from the smallest to the largest size, against cp
    lo, hi = per_size[0], per_size[-1]
    growth = {k: hi["median_s"][k] / lo["median_s"][k] for k in ("promote", "rollback", "cp -r", "arbiter check_move")}
    ver = measure_verify(root, repeats)
    result = {"repeats": repeats, "filesystem": fs_type(root), "sizes": per_size, "verify": ver,
              "growth_smallest_to_largest": growth if len(per_size) > 1 else None,
              "note": "synthetic generations (weights are filler) with complete, arbiter-checked evidence; "
                      "G000 really trained"}
    path = common.write_result(NAME, result)
    print(f"== promotion_size: seconds, medians of {repeats}; baseline = cp -r models/child in the same run")
    print(common.table([[r["label"], f"{r['median_s']['promote']:.2f}", f"{r['median_s']['rollback']:.2f}",
                         f"{r['median_s']['cp -r']:.3f}", f"{r['ratio_vs_cp']['promote']:.1f}x",
                         f"{r['ratio_vs_cp']['rollback']:.1f}x", f"{r['median_s']['arbiter check_move'] * 1000:.0f}",
                         ", ".join(r["link_type"])] for r in per_size],
                       ["size", "promote s", "rollback s", "cp -r s", "promote/cp", "rollback/cp", "arbiter ms",
                        "DVC link"]))
    print("fixed cost for reference: `dvc checkout` with nothing to do takes "
          + ", ".join(f"{r['median_s']['dvc checkout (no-op)']:.2f} s ({r['label']})" for r in per_size))
    if result["growth_smallest_to_largest"]:
        g = result["growth_smallest_to_largest"]
        print(f"growth {lo['label']} -> {hi['label']} ({hi['bytes'] / lo['bytes']:.0f}x bytes): "
              f"promote {g['promote']:.2f}x, "
              f"rollback {g['rollback']:.2f}x, cp -r {g['cp -r']:.2f}x, arbiter {g['arbiter check_move']:.2f}x")
    print(f"verify: `lineage verify` re-hashed {ver['files']} files, {common.human(ver['bytes'])} (every promoted "
          f"generation) in {ver['median_s']['lineage verify']:.2f} s; `sha256sum` of the same files "
          f"{ver['median_s']['sha256sum']:.2f} s: throughput {ver['throughput_vs_sha256sum']:.2f}x sha256sum "
          f"(target {ver['target']})")
    print(f"-> {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    return common.cli_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
