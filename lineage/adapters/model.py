"""Model adapter: build the scratch base, load a generation, save safetensors weights.

Only this module and the training/eval adapters import torch and transformers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.errors import ParamsError, UnsafeWeightsError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

SPECIAL = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>", "unk_token": "<|unk|>"}
# A chat template in the bundled corpus's own question-and-answer form ("Q: …\nA: …"), so a chat request
# (a list of messages) to `pipeline("text-generation")` or `transformers serve` asks the model as it was
# trained; the prompt always ends at "A:", where the assistant's answer follows.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ 'Q: ' + m['content'] + '\\nA:' }}"
    "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + eos_token + '\\n' }}"
    "{% else %}{{ m['content'] + '\\n' }}{% endif %}"
    "{% endfor %}"
)


def ensure_chat_template(tok) -> None:
    """Give a tokenizer lineage's chat template unless it has one of its own (a real model's is kept)."""
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHAT_TEMPLATE


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path):
    """Train a byte-level BPE tokenizer on texts and save it as a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(sorted(set(texts)), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    ensure_chat_template(fast)
    fast.save_pretrained(out_dir)
    return fast


def build_scratch(out_dir: str | Path, seed: int, arch: dict, texts: list[str]) -> Path:
    """Make a tiny Llama from a seed with a tokenizer trained on texts; save it to out_dir."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(texts, arch["vocab_size"], out_dir)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=arch["hidden_size"], intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["num_layers"], num_attention_heads=arch["num_heads"],
        num_key_value_heads=arch["num_heads"], max_position_embeddings=arch["max_position"],
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def check_model_dir(path: str | Path) -> Path:
    """Refuse a model directory that is missing or holds anything but safetensors weights."""
    path = Path(path)
    if not path.is_dir():
        raise ParamsError("base", f"model directory {path} does not exist",
                          "Set 'base' to a local directory with config.json and *.safetensors, or 'scratch'.")
    if not (path / "config.json").is_file():
        raise ParamsError("base", f"{path} has no config.json", "Point 'base' at a transformers model directory.")
    from ..core.safety import check_weights_dir

    weights = check_weights_dir(path)
    if not weights:
        raise UnsafeWeightsError(str(path), "no *.safetensors weights found")
    return path


def load(path: str | Path, device: str = "cpu", dtype: str | None = None):
    """Load (model, tokenizer) from a local directory, safetensors only, never from a hub."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in the arbiter's and stages' output
    path = check_model_dir(path)
    torch_dtype = getattr(torch, dtype) if dtype else torch.float32
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model: Any = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, use_safetensors=True, dtype=torch_dtype,
    )
    model = model.to(device)
    model.eval()
    return model, tok


def compare_weights(a: str | Path, b: str | Path, top: int = 5) -> dict:
    """How b's weights differ from a's, by parameter, by tensor and by layer; the most changed modules.

    A tensor b has and a lacks (or shapes differ) counts as wholly changed. A module's change is its
    relative L2 change ||b - a|| / ||a|| over its tensors (a module: the tensor name without its last
    part, e.g. model.layers.3.mlp.down_proj); a layer is model.layers.N (embeddings and the final norm
    count as layers of their own).
    """
    import re

    from safetensors.torch import load_file

    ta = {k: v for f in sorted(Path(a).glob("*.safetensors")) for k, v in load_file(f).items()}
    tb = {k: v for f in sorted(Path(b).glob("*.safetensors")) for k, v in load_file(f).items()}
    total = changed = changed_tensors = 0
    modules: dict[str, list[float]] = {}  # module -> [sum of squared change, sum of squared a]
    layers: dict[str, bool] = {}
    for name, tensor in tb.items():
        total += tensor.numel()
        module = name.rsplit(".", 1)[0]
        match = re.match(r"(.*?\.layers\.\d+)\.", name)
        layer = match.group(1) if match else module
        layers.setdefault(layer, False)
        other = ta.get(name)
        if other is None or other.shape != tensor.shape:
            changed += tensor.numel()
            changed_tensors += 1
            layers[layer] = True
            modules.setdefault(module, [0.0, 0.0])[0] += float(tensor.float().pow(2).sum())
            continue
        delta = tensor.float() - other.float()
        n = int((delta != 0).sum())
        sums = modules.setdefault(module, [0.0, 0.0])
        sums[1] += float(other.float().pow(2).sum())
        if n:
            changed += n
            changed_tensors += 1
            layers[layer] = True
            sums[0] += float(delta.pow(2).sum())
    ranked = sorted(((m, (d / (w or 1e-24)) ** 0.5) for m, (d, w) in modules.items() if d), key=lambda r: -r[1])
    return {"params_changed_pct": round(100 * changed / max(total, 1), 4),
            "tensors_changed_pct": round(100 * changed_tensors / max(len(tb), 1), 4),
            "layers_changed_pct": round(100 * sum(layers.values()) / max(len(layers), 1), 4),
            "layers_changed": sum(layers.values()), "layers": len(layers),
            "most_changed": [{"module": m, "tensor": m, "relative_change": round(r, 6)} for m, r in ranked[:top]]}
