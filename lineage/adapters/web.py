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
    """A running lighttpd: its process and the temporary directory holding its config."""

    process: subprocess.Popen
    folder: Path
    errorlog: Path

    def last_error(self) -> str:
        """The last line of lighttpd's error log, without its time stamp."""
        return _last_line(self.errorlog)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM lighttpd (it finishes the requests in flight), wait, remove its config; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
        return self.process.returncode


def binary() -> str:
    """The lighttpd executable.

    Raises:
        UsageError: it is not installed (names the package).
    """
    configured = os.environ.get(BINARY_ENV)
    found = configured if configured else shutil.which(
        "lighttpd", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if not found or not os.access(found, os.X_OK):
        raise UsageError(f"the web server is not installed: no {configured or 'lighttpd'} to run",
                         f"Install the package: apt-get install {PACKAGE} (as root), then run 'lineage hub serve' "
                         "again.")
    return found


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
    server = Server(process, folder, errorlog)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = _last_line(errorlog) or _last_line(folder / "stderr.log")
            server.stop()
            raise UsageError(f"lighttpd did not start on {bind}:{port}: {said or 'it exited'}",
                             "Pick another port with --port, or stop what listens there.")
        with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex((bind, port)) == 0:
                return server
        time.sleep(0.05)
    server.stop()
    raise UsageError(f"lighttpd did not answer on {bind}:{port} within {wait:.0f} s")


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


def _last_line(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].split(") ", 1)[-1] if lines else ""
