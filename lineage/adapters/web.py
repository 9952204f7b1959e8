"""The web server in front of a served hub: lighttpd running git's own ``git http-backend``.

Why lighttpd: one small process from the distribution's packages (``apt-get install lighttpd``),
CGI, basic auth against an htpasswd file and per-location environment in one config file that
lineage writes to a temporary directory; nginx would need fcgiwrap beside it, Apache a larger
set-up. lighttpd runs in the foreground (``-D``) as a child of ``lineage hub serve``, which stops it
on SIGTERM or SIGINT; if lineage is killed outright, the kernel sends lighttpd SIGTERM.

The only module that starts the web server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UsageError

BINARY_ENV = "LINEAGE_LIGHTTPD"  # the lighttpd to run (default: lighttpd on PATH, or in /usr/sbin)
PACKAGE = "lighttpd"
# Variables the hub's hooks need from lineage's own environment; lighttpd passes CGI scripts almost nothing.
PASSED = ("PYTHONPATH", "LANG", "LC_ALL", "TMPDIR")

CONFIG = """\
server.modules = ("mod_access", "mod_alias", "mod_auth", "mod_authn_file", "mod_setenv", "mod_cgi")
server.document-root = "{empty}"
server.bind = "{bind}"
server.port = {port}
server.errorlog = "{errorlog}"
server.upload-dirs = ("{tmp}")
server.max-request-size = 0
# every request, reads included, needs a user from the hub's password file
auth.backend = "htpasswd"
auth.backend.htpasswd.userfile = "{passwd}"
auth.require = ("" => ("method" => "basic", "realm" => "{realm}", "require" => "valid-user"))
alias.url = ("/{name}" => "{backend}")
$HTTP["url"] =~ "^/{name_re}(/|$)" {{
  cgi.assign = ("" => "")
  setenv.set-environment = ({environment})
}}
$HTTP["url"] !~ "^/{name_re}(/|$)" {{
  url.access-deny = ("")
}}
"""


@dataclass
class Server:
    """A daemon lineage runs in the foreground (lighttpd, sshd): its process, the temporary directory
    holding its config, and the log whose last line says why it stopped."""

    name: str
    process: subprocess.Popen
    folder: Path
    log: Path

    def last_error(self) -> str:
        """The last line of the daemon's log, without a leading time stamp."""
        return last_line(self.log)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the daemon (it finishes what is in flight), wait, remove its config; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
        return self.process.returncode


def find_binary(program: str, env_var: str, what: str, package: str) -> str:
    """The executable of program ($env_var, else on PATH or in /usr/sbin, /sbin).

    Raises:
        UsageError: it is not installed (names the package).
    """
    configured = os.environ.get(env_var)
    found = configured if configured else shutil.which(
        program, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if not found or not os.access(found, os.X_OK):
        raise UsageError(f"{what} is not installed: no {configured or program} to run",
                         f"Install the package: apt-get install {package} (as root), then run 'lineage hub serve' "
                         "again.")
    return found


def binary() -> str:
    """The lighttpd executable (UsageError naming the package when it is missing)."""
    return find_binary("lighttpd", BINARY_ENV, "the web server", PACKAGE)


def wait_listening(server: Server, bind: str, port: int, wait: float, port_option: str,
                   also_log: Path | None = None) -> Server:
    """Return server once it accepts connections on bind:port.

    Raises:
        UsageError: it exited first (its log's last line named) or did not answer within wait; it is stopped.
    """
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            said = server.last_error() or (last_line(also_log) if also_log else "")
            server.stop()
            raise UsageError(f"{server.name} did not start on {bind}:{port}: {said or 'it exited'}",
                             f"Pick another port with {port_option}, or stop what listens there.")
        with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex((bind, port)) == 0:
                return server
        time.sleep(0.05)
    server.stop()
    raise UsageError(f"{server.name} did not answer on {bind}:{port} within {wait:.0f} s")


def port_free(bind: str, port: int) -> bool:
    """True when nothing listens on bind:port (the check lighttpd's own bind would fail)."""
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError:
            return False
    return True


def free_port(bind: str) -> int:
    """A port nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((bind, 0))
        return int(probe.getsockname()[1])


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def start(hub: Path, name: str, bind: str, port: int, passwd: Path, backend: str, python_env: dict,
          realm: str = "lineage hub", wait: float = 10.0) -> Server:
    """Start lighttpd serving the bare repository hub at http://bind:port/name through backend (git http-backend).

    Raises:
        UsageError: lighttpd is missing, or it did not start (its error log's last line named).
    """
    exe = binary()
    folder = Path(os.environ.get("TMPDIR", "/tmp")).joinpath(f"lineage-hub-{os.getpid()}-{port}")
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "empty").mkdir(parents=True)
    errorlog = folder / "error.log"
    env = {"GIT_PROJECT_ROOT": str(hub), "GIT_HTTP_EXPORT_ALL": "1", "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
           **{k: v for k, v in python_env.items() if v}}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    config = CONFIG.format(empty=folder / "empty", bind=bind, port=port, errorlog=errorlog, tmp=folder,
                           passwd=passwd, realm=realm, name=name, name_re=_regex(name), backend=backend,
                           environment=", ".join(f"{_quote(k)} => {_quote(v)}" for k, v in env.items()))
    (folder / "lighttpd.conf").write_text(config)
    check = subprocess.run([exe, "-tt", "-f", str(folder / "lighttpd.conf")], capture_output=True, text=True)
    if check.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        told = (check.stderr.strip() or check.stdout.strip()).splitlines()
        raise UsageError(f"lighttpd refused its configuration: {told[-1] if told else check.returncode}")
    with open(folder / "stderr.log", "w") as stderr:  # a file, never a pipe nobody reads
        process = subprocess.Popen([exe, "-D", "-f", str(folder / "lighttpd.conf")], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                   preexec_fn=die_with_parent)
    return wait_listening(Server("lighttpd", process, folder, errorlog), bind, port, wait, "--port",
                          also_log=folder / "stderr.log")


def die_with_parent() -> None:
    """In the child: SIGTERM it when lineage dies, even by SIGKILL (Linux); it has its own session, so a
    terminal's Ctrl-C reaches only lineage, which stops it in order."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _regex(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "\\" + c for c in name)


def last_line(path: Path) -> str:
    """The last non-empty line of a log file ("" when there is none), without a leading time stamp."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    return lines[-1].split(") ", 1)[-1] if lines[-1][:1].isdigit() else lines[-1]
