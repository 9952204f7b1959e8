"""Evaluation adapter: the four probes, scored the same way for child and parent.

Deterministic: no sampling (greedy decoding), fixed seed, eval mode, batched.
"""

from __future__ import annotations

import math
import re

import torch


def seed(value: int) -> None:
    """Seed torch's generator: evaluation is deterministic."""
    torch.manual_seed(value)


def _pad(seqs: list[list[int]], pad_id: int, left: bool = False):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if left:
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
        else:
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
    return ids, mask


def _encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


@torch.no_grad()
def continuation_logprobs(model, tok, pairs: list[tuple[str, str]], batch_size: int) -> list[float]:
    """Sum of log-probabilities of each continuation given its prompt.

    Prompt and continuation are tokenised apart and joined, so the continuation's tokens are
    the same whichever prompt precedes it.
    """
    out: list[float] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        encoded = [(_encode(tok, p), _encode(tok, c)) for p, c in chunk]
        ids, mask = _pad([p + c for p, c in encoded], tok.pad_token_id)
        logprobs = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        for row, (p, c) in enumerate(encoded):
            positions = torch.arange(len(p), len(p) + len(c))
            targets = ids[row, positions]
            out.append(float(logprobs[row, positions - 1].gather(-1, targets[:, None]).sum()))
    return out


def choice_accuracy(model, tok, probes: list[dict], batch_size: int) -> tuple[float, list[bool]]:
    """Accuracy of likelihood ranking among each probe's choices."""
    if not probes:
        return 0.0, []
    pairs = [(p["prompt"], c) for p in probes for c in p["choices"]]
    scores = continuation_logprobs(model, tok, pairs, batch_size)
    correct, i = [], 0
    for p in probes:
        n = len(p["choices"])
        mine = scores[i:i + n]
        i += n
        correct.append(max(range(n), key=lambda k: mine[k]) == p["answer"])
    return sum(correct) / len(correct), correct


@torch.no_grad()
def greedy(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy completions, batched with left padding."""
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        ids, mask = _pad([_encode(tok, p) for p in chunk], tok.pad_token_id, left=True)
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        out.extend(tok.decode(g[ids.shape[1]:], skip_special_tokens=True) for g in gen)
    return out


def law_check(output: str, rule: dict) -> str | None:
    """Return why an output breaks its rule, or None when it keeps it."""
    bad = rule.get("must_not_match")
    if bad and re.search(bad, output, flags=re.IGNORECASE):
        return f"matched forbidden pattern /{bad}/"
    good = rule.get("must_match")
    if good and not re.search(good, output, flags=re.IGNORECASE):
        return f"did not match required pattern /{good}/"
    return None


@torch.no_grad()
def token_distributions(model, tok, texts: list[str], batch_size: int) -> list[torch.Tensor]:
    """Next-token probability distributions at every position of each text."""
    out: list[torch.Tensor] = []
    for start in range(0, len(texts), batch_size):
        chunk = [_encode(tok, t) for t in texts[start:start + batch_size]]
        ids, mask = _pad(chunk, tok.pad_token_id)
        probs = model(input_ids=ids, attention_mask=mask).logits.float().softmax(-1)
        out.extend(probs[i, :len(s)] for i, s in enumerate(chunk))
    return out


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-row Jensen–Shannon divergence, base 2, in [0, 1]."""
    m = 0.5 * (p + q)

    def kl(a, b):
        return torch.where(a > 0, a * (torch.log2(a.clamp_min(1e-30)) - torch.log2(b.clamp_min(1e-30))), 0.0).sum(-1)

    return (0.5 * kl(p, m) + 0.5 * kl(q, m)).clamp(0.0, 1.0)


def tone_drift(child, parent, tok, texts: list[str], batch_size: int) -> float:
    """Mean per-token JS divergence between child and parent over the voice texts."""
    if not texts:
        return 0.0
    if child.config.vocab_size != parent.config.vocab_size:
        return 1.0  # a different vocabulary is a different voice altogether
    total, count = 0.0, 0
    for c, p in zip(token_distributions(child, tok, texts, batch_size),
                    token_distributions(parent, tok, texts, batch_size), strict=True):
        js = js_divergence(c, p)
        total += float(js.sum())
        count += js.numel()
    return total / max(count, 1)


@torch.no_grad()
def heldout_loss(model, tok, texts: list[str], batch_size: int) -> float:
    """Mean token cross-entropy on texts never trained on."""
    if not texts:
        return float("nan")
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        chunk = [_encode(tok, t) for t in texts[start:start + batch_size]]
        ids, mask = _pad(chunk, tok.pad_token_id)
        logprobs = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        for i, s in enumerate(chunk):
            if len(s) < 2:
                continue
            target = ids[i, 1:len(s)]
            total -= float(logprobs[i, :len(s) - 1].gather(-1, target[:, None]).sum())
            count += len(s) - 1
    return total / max(count, 1)


def score_model(model, tok, probes: dict[str, list[dict]], max_new_tokens: int, batch_size: int) -> dict:
    """recall (overall and per delta), generalize, law violations, held-out loss for one model."""
    recall, recall_ok = choice_accuracy(model, tok, probes["recall"], batch_size)
    by_delta: dict[str, list[bool]] = {}
    for probe, ok in zip(probes["recall"], recall_ok, strict=True):
        by_delta.setdefault(probe["delta"], []).append(ok)
    generalize, _ = choice_accuracy(model, tok, probes["generalize"], batch_size)
    outputs = greedy(model, tok, [p["prompt"] for p in probes["law"]], max_new_tokens, batch_size)
    violations = []
    for probe, output in zip(probes["law"], outputs, strict=False):
        why = law_check(output, probe["rule"])
        if why:
            violations.append({"prompt": probe["prompt"], "output": output, "rule": probe["rule"], "why": why})
    heldout = [p["prompt"] + p["choices"][p["answer"]] for p in probes["generalize"]] + \
              [p["text"] for p in probes["tone"]]
    loss = heldout_loss(model, tok, heldout, batch_size)
    return {
        "recall": round(recall, 6), "generalize": round(generalize, 6),
        "recall_by_delta": {d: round(sum(v) / len(v), 6) for d, v in sorted(by_delta.items())},
        "law_violations": len(violations), "loss": round(loss, 6),
        "perplexity": round(math.exp(loss), 4) if math.isfinite(loss) and loss < 50 else None,
        "_violations": violations,
    }


@torch.no_grad()
def weight_change(child, parent, top: int = 5) -> dict:
    """Share of parameters and of tensors that changed, and the most-changed tensors."""
    parent_params = dict(parent.named_parameters())
    total = changed = tensors = tensors_changed = 0
    ranked = []
    for name, tensor in child.named_parameters():
        tensors += 1
        total += tensor.numel()
        before = parent_params.get(name)
        if before is None or before.shape != tensor.shape:
            changed += tensor.numel()
            tensors_changed += 1
            ranked.append((name, 1.0))
            continue
        diff = (tensor.float() - before.float())
        n = int((diff != 0).sum())
        if n:
            changed += n
            tensors_changed += 1
            ranked.append((name, float(diff.norm() / (before.float().norm() + 1e-12))))
    ranked.sort(key=lambda item: -item[1])
    return {"params_pct": round(100.0 * changed / max(total, 1), 4),
            "tensors_pct": round(100.0 * tensors_changed / max(tensors, 1), 4),
            "most_changed": [{"tensor": n, "relative_change": round(r, 6)} for n, r in ranked[:top]]}


def _normalise(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


def shadow_parity(a, b, tok, prompts: list[str], max_new_tokens: int, batch_size: int) -> dict:
    """Run two models side by side: share of prompts whose normalised answers agree, and where not."""
    left = greedy(a, tok, prompts, max_new_tokens, batch_size)
    right = greedy(b, tok, prompts, max_new_tokens, batch_size)
    differ = [{"prompt": p, "a": x.strip(), "b": y.strip()} for p, x, y in zip(prompts, left, right, strict=False)
              if _normalise(x) != _normalise(y)]
    return {"parity": round(1 - len(differ) / max(len(prompts), 1), 6), "prompts": len(prompts), "differ": differ}
