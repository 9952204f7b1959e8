"""`lineage hub serve PATH`: a hub over smart HTTP, git's own http-backend behind lighttpd.

Every request needs a user from the hub's password file (reads too); git http-backend enables
receive-pack only for an authenticated user (``http.receivepack`` is left unset, its default), and
the pre-receive hook maps that user to a role (guard/hub_access.py). Over HTTP the server runs its
own ``git receive-pack`` in the hub: a client's ``--receive-pack`` (or ``-c core.hooksPath=…``) never
reaches it, unlike a push over the filesystem path. Runs in the foreground until SIGTERM or Ctrl-C,
which stop lighttpd.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..adapters import git, web
from ..core.errors import UsageError
from ..guard import hub as hub_mod
from ..guard import hub_access


@dataclass(frozen=True)
class Served:
    """What `lineage hub serve` served, once it stopped."""

    hub: str
    url: str
    stopped_by: str


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


def _raise_stop(signum, _frame) -> None:
    raise _Stop(signum)


def prepare(path: str | Path, port: int, bind: str) -> tuple[Path, int]:
    """Check everything before starting: the hub, its users, the web server, the port; return (hub, port).

    Raises:
        UsageError: not a hub, no users, lighttpd missing, the port taken.
    """
    hub = hub_access.require_hub(path)
    web.binary()
    if not hub_access.users(hub):
        raise UsageError(f"the hub at {hub} has no users: nobody could push or fetch",
                         f"Add one per person and agent: 'lineage hub user add {hub} NAME --role ROLE'.")
    if port == 0:
        port = web.free_port(bind)
    elif not 0 < port < 65536:
        raise UsageError(f"port {port} is not a TCP port", "Give --port between 1 and 65535 (0: any free port).")
    elif not web.port_free(bind, port):
        raise UsageError(f"port {port} on {bind} is taken: something listens there already",
                         "Pick another with --port, or stop what listens there.")
    return hub, port


def serve(path: str | Path, port: int, bind: str = "127.0.0.1", echo: Callable[[str], None] | None = None) -> Served:
    """Serve the hub at http://BIND:PORT/<hub directory name> until SIGTERM or SIGINT; echo the URL once up."""
    hub, port = prepare(path, port, bind)
    hub_mod.install_hooks(hub)  # a hub made before the push log gets its post-receive hook
    dvc_remote = git.config_get(hub, hub_mod.DVC_KEY)
    if dvc_remote:
        hub_mod.advertise(hub, dvc_remote)  # republish what the config says (it may have been edited by hand)
    host = f"[{bind}]" if ":" in bind else bind
    url = f"http://{host}:{port}/{hub.name}"
    passed = {name: os.environ.get(name, "") for name in web.PASSED}
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = None
    try:
        server = web.start(hub, hub.name, bind, port, hub_access.passwd_file(hub), git.http_backend(), passed)
        if echo:
            echo(f"serving {hub} at {url}")
            if not dvc_remote:
                echo("note: the hub advertises no DVC remote; clones cannot pull weights until "
                     f"'lineage hub dvc-remote {hub} URL'")
        code = server.process.wait()
        raise UsageError(f"lighttpd stopped by itself (exit {code}): {server.last_error() or 'no reason logged'}")
    except _Stop as stop:
        return Served(str(hub), url, str(stop))
    finally:
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
