"""lineage: a git-native versioned model store for language models trained again and again.

Importing this package is cheap; heavy libraries load only inside the functions that use them.
The layers, each importing only from those below it, are drawn in docs/architecture.md:
core < adapters < store < guard < pipeline < moves < loop < api < ui.
"""

from __future__ import annotations

__all__ = ["load"]


def load(store: str = ".", generation: str | None = None, path_only: bool = False):
    """Return (model, tokenizer) of a generation (default: the one the protected branch serves).

    The weights are materialised read-only from the DVC cache (fetched from the remote if needed)
    and re-hashed against the generation's hashes.csv before loading; safetensors only.
    With path_only=True, return the directory instead.
    """
    from .api import load as load_generation

    return load_generation(store, generation, path_only)
