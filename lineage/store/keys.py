"""Which SSH key this user signs with: $LINEAGE_SIGNING_KEY, git's lineage.signingKey, the default file.

Attestations, verdicts and approvals (guard/) and the git signatures on the tags lineage writes
(store/transaction.py) all use this one key.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..adapters import git
from ..core.errors import UsageError

KEY_ENV = "LINEAGE_SIGNING_KEY"


def default_key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "lineage" / "signing_key"


def signing_key(root: str | Path | None = None) -> Path | None:
    """The configured signing key: $LINEAGE_SIGNING_KEY, git's lineage.signingKey, the default file."""
    configured, source = os.environ.get(KEY_ENV), KEY_ENV
    if not configured and root is not None:
        configured, source = git.config_get(root, "lineage.signingKey") or "", "git config lineage.signingKey"
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise UsageError(f"{source} names {configured}, which is not a file",
                             "Point it at an SSH private key (or an agent key's .pub), or run 'lineage keys init'.")
        return path
    path = default_key_path()
    return path if path.is_file() else None
