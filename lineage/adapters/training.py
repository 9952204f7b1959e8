"""Training backends: transformers + peft + trl on any machine, Unsloth on a GPU.

The budget is enforced while training by a callback that stops the run cleanly on the first
breach; the caller records the run FAILED and never takes it for a generation.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import BudgetExceededError, ParamsError
from .model import ensure_chat_template

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pick_backend(requested: str) -> str:
    """auto: Unsloth when it is installed and a GPU is present, else transformers."""
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if requested == "auto":
        return "unsloth" if has_unsloth and cuda_available() else "transformers"
    if requested == "unsloth" and not (has_unsloth and cuda_available()):
        raise ParamsError("train.backend", "unsloth needs a CUDA GPU and the 'unsloth' extra",
                          "Use 'auto' or 'transformers' here, or pip install 'lineage[unsloth]' on a GPU machine.")
    return requested


def free_cpu_threads() -> int | None:
    """Torch's CPU threads for a run: the cores other processes leave free, at least one; None when
    OMP_NUM_THREADS is set (the user's choice) or the load cannot be read.

    On a shared 2-core machine two trainings that each spin two OpenMP threads slow each other down
    many times over (measured: the README tour's first generation ran 0.3 steps/s with two threads
    beside two other trainings, while a one-thread run beside the same two finished its 600 steps, and
    all the rest of its benchmark world, in 242 s). This process counts for about one in the load
    average. The thread count can change float rounding: the log line says when it was lowered.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    try:
        cores = len(os.sched_getaffinity(0))
        others = max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):
        return None
    return max(1, min(cores, round(cores - others)))


def peak_memory_mb() -> float:
    """Peak memory of this run: GPU memory on a GPU, resident memory on a CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class TrainResult:
    """What a finished (or stopped) run used and how its loss went."""

    steps: int = 0
    tokens: int = 0
    wall_minutes: float = 0.0
    peak_memory_mb: float = 0.0
    output_mb: float = 0.0
    loss_curve: list = field(default_factory=list)
    breach: tuple | None = None  # (limit, used, allowed)
    resumed_from: str | None = None

    def usage(self) -> dict:
        return {"steps": self.steps, "tokens": self.tokens, "wall_minutes": round(self.wall_minutes, 4),
                "peak_memory_mb": round(self.peak_memory_mb, 1), "output_mb": round(self.output_mb, 3)}


log = logging.getLogger("lineage")
PROJECT_AFTER = 0.05   # warn once this share of the steps is done and the pace says the wall budget is short
CERTAIN_AFTER = 0.10   # stop early once even the fastest pace seen cannot finish in time
USAGE_FILE = "lineage_usage.json"  # in a checkpoint: the wall minutes spent before it, for a resumed run


def wall_projection(done: int, total: int, elapsed_s: float, fastest_step_s: float | None) -> tuple[float, float]:
    """(projected minutes at the average pace, minutes at the fastest pace seen) for the whole run."""
    remaining = max(total - done, 0)
    average = elapsed_s / done if done else 0.0
    fastest = fastest_step_s if fastest_step_s is not None else average
    return (elapsed_s + remaining * average) / 60, (elapsed_s + remaining * fastest) / 60


def _budget_callback(budget, result: TrainResult, started: float, progress=None, spent_minutes: float = 0.0):
    from transformers import TrainerCallback

    class BudgetCallback(TrainerCallback):
        """Stop training at the first budget breach (or when the wall budget cannot be kept); record usage."""

        def __init__(self) -> None:
            self.warned = False
            self.last: float | None = None
            self.fastest: float | None = None
            self.first_step: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            now = time.monotonic()
            if self.first_step is None:
                self.first_step = state.global_step - 1
            elif self.last is not None:
                step_s = now - self.last
                self.fastest = step_s if self.fastest is None else min(self.fastest, step_s)
            self.last = now
            result.steps = state.global_step
            result.tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            result.wall_minutes = spent_minutes + (now - started) / 60
            result.peak_memory_mb = peak_memory_mb()
            checks = (("max_steps", result.steps, budget.max_steps),
                      ("max_tokens", result.tokens, budget.max_tokens),
                      ("max_wall_minutes", round(result.wall_minutes, 4), budget.max_wall_minutes),
                      ("max_memory_mb", round(result.peak_memory_mb, 1), budget.max_memory_mb))
            for limit, used, allowed in checks:
                if used > allowed:
                    result.breach = (limit, used, allowed)
                    control.should_training_stop = True
                    control.should_save = False
                    break
            else:
                self._project(state, control, now)
            if progress:
                progress(state.global_step, state.max_steps)
            return control

        def _project(self, state, control, now: float) -> None:
            total, done = state.max_steps, state.global_step
            fresh = done - (self.first_step or 0)
            if total <= 0 or fresh < 3 or done < PROJECT_AFTER * total:
                return
            elapsed = spent_minutes * 60 + now - started
            average, floor = wall_projection(done, total, elapsed, self.fastest)
            allowed = budget.max_wall_minutes
            if average > allowed and not self.warned:
                self.warned = True
                log.warning("train: at this pace the run needs about %.1f min in all, over the wall budget of %g "
                            "min (policy.budget.max_wall_minutes): raise it on main (edit params.yaml, git add, "
                            "lineage change) or train fewer steps", average, allowed)
            if floor > allowed and done >= CERTAIN_AFTER * total:
                result.breach = ("max_wall_minutes (projected: even at the fastest pace seen, "
                                 f"{total - done} steps more cannot finish in time)", round(floor, 2), allowed)
                control.should_training_stop = True
                control.should_save = False

        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                minutes = spent_minutes + (time.monotonic() - started) / 60
                (folder / USAGE_FILE).write_text(json.dumps({"wall_minutes": minutes}))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                result.loss_curve.append([state.global_step, float(logs["loss"])])
                if progress and hasattr(progress, "note"):
                    progress.note(f"loss {float(logs['loss']):.3f}")

    return BudgetCallback()


def _spent_before(checkpoint: Path | None) -> float:
    """Wall minutes a checkpoint's run had spent when it was saved (0 for a fresh run)."""
    if checkpoint is None:
        return 0.0
    try:
        return float(json.loads((checkpoint / USAGE_FILE).read_text())["wall_minutes"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _dvclive_callback(live_dir: Path, resume: bool):
    """Training metrics through DVCLive, so `dvc plots show` and `dvc exp show` see them.

    Written under reports/train/live (declared in dvc.yaml); no experiment is saved and no
    dvc.yaml is written by DVCLive: the pipeline already owns both.
    """
    from dvclive import Live
    from transformers import TrainerCallback

    if resume:
        _drop_half_written(live_dir)
    live = Live(dir=str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=False, report=None)

    class LiveCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            values = {k: float(v) for k, v in (logs or {}).items()
                      if k in ("loss", "learning_rate", "grad_norm") and v is not None}
            if not values:
                return
            live.step = state.global_step
            for key, value in values.items():
                live.log_metric(f"train/{key}", value)
            live.log_metric("train/tokens", int(getattr(state, "num_input_tokens_seen", 0) or 0))
            live.make_summary()

        def on_train_end(self, args, state, control, **kwargs):
            live.end()

    return LiveCallback()


def _drop_half_written(live_dir: Path) -> None:
    """What a run killed mid-write left incomplete in DVCLive's folder: an empty or cut summary (DVCLive's
    resume would fail parsing it; it is written whole again at the next logged step) and a plot row
    without its line end (the resumed run would append to it)."""
    summary = live_dir / "metrics.json"
    try:
        json.loads(summary.read_text())
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        summary.unlink(missing_ok=True)
    for plot in live_dir.glob("plots/**/*.tsv"):
        text = plot.read_text()
        if text and not text.endswith("\n"):
            plot.write_text(text[:text.rfind("\n") + 1])


def _dvclive_untrained(live_dir: Path) -> None:
    """A zero-step run still gives DVC the outputs dvc.yaml declares: step 0, no tokens seen."""
    from dvclive import Live

    live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False, report=None)
    live.log_metric("train/tokens", 0)
    live.make_summary()
    live.end()


def distill_trainer_class():
    """SFTTrainer whose loss blends CE with KL to a teacher (G(N)) and a critic (G(N-1)).

    loss = α·CE + β·T²·KL(teacher‖student) + γ·T²·KL(critic‖student), over completion tokens;
    the student is called without labels so every backend (Unsloth too) returns logits.
    """
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class DistillTrainer(SFTTrainer):
        def __init__(self, *args, teacher=None, critic=None, alpha=0.5, beta=0.4, gamma=0.1, temperature=2.0,
                     **kwargs):
            super().__init__(*args, **kwargs)
            self.teacher, self.critic = teacher.eval(), critic.eval()
            self.alpha, self.beta, self.gamma, self.temperature = alpha, beta, gamma, temperature

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, mask = inputs["input_ids"], inputs.get("attention_mask")
            labels = inputs["labels"][:, 1:]
            student = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            keep = labels != -100
            ce = F.cross_entropy(student[keep], labels[keep])
            t = self.temperature
            log_student = F.log_softmax(student / t, dim=-1)

            def kl_from(other) -> torch.Tensor:
                with torch.no_grad():
                    logits = other(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                    log_other = F.log_softmax(logits / t, dim=-1)
                kl = (log_other.exp() * (log_other - log_student)).sum(-1)
                return kl[keep].mean()

            loss = self.alpha * ce + self.beta * t * t * kl_from(self.teacher) + \
                self.gamma * t * t * kl_from(self.critic)
            return (loss, None) if return_outputs else loss

    return DistillTrainer


def _dataset(records: list[dict], method: str, eos: str):
    from datasets import Dataset

    if method in ("sft", "distill"):
        rows = [{"prompt": r["prompt"] if r.get("prompt") is not None else "",
                 "completion": r["completion"] if r.get("completion") is not None else r["text"]} for r in records]
    else:
        rows = [{"text": r["text"] + eos} for r in records]
    return Dataset.from_list(rows)


def _load(parent_dir: Path, backend: str, train_params: dict):
    """Load the parent for training with the chosen backend, LoRA-wrapped if asked."""
    if backend == "unsloth":
        from .model import check_model_dir

        check_model_dir(parent_dir)  # safetensors only, before Unsloth opens anything
        if train_params["method"] == "distill":
            # Unsloth reads this when it is imported: without it the student returns no logits.
            os.environ["UNSLOTH_RETURN_LOGITS"] = "1"
        from unsloth import FastLanguageModel  # noqa: I001  (must come before transformers)

        model, tok = FastLanguageModel.from_pretrained(
            model_name=str(parent_dir), max_seq_length=train_params["max_length"], dtype=None,
            load_in_4bit=False, local_files_only=True)
        if train_params["finetune"] == "lora":
            model = FastLanguageModel.get_peft_model(
                model, r=train_params["lora_r"], lora_alpha=train_params["lora_alpha"],
                lora_dropout=train_params["lora_dropout"], random_state=0,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        return model, tok
    from .model import load

    model, tok = load(parent_dir)
    model.train()
    if train_params["finetune"] == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=train_params["lora_r"], lora_alpha=train_params["lora_alpha"],
            lora_dropout=train_params["lora_dropout"], target_modules="all-linear", task_type="CAUSAL_LM"))
    return model, tok


def _breach(result: TrainResult, limit: str, used, allowed) -> BudgetExceededError:
    """A budget error that carries what the run used, for the FAILED record."""
    err = BudgetExceededError(limit, used, allowed)
    err.usage = result.usage()
    err.loss_curve = result.loss_curve
    return err


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _resume_point(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint, by step number; half-written ones are removed.

    A run killed while saving leaves checkpoint-N without its trainer_state.json (the Trainer
    writes it last); resuming from that would crash, so fall back to the one before.
    """
    import json

    complete = []
    for path in checkpoint_dir.glob("checkpoint-*") if checkpoint_dir.is_dir() else ():
        step = path.name.partition("-")[2]
        if not (path.is_dir() and step.isdigit()):
            continue
        try:
            json.loads((path / "trainer_state.json").read_text())
            complete.append((int(step), path))
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)
    return max(complete)[1] if complete else None


def train(parent_dir: Path, records: list[dict], train_params: dict, seed: int, budget, backend: str,
          out_dir: Path, checkpoint_dir: Path, progress=None, critic_dir: Path | None = None,
          live_dir: Path | None = None) -> TrainResult:
    """Train a child from parent_dir on records; save safetensors weights into out_dir.

    Raises BudgetExceededError (after stopping cleanly) on any breach; out_dir is then absent.
    """
    import torch
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    started = time.monotonic()
    result = TrainResult()
    set_seed(seed)
    threads = free_cpu_threads() if not torch.cuda.is_available() else None
    if threads is not None and threads < torch.get_num_threads():
        log.info("train: %d CPU thread(s): the machine is busy (load %.1f on %d cores)", threads,
                 os.getloadavg()[0], len(os.sched_getaffinity(0)))
        torch.set_num_threads(threads)
    parent_mb = _dir_mb(parent_dir)
    if parent_mb > budget.max_output_mb * (1.0 if train_params["finetune"] == "full" else 4.0):
        raise BudgetExceededError("max_output_mb (too small to start: the parent alone is larger)",
                                  round(parent_mb, 2), budget.max_output_mb)
    model, tok = _load(parent_dir, backend, train_params)
    if peak_memory_mb() > budget.max_memory_mb:
        raise BudgetExceededError("max_memory_mb (too small to start: loading the parent used more)",
                                  round(peak_memory_mb(), 1), budget.max_memory_mb)

    dataset = _dataset(records, train_params["method"], tok.eos_token)
    on_cpu = not torch.cuda.is_available()
    resume = _resume_point(checkpoint_dir)
    spent = _spent_before(resume)
    if resume:
        result.resumed_from = str(resume)
        log.info("train: resuming from %s (%.2f min already spent count against the budget)", resume.name, spent)
    config = SFTConfig(
        output_dir=str(checkpoint_dir), use_cpu=on_cpu, bf16=not on_cpu and torch.cuda.is_bf16_supported(),
        fp16=False, gradient_checkpointing=False, per_device_train_batch_size=train_params["batch_size"],
        learning_rate=train_params["learning_rate"], max_steps=max(train_params["max_steps"], 0) or -1,
        num_train_epochs=0 if train_params["max_steps"] == 0 else 1,
        lr_scheduler_type=train_params["scheduler"], warmup_steps=train_params["warmup_steps"],
        logging_steps=max(1, train_params["max_steps"] // 30), logging_first_step=True,
        save_strategy="steps", save_steps=train_params["checkpoint_every"], save_total_limit=1,
        report_to=[], seed=seed, data_seed=seed, max_length=train_params["max_length"], packing=False,
        dataset_text_field="text", dataloader_num_workers=0, disable_tqdm=True,
        include_num_input_tokens_seen=True, completion_only_loss=train_params["method"] in ("sft", "distill") or None,
    )
    if train_params["max_steps"] > 0:
        kwargs = dict(model=model, args=config, train_dataset=dataset, processing_class=tok,
                      callbacks=[_budget_callback(budget, result, started, progress, spent)]
                      + ([_dvclive_callback(live_dir, bool(resume))] if live_dir else []))
        if train_params["method"] == "distill":
            from .model import load as load_frozen

            device = "cpu" if on_cpu else "cuda"
            teacher, _ = load_frozen(parent_dir, device)
            critic = load_frozen(critic_dir, device)[0] if critic_dir else teacher
            trainer = distill_trainer_class()(
                teacher=teacher, critic=critic, alpha=train_params["distill_alpha"],
                beta=train_params["distill_beta"], gamma=train_params["distill_gamma"],
                temperature=train_params["distill_temperature"], **kwargs)
        else:
            trainer = SFTTrainer(**kwargs)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        model = trainer.model
    elif live_dir:
        _dvclive_untrained(live_dir)
    if result.breach:
        raise _breach(result, *result.breach)

    if train_params["finetune"] == "lora":
        model = model.merge_and_unload()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    ensure_chat_template(tok)  # a generation answers chat requests (a parent made before templates had none)
    tok.save_pretrained(out_dir)
    result.output_mb = _dir_mb(out_dir)
    result.wall_minutes = spent + (time.monotonic() - started) / 60
    result.peak_memory_mb = peak_memory_mb()
    if result.output_mb > budget.max_output_mb:
        shutil.rmtree(out_dir)
        raise _breach(result, "max_output_mb", round(result.output_mb, 3), budget.max_output_mb)
    return result
