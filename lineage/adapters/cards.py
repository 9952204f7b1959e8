"""Hugging Face model cards through huggingface_hub: ModelCard, ModelCardData, EvalResult.

Core (core/cards.py) decides what a card says as plain data; this module only hands it to the
library, so the YAML front matter is the Hub's own and `ModelCard.load` reads back every field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def render(metadata: dict[str, Any], body: str) -> str:
    """A model card's text: huggingface_hub's metadata block for metadata, then the Markdown body."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    fields = dict(metadata)
    results = [EvalResult(**r) for r in fields.pop("eval_results", [])]
    data = ModelCardData(eval_results=results or None, **fields)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def write(path: str | Path, metadata: dict[str, Any], body: str) -> None:
    """Write a model card to path (see render)."""
    Path(path).write_text(render(metadata, body), encoding="utf-8")

