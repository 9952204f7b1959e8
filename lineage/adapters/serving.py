"""Serving adapter: one generation's model in memory, answering completions and chats.

Only the adapters import torch and transformers; the cut-over, shadow and burn-in logic that
decides which Engine answers lives in lineage/loop/serve.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import BadRequestError

# Used only when a generation's tokenizer has no chat template of its own (tokenizers made before
# templates were added to them): one "role: content" line per message, then "assistant:".
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@dataclass(frozen=True)
class Ask:
    """One request, already validated: a prompt (completion) or messages (chat) and how to decode."""

    kind: str  # "completion" | "chat"
    prompt: str | None
    messages: tuple[tuple[str, str], ...]
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None


@dataclass(frozen=True)
class Answer:
    """What one Engine said, and who it was."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    generation: str
    commit: str
    seconds: float


class Engine:
    """One generation loaded (model, tokenizer) with where it came from; answers one request at a time."""

    def __init__(self, model: Any, tok: Any, generation: str, commit: str, md5: str, path: Path) -> None:
        self.model, self.tok = model, tok
        self.generation, self.commit, self.md5, self.path = generation, commit, md5, path
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        self.templated = bool(getattr(tok, "chat_template", None))

    def render(self, ask: Ask) -> str:
        """The text the model continues: the prompt, or the messages through the chat template."""
        if ask.kind == "completion":
            return ask.prompt or ""
        messages = [{"role": role, "content": content} for role, content in ask.messages]
        return self.tok.apply_chat_template(messages, chat_template=None if self.templated else DEFAULT_CHAT_TEMPLATE,
                                            tokenize=False, add_generation_prompt=True)

    def answer(self, ask: Ask) -> Answer:
        """Decode an answer (greedy at temperature 0); stop at EOS, max_tokens or a stop string.

        Raises:
            BadRequestError: the prompt does not fit this generation's context.
        """
        import torch

        start = time.perf_counter()
        text = self.render(ask)
        ids = self.tok(text, add_special_tokens=False).input_ids
        if not ids:
            ids = [self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id]
        budget = ask.max_tokens
        if self.context and len(ids) + budget > self.context:
            if len(ids) >= self.context:
                raise BadRequestError(f"the prompt is {len(ids)} tokens; {self.generation} reads at most "
                                      f"{self.context}", "prompt", "context_length_exceeded")
            budget = self.context - len(ids)
        sample = ask.temperature > 0
        extra: dict[str, Any] = {"do_sample": sample}
        if sample:
            extra.update(temperature=ask.temperature, top_p=ask.top_p)
            if ask.seed is not None:
                torch.manual_seed(ask.seed)
        with torch.no_grad():
            out = self.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                      dtype=torch.long), max_new_tokens=budget, pad_token_id=self.tok.pad_token_id,
                                      eos_token_id=self.tok.eos_token_id, **extra)
        new = out[0][len(ids):].tolist()
        finish = "length"
        if new and new[-1] == self.tok.eos_token_id:
            new, finish = new[:-1], "stop"
        answer = self.tok.decode(new, skip_special_tokens=True)
        for stop in ask.stop:
            cut = answer.find(stop)
            if cut >= 0:
                answer, finish = answer[:cut], "stop"
        if finish == "length" and len(new) < budget:
            finish = "stop"
        return Answer(answer, finish, len(ids), len(new), self.generation, self.commit,
                      time.perf_counter() - start)

def load_engine(path: str | Path, generation: str, commit: str, md5: str) -> Engine:
    """Load a materialised, hash-checked generation directory (safetensors only) for serving."""
    from transformers.utils import logging as hf_logging

    from .model import load

    hf_logging.disable_progress_bar()  # a server's stderr is its log, not a terminal
    model, tok = load(path)
    return Engine(model, tok, generation, commit, md5, Path(path))
