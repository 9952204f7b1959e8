"""OpenSSH's sshd in front of a hub: one account, one key per user, each key forced to lineage's command.

The gitolite model without gitolite: every user logs in as the account that owns the hub, with their
own key; ``authorized_keys`` forces each key to ``python -m lineage.guard.hub_ssh HUB NAME``, which
runs only ``git-upload-pack`` or ``git-receive-pack`` on that hub, with ``REMOTE_USER=NAME``. The
client's ``--receive-pack`` is not a program that runs: it is the command line sent, and anything but
the plain git service is refused. sshd runs in the foreground (``-D``) with a config lineage writes to
a temporary directory; its host key is kept in the hub (``lineage/ssh_host_ed25519_key``) so clients'
known_hosts stay valid across restarts.

The only module that starts sshd.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

from ..core.errors import UsageError
from .web import Server, die_with_parent, find_binary, wait_listening

BINARY_ENV = "LINEAGE_SSHD"  # the sshd to run (default: sshd on PATH, or /usr/sbin/sshd)
PACKAGE = "openssh-server"

CONFIG = """\
Port {port}
ListenAddress {bind}
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized_keys}
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin forced-commands-only
UsePAM no
StrictModes no
DisableForwarding yes
PermitTTY no
PermitUserRC no
LogLevel ERROR
{setenv}
"""


def binary() -> str:
    """The sshd executable (UsageError naming the package when it is missing)."""
    return find_binary("sshd", BINARY_ENV, "the SSH server", PACKAGE)


def host_key(path: Path) -> Path:
    """The hub's SSH host key at path, created (ed25519) when missing."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        proc = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lineage hub", "-f", str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise UsageError(f"ssh-keygen could not create the hub's host key: {proc.stderr.strip()}")
    return path


def start(bind: str, port: int, key: Path, authorized_keys: Path, env: dict, wait: float = 10.0) -> Server:
    """Start sshd on bind:port for this account, with the hub's host key and authorized_keys.

    Raises:
        UsageError: sshd is missing, or it did not start (its last log line named).
    """
    exe = binary()
    folder = Path(os.environ.get("TMPDIR", "/tmp")).joinpath(f"lineage-sshd-{os.getpid()}-{port}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    setenv = "".join(f'SetEnv {name}="{value}"\n' for name, value in env.items() if value and '"' not in value)
    config = CONFIG.format(port=port, bind=bind, host_key=key, authorized_keys=authorized_keys,
                           user=getpass.getuser(), setenv=setenv)
    (folder / "sshd_config").write_text(config)
    check = subprocess.run([exe, "-t", "-f", str(folder / "sshd_config")], capture_output=True, text=True)
    if check.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        told = check.stderr.strip().splitlines()
        raise UsageError(f"sshd refused its configuration: {told[-1] if told else check.returncode}")
    process = subprocess.Popen([exe, "-D", "-E", str(folder / "sshd.log"), "-f", str(folder / "sshd_config")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, preexec_fn=die_with_parent)
    return wait_listening(Server("sshd", process, folder, folder / "sshd.log"), bind, port, wait, "--ssh-port")
