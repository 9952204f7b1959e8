"""Storage per generation: DVC cache growth of a full-weights child against a LoRA child.

A tiny store trains and promotes G000 (real training), registers era 1, then proposes two
children of G000 on the same data: `train.finetune=full` and `train.finetune=lora`. For each,
the bytes the DVC cache grew by are measured (distinct files under .dvc/cache, before and after),
and reported as bytes and as a share of the child's weights. The baseline is the model itself:
the size of the child's weights files (what a plain copy per generation would cost).

LoRA children are stored merged (`merge_and_unload`): every targeted matrix changes, so content
addressing cannot share them with the parent. The result also states what an adapter-only
record would take (r·(in+out) parameters per targeted linear layer, computed from the child's
own tensor shapes); that mode is not built.

Usage: python bench/storage.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "storage"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("storage")
    g.add_argument("--storage-lora-r", type=int, default=None, metavar="R", help="LoRA rank (default: params.yaml's)")


def cache_files(store: Path) -> dict[str, int]:
    """Every file in the store's DVC cache: path -> bytes."""
    out = {}
    for dirpath, _dirs, files in os.walk(store / ".dvc" / "cache"):
        for name in files:
            path = os.path.join(dirpath, name)
            out[path] = os.lstat(path).st_size
    return out


def child_objects(store: Path, rev: str) -> dict[str, str]:
    """relpath -> cache path of the child in rev's dvc.lock ('.dir' for the directory object)."""
    import yaml

    from lineage.adapters import dvc

    lock = yaml.safe_load(common.sh(["git", "show", f"{rev}:dvc.lock"], store).stdout)
    md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/child")
    cache = dvc.cache_dir(store)
    return {".dir": str(dvc.cache_path(cache, md5)),
            **{e["relpath"]: str(dvc.cache_path(cache, e["md5"])) for e in dvc.dir_listing(cache, md5)}}


def adapter_bytes(weights: Path, r: int) -> int:
    """Bytes an fp32 LoRA adapter of rank r over every 2-D linear weight in the decoder layers would take."""
    from safetensors import safe_open

    params = 0
    with safe_open(str(weights), framework="pt") as f:
        for name in f.keys():
            if ".layers." in name and name.endswith("proj.weight"):
                out_f, in_f = f.get_slice(name).get_shape()
                params += r * (in_f + out_f)
    return params * 4


def run(args) -> dict:
    import yaml

    with common.scratch_dir(NAME) as tmp:
        tmp = Path(tmp)
        common.isolate(tmp / "home")
        store = common.init_store(tmp / "luna", common.tiny_params())
        t = time.perf_counter()
        common.sh(common.lineage_cmd("-q", "propose"), store)
        common.sh(common.lineage_cmd("-q", "promote", "candidates/G000-a"), store)
        common.sh(common.lineage_cmd("corpus", "write", "1", str(tmp / "era1.jsonl")), store)
        common.sh(common.lineage_cmd("-q", "data", "add", str(tmp / "era1.jsonl")), store)
        common.sh(common.lineage_cmd("corpus", "exam", "1", str(tmp / "exam1.jsonl")), store)
        common.sh(common.lineage_cmd("-q", "exam", "add", str(tmp / "exam1.jsonl")), store)
        common.sh(common.lineage_cmd("-q", "change", "--reason", "the exam of era 1"), store)
        print(f"storage: tiny G000 trained and promoted in {time.perf_counter() - t:.0f} s")
        r = args.storage_lora_r or yaml.safe_load((store / "params.yaml").read_text())["train"]["lora_r"]
        g000_weights = os.path.getsize(child_objects(store, "main")["model.safetensors"])
        rows = []
        for name, finetune in (("f", "full"), ("l", "lora")):
            before = cache_files(store)
            overrides = (["-S", f"train.finetune={finetune}"]
                         + (["-S", f"train.lora_r={r}"] if finetune == "lora" else []))
            common.sh(common.lineage_cmd("-q", "propose", "--name", name, *overrides), store)
            after = cache_files(store)
            new = {p: n for p, n in after.items() if p not in before}
            branch = common.sh(["git", "for-each-ref", "--sort=-creatordate", "--count=1", "--format=%(refname:short)",
                                "refs/heads/candidates/"], store).stdout.strip()
            objects = child_objects(store, branch)
            child_new = sum(n for p, n in new.items() if p in set(objects.values()))
            weights = Path(objects["model.safetensors"])
            w = weights.stat().st_size
            rows.append({"finetune": finetune, "candidate": branch, "child_cache_growth_bytes": child_new,
                         "run_cache_growth_bytes": sum(new.values()), "new_cache_files": len(new),
                         "child_weights_bytes": w, "share_of_model": child_new / w,
                         "adapter_only_bytes": adapter_bytes(weights, r) if finetune == "lora" else None})
    result = {"model_weights_bytes_g000": g000_weights, "lora_r": r, "children": rows,
              "note": "tiny Llama from the bundled corpus; LoRA is merged into the child (stored as full weights); "
                      "adapter_only_bytes is a computed figure for a mode that is not built"}
    path = common.write_result(NAME, result)
    print("== storage: DVC cache growth per generation; baseline = the child's weights (a copy per generation)")
    print(common.table([[x["finetune"], common.human(x["child_cache_growth_bytes"]),
                         common.human(x["run_cache_growth_bytes"]), x["new_cache_files"],
                         common.human(x["child_weights_bytes"]), f"{x['share_of_model']:.2f}x",
                         common.human(x["adapter_only_bytes"]) if x["adapter_only_bytes"] else "-"] for x in rows],
                       ["finetune", "child growth", "whole run", "new files", "weights", "child / weights",
                        "adapter-only would be"]))
    print("child growth: new cache objects of models/child; whole run: also prepared data and other outs")
    print(f"-> {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    return common.cli_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
