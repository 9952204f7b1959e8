"""`lineage hub serve PATH`: a hub over smart HTTP (git's own http-backend behind lighttpd) and/or SSH (sshd).

Every request needs a user from the hub's password file (reads too); git http-backend enables
receive-pack only for an authenticated user (``http.receivepack`` is left unset, its default), and
the pre-receive hook maps that user to a role (guard/hub_access.py). Over HTTP the server runs its
own ``git receive-pack`` in the hub: a client's ``--receive-pack`` (or ``-c core.hooksPath=…``) never
reaches it, unlike a push over the filesystem path. Over SSH each user's key is forced to
guard/hub_ssh.py, which runs only git's own upload-pack or receive-pack on the hub. Runs in the
foreground until SIGTERM or Ctrl-C, which stop the servers.
"""

from __future__ import annotations

import getpass
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..adapters import git, git_remote, sshd, web
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


def _port(bind: str, port: int, flag: str) -> int:
    if port == 0:
        return web.free_port(bind)
    if not 0 < port < 65536:
        raise UsageError(f"port {port} is not a TCP port", f"Give {flag} between 1 and 65535 (0: any free port).")
    if not web.port_free(bind, port):
        raise UsageError(f"port {port} on {bind} is taken: something listens there already",
                         f"Pick another with {flag}, or stop what listens there.")
    return port


def prepare(path: str | Path, port: int | None, bind: str, ssh_port: int | None = None
            ) -> tuple[Path, int | None, int | None]:
    """Check everything before starting: the hub, its users, the servers, the ports; return (hub, port, ssh_port).

    Raises:
        UsageError: not a hub, no users, lighttpd or sshd missing, a port taken.
    """
    hub = hub_access.require_hub(path)
    if port is None and ssh_port is None:
        raise UsageError("nothing to serve: give --port (HTTP), --ssh-port (SSH) or both")
    if port is not None:
        web.binary()
    if ssh_port is not None:
        sshd.binary()
    if not hub_access.users(hub):
        raise UsageError(f"the hub at {hub} has no users: nobody could push or fetch",
                         f"Add one per person and agent: 'lineage hub user add {hub} NAME --role ROLE'.")
    port = _port(bind, port, "--port") if port is not None else None
    ssh_port = _port(bind, ssh_port, "--ssh-port") if ssh_port is not None else None
    return hub, port, ssh_port


def serve(path: str | Path, port: int | None, bind: str = "127.0.0.1", echo: Callable[[str], None] | None = None,
          ssh_port: int | None = None) -> Served:
    """Serve the hub over HTTP (http://BIND:PORT/<hub directory name>) and/or SSH until SIGTERM or SIGINT.

    echo gets one 'serving HUB at URL' line per server once it is up.
    """
    hub, port, ssh_port = prepare(path, port, bind, ssh_port)
    hub_mod.install_hooks(hub)  # a hub made before the push log gets its post-receive hook
    dvc_remote = git.config_get(hub, hub_mod.DVC_KEY)
    if dvc_remote:
        hub_mod.advertise(hub, dvc_remote)  # republish what the config says (it may have been edited by hand)
    host = f"[{bind}]" if ":" in bind else bind
    urls = []
    passed = {name: os.environ.get(name, "") for name in web.PASSED}
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    servers: list = []
    try:
        if port is not None:
            servers.append(web.start(hub, hub.name, bind, port, hub_access.passwd_file(hub), git_remote.http_backend(),
                                     passed))
            urls.append(f"http://{host}:{port}/{hub.name}")
        if ssh_port is not None:
            key = sshd.host_key(hub / hub_access.FOLDER / hub_access.HOST_KEY)
            keys = hub_access.keys_file(hub)
            keys.parent.mkdir(mode=0o700, exist_ok=True)
            keys.touch(mode=0o600)
            servers.append(sshd.start(bind, ssh_port, key, keys, passed))
            urls.append(f"ssh://{getpass.getuser()}@{host}:{ssh_port}/{hub.name}")
        for url in urls:
            if echo:
                echo(f"serving {hub} at {url}")
        if echo and not dvc_remote:
            echo("note: the hub advertises no DVC remote; clones cannot pull weights until "
                 f"'lineage hub dvc-remote {hub} URL'")
        while True:
            for server in servers:
                if server.process.poll() is not None:
                    raise UsageError(f"{server.name} stopped by itself "
                                     f"(exit {server.process.returncode}): {server.last_error() or 'no reason logged'}")
            time.sleep(0.5)
    except _Stop as stop:
        return Served(str(hub), " ".join(urls), str(stop))
    finally:
        for server in servers:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
