"""lineage: a git-native versioned model store for language models trained again and again.

Importing this package is cheap; heavy libraries load only inside the functions that use them.
"""

from __future__ import annotations

__all__ = ["load"]


def load(store: str = ".", generation: str | None = None, path_only: bool = False):
    """Return (model, tokenizer) of a generation (default: the one the protected branch serves).

    The weights are materialised read-only from the DVC cache (fetched from the remote if needed)
    and re-hashed against the generation's hashes.csv before loading; safetensors only.
    With path_only=True, return the directory instead.
    """
    from . import record

    if generation is None:
        generation = record.status(store, check_remote=False).head_generation
        if generation is None:
            from .errors import StoreError

            raise StoreError("the protected branch serves no generation yet", "Promote one with 'lineage promote'.")
    path = record.checkout(generation, store)
    if path_only:
        return path
    from .adapters.model import load as load_model

    return load_model(path)
