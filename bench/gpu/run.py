"""The GPU path, prepared: transformers against Unsloth on one GPU, in one run of under 8 minutes.

    bash bench/gpu/fetch_wheels.sh                      # here, with a registry: the wheel set (~33 MB)
    python bench/gpu/run.py --dry-run --out /tmp/gpu     # any CPU: checks the script and the wheel set
    python bench/gpu/run.py --out "$OUT"                 # the GPU machine (torch, transformers, peft,
                                                         # accelerate, triton; no network)

On the GPU machine it installs the wheels in bench/gpu/wheels/ with `pip install --no-deps --no-index`
(unsloth_zoo asks for a certifi newer than some registries hold; every other dependency is already
there or not needed), builds a random-initialised Llama of about 0.5B parameters locally (no hub),
tokenises the bundled corpus with lineage's scratch tokenizer, and measures on the same batches and
settings (LoRA r=16 on every projection, bf16, AdamW, no gradient checkpointing) the tokens/s and
peak GPU memory of a plain transformers + peft model and of Unsloth's FastLanguageModel; then one
distillation step on Unsloth (the random base as a frozen teacher, KL on temperature-softened
logits); and Unsloth in 4-bit where bitsandbytes is importable (its 43 MB wheel does not fit one
call with the rest: see the note on 4-bit below). A phase that cannot run records why and the
others still run. Everything is written to --out: results.json and log.txt.

--dry-run (a CPU): a tiny model, two steps of the transformers phase in fp32, the Unsloth phases
recorded as skipped, and the wheel set resolved with `pip install --dry-run --no-deps --no-index`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("UNSLOTH_RETURN_LOGITS", "1")  # the distillation step needs the student's logits

WHEELS = Path(__file__).parent / "wheels"
WHEEL_SET = ["unsloth==2026.10.9", "unsloth_zoo==2026.10.9", "trl==1.14.2", "datasets==4.8.5"]
# 4-bit needs bitsandbytes==0.50.2 (a 43 MB wheel: with the set above it passes the 64 MiB a call may carry).
# Install it in a second call to the still-warm machine (fetch_wheels.sh --4bit, then
# pip install --no-deps --no-index bench/gpu/wheels/bitsandbytes-*.whl) and run again; without it
# the 4-bit phase is skipped and says so.
# About 0.5B parameters, Qwen2.5-0.5B's shape as a Llama (grouped-query attention, tied embeddings).
FULL = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": 32000, "max_position_embeddings": 2048}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 2048, "max_position_embeddings": 256}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Run:
    """The output folder: a log and one results record, rewritten after every phase."""

    def __init__(self, out: Path, dry_run: bool, budget_s: float) -> None:
        self.out, self.dry_run, self.deadline = out, dry_run, time.monotonic() + budget_s
        out.mkdir(parents=True, exist_ok=True)
        self.log_file = open(out / "log.txt", "a")
        self.results: dict = {"dry_run": dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "machine": machine(), "phases": {}}

    def log(self, line: str) -> None:
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def phase(self, name: str, fn, *args) -> dict:
        started = time.monotonic()
        self.log(f"== {name} ({self.left():.0f} s left)")
        try:
            record = fn(*args) if self.left() > 20 else {"status": "skipped", "reason": "out of time"}
        except Exception as exc:  # noqa: BLE001 - a phase that cannot run says why; the others still run
            record = {"status": "error", "reason": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            self.log(traceback.format_exc())
        record.setdefault("status", "ok")
        record["seconds"] = round(time.monotonic() - started, 2)
        self.results["phases"][name] = record
        self.log(f"   {json.dumps(record)}")
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2) + "\n")
        return record


def machine() -> dict:
    """Versions from package metadata: importing transformers here would come before Unsloth's patches."""
    from importlib import metadata

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    for name in ("transformers", "peft", "accelerate", "triton", "unsloth", "unsloth_zoo", "trl", "datasets",
                 "bitsandbytes"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = "missing"
    return info


def import_unsloth() -> dict:
    """Unsloth first, before anything imports transformers (it patches transformers as it loads)."""
    import unsloth

    return {"version": getattr(unsloth, "__version__", "?")}


def pip(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return {"status": "ok" if proc.returncode == 0 else "error", "pip": " ".join(args[:3]), "tail": tail}


def install(specs: list[str], dry_run: bool) -> dict:
    """The wheel set from bench/gpu/wheels, no dependencies, no index (nothing is reachable)."""
    missing = [s for s in specs if not list(WHEELS.glob(s.split("==")[0].replace("-", "_") + "-*.whl"))]
    if missing and dry_run:  # no wheels fetched here: resolve the same set against the package index
        record = pip(["install", "--dry-run", "--no-deps", *specs])
        record["resolved_against"] = "the package index (bench/gpu/wheels/ is empty)"
        return record
    if missing:
        return {"status": "error", "reason": f"no wheel in {WHEELS} for {', '.join(missing)}: "
                                              "run bash bench/gpu/fetch_wheels.sh first"}
    args = ["install", "--no-deps", "--no-index", "--find-links", str(WHEELS), *(["--dry-run"] if dry_run else []),
            *specs]
    record = pip(args)
    record["wheels_mb"] = round(sum(p.stat().st_size for p in WHEELS.glob("*.whl")) / 2**20, 1)
    return record


def build_model(out: Path, shape: dict) -> tuple[Path, int]:
    """A random-initialised Llama with lineage's scratch tokenizer trained on the bundled corpus."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lineage.adapters.model import train_tokenizer
    from lineage.core import corpus

    path = out / "model"
    tok = train_tokenizer(corpus.all_text(), min(shape["vocab_size"], 4096), path)
    config = LlamaConfig(**shape, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path, safe_serialization=True)
    return path, params


def batches(path: Path, seq_len: int, batch: int, count: int):
    """The same token batches for every backend: the corpus, tokenised and packed, repeated."""
    import torch
    from transformers import AutoTokenizer

    from lineage.core import corpus

    tok = AutoTokenizer.from_pretrained(path)
    ids: list[int] = []
    for text in corpus.all_text():
        ids += tok(text).input_ids + [tok.eos_token_id]
    need = seq_len * batch
    while len(ids) < need * count:
        ids += ids
    flat = torch.tensor(ids[:need * count]).view(count, batch, seq_len)
    return [flat[i] for i in range(count)]


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")


def train_loop(model, data, device: str, warmup: int) -> dict:
    """AdamW on the LoRA weights; tokens/s over the steps after warmup, peak memory over all."""
    import torch

    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    losses, started = [], None
    for step, batch in enumerate(data):
        if step == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        batch = batch.to(device)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    if device == "cuda":
        torch.cuda.synchronize()
    timed = len(data) - warmup
    elapsed = time.perf_counter() - started if started else float("nan")
    tokens = timed * data[0].numel()
    return {"steps": len(data), "timed_steps": timed, "tokens_per_s": round(tokens / elapsed, 1),
            "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None,
            "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4)}


def transformers_backend(path: Path, data, device: str, dtype_name: str, warmup: int) -> dict:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype_name)).to(device)
    model = get_peft_model(model, lora_config())
    record = train_loop(model, data, device, warmup)
    del model
    free(device)
    return record


def unsloth_model(path: Path, four_bit: bool):
    from unsloth import FastLanguageModel  # noqa: I001  (Unsloth patches transformers when imported first)
    import torch

    model, _ = FastLanguageModel.from_pretrained(str(path), dtype=torch.bfloat16, load_in_4bit=four_bit,
                                                 max_seq_length=2048, local_files_only=True)
    return FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS,
                                            use_gradient_checkpointing=False, random_state=0)


def unsloth_backend(path: Path, data, warmup: int, four_bit: bool = False) -> dict:
    model = unsloth_model(path, four_bit)
    record = train_loop(model, data, "cuda", warmup)
    del model
    free("cuda")
    return record


def unsloth_distill(path: Path, data, steps: int, temperature: float = 2.0) -> dict:
    """Distillation on Unsloth: the base as a frozen teacher; KL(teacher || student) at a temperature."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    student = unsloth_model(path, False)
    teacher = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to("cuda").eval()
    optim = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=2e-4)
    torch.cuda.reset_peak_memory_stats()
    losses, started = [], time.perf_counter()
    for batch in data[:steps]:
        batch = batch.to("cuda")
        with torch.no_grad():
            target = F.log_softmax(teacher(input_ids=batch).logits.float() / temperature, -1)
        logits = student(input_ids=batch).logits.float()
        loss = F.kl_div(F.log_softmax(logits / temperature, -1), target, log_target=True,
                        reduction="batchmean") * temperature ** 2
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    torch.cuda.synchronize()
    return {"steps": len(losses), "seconds_per_step": round((time.perf_counter() - started) / len(losses), 3),
            "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "losses": [round(x, 4) for x in losses]}


def free(device: str) -> None:
    import gc

    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the one output folder (results.json, log.txt)")
    parser.add_argument("--dry-run", action="store_true", help="a CPU check: tiny model, wheels resolved only")
    parser.add_argument("--budget-s", type=float, default=450, help="wall-clock budget (stop phases after it)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per backend (the first 5 untimed)")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    import torch

    run = Run(args.out, args.dry_run, args.budget_s)
    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        run.log("no CUDA device: run with --dry-run on a CPU")
        return 2
    run.phase("install", install, WHEEL_SET, args.dry_run)
    if cuda:
        run.phase("import_unsloth", import_unsloth)
        run.results["machine"] = machine()  # now with the installed wheels
    shape, steps, warmup = (FULL, args.steps, 5) if cuda else (TINY, 2, 0)
    seq_len, batch = (args.seq_len, args.batch) if cuda else (64, 2)
    built = run.phase("build_model", lambda: dict(zip(("path", "parameters"), map(str, build_model(args.out, shape)),
                                                      strict=True)))
    if built["status"] != "ok":
        return 1
    path = Path(built["path"])
    run.results["settings"] = {"shape": shape, "seq_len": seq_len, "batch": batch, "steps": steps, "warmup": warmup,
                               "lora": {"r": 16, "alpha": 32, "targets": TARGETS},
                               "dtype": "bfloat16" if cuda else "float32", "gradient_checkpointing": False}
    data = batches(path, seq_len, batch, steps)
    run.phase("transformers", transformers_backend, path, data, "cuda" if cuda else "cpu",
              "bfloat16" if cuda else "float32", warmup)
    if not cuda:
        for name in ("unsloth", "unsloth_distill", "unsloth_4bit"):
            run.results["phases"][name] = {"status": "skipped", "reason": "dry run: no GPU"}
    else:
        run.phase("unsloth", unsloth_backend, path, data, warmup)
        run.phase("unsloth_distill", unsloth_distill, path, data, 3)
        try:
            import bitsandbytes  # noqa: F401

            run.phase("unsloth_4bit", unsloth_backend, path, data, warmup, True)
        except ImportError:
            run.results["phases"]["unsloth_4bit"] = {"status": "skipped", "reason": "bitsandbytes not installed"}
    phases = run.results["phases"]
    if phases.get("transformers", {}).get("status") == "ok" and phases.get("unsloth", {}).get("status") == "ok":
        t, u = phases["transformers"], phases["unsloth"]
        run.results["unsloth_vs_transformers"] = {"speed": round(u["tokens_per_s"] / t["tokens_per_s"], 3),
                                                  "memory": round(u["peak_memory_mb"] / t["peak_memory_mb"], 3)}
    run.results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (args.out / "results.json").write_text(json.dumps(run.results, indent=2) + "\n")
    needed = ["install", "build_model", "transformers"] + ([] if args.dry_run else ["import_unsloth", "unsloth"])
    failed = [n for n in needed if phases.get(n, {}).get("status") != "ok"]
    run.log(f"results: {args.out / 'results.json'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
