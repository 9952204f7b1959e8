"""A warm fork server for the pipeline's stages: the heavy imports are paid once, not per stage.

Each DVC stage is a new Python process, and importing torch, transformers and TRL costs it
10–15 s of CPU before it trains a single step (measured: bench/README.md). When the environment
names a warm server (``LINEAGE_WARM=/path/to.sock``), a stage script hands its run to that server
instead: the server, which imported those libraries once, forks; the fork takes the stage's working
directory, environment, argv and standard streams (passed over the UNIX socket), runs the stage
script as ``__main__``, and its exit status (or the signal that killed it) becomes the stage's. If
the stage's own process dies, the server kills the fork; a signal sent to the stage is forwarded.

A fork runs exactly the code a fresh process would: the server only imports libraries, it never
runs a stage itself, so seeds, weights and reports are the same. With no server (the default), or
one that does not answer, the stage runs in its own process as before.

    python -m lineage.adapters.warm serve SOCKET     # what the test suite starts, one per worker
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import sys
from pathlib import Path

ENV = "LINEAGE_WARM"
CHILD_ENV = "LINEAGE_WARM_CHILD"  # set in a fork: a stage run by the server never delegates again
# Libraries only (lineage's own modules are imported by each fork: some read the environment at import).
# pygit2 serves the parent, prepare and gate stages; dvc.repo is what dvclive opens in every training run.
PRELOAD = ("torch", "transformers", "trl", "datasets", "peft", "dvclive", "safetensors.torch", "tokenizers",
           "pygit2", "dvc.repo", "dvc.scm", "dvc.output", "dvc.stage", "scmrepo.git")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_LEN = struct.Struct(">I")


# ---------------------------------------------------------------- the stage's side


def delegate(script: str, argv: list[str]) -> int | None:
    """Run a stage script in the warm server; return its exit code, or None when there is no server.

    A stage killed by a signal kills this process with the same signal, as if it had died itself.
    """
    path = os.environ.get(ENV)
    if not path or os.environ.get(CHILD_ENV) or not Path(path).exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        header = json.dumps({"script": os.path.abspath(script), "argv": argv, "cwd": os.getcwd(),
                             "env": dict(os.environ)}).encode()
        socket.send_fds(conn, [_LEN.pack(len(header)) + header], [0, 1, 2])
    except OSError:
        conn.close()
        return None  # no server listening: run here
    previous = {sig: signal.signal(sig, lambda s, _f: _send(conn, s)) for sig in FORWARDED}
    try:
        status = _recv_exact(conn, 8)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        conn.close()
    if status is None:
        return 3  # the server went away mid-run
    kind, value = struct.unpack(">ii", status)
    if kind == 1:  # killed by a signal: die the same way
        signal.signal(value, signal.SIG_DFL)
        os.kill(os.getpid(), value)
    return value


def _send(conn: socket.socket, sig: int) -> None:
    try:
        conn.sendall(bytes([sig]))
    except OSError:
        pass


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = conn.recv(size - len(data))
        except InterruptedError:
            continue
        if not chunk:
            return None
        data += chunk
    return data


# ---------------------------------------------------------------- the server's side


def serve(path: str) -> None:
    """Import the heavy libraries, then fork one child per stage run until SIGTERM."""
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass  # an optional library missing here is imported (or refused) by the stage itself
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (lazy attributes)
    from trl import SFTConfig, SFTTrainer  # noqa: F401

    Path(path).unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, ("accept", None))
    running: dict[int, tuple[socket.socket, int]] = {}  # pidfd -> (connection, pid)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print(f"lineage warm server ready on {path}", flush=True)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # whoever waited for the line above may stop reading: never block on a full pipe
    os.close(null)
    try:
        while not stop:
            for key, _ in selector.select(timeout=1.0):
                what, data = key.data
                if what == "accept":
                    _start(listener, selector, running)
                elif what == "conn":  # a byte: a signal to forward; nothing: the stage's process died
                    conn, pid = data
                    try:
                        got = conn.recv(16)
                    except OSError:
                        got = b""
                    for sig in (got or bytes([signal.SIGKILL])):
                        _kill(pid, sig)
                    if not got:
                        selector.unregister(conn)
                elif what == "exit":
                    pidfd = key.fd
                    conn, pid = running.pop(pidfd)
                    selector.unregister(pidfd)
                    os.close(pidfd)
                    _, raw = os.waitpid(pid, 0)
                    status = (1, os.WTERMSIG(raw)) if os.WIFSIGNALED(raw) else (0, os.WEXITSTATUS(raw))
                    try:
                        conn.sendall(struct.pack(">ii", *status))
                    except OSError:
                        pass
                    try:
                        selector.unregister(conn)
                    except (KeyError, ValueError):
                        pass
                    conn.close()
    finally:
        for _conn, pid in running.values():
            _kill(pid, signal.SIGKILL)
        listener.close()
        Path(path).unlink(missing_ok=True)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _start(listener: socket.socket, selector: selectors.BaseSelector, running: dict) -> None:
    conn, _ = listener.accept()
    try:
        msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
        size = _LEN.unpack(msg[:4])[0]
        while len(msg) < 4 + size:
            more = conn.recv(4 + size - len(msg))
            if not more:
                raise OSError("short header")
            msg += more
        request = json.loads(msg[4:4 + size])
    except (OSError, ValueError, struct.error):
        conn.close()
        return
    pid = os.fork()
    if pid == 0:  # the stage
        _run_child(request, fds)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    running[pidfd] = (conn, pid)
    selector.register(pidfd, selectors.EVENT_READ, ("exit", None))
    selector.register(conn, selectors.EVENT_READ, ("conn", (conn, pid)))


def _run_child(request: dict, fds: list[int]) -> None:
    """In the fork: become the stage's process and run its script; never returns."""
    code = 1
    try:
        for sig in (*FORWARDED, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[CHILD_ENV] = "1"
        sys.argv = list(request["argv"])
        threads = os.environ.get("OMP_NUM_THREADS")
        if threads and threads.isdigit():
            import torch

            torch.set_num_threads(int(threads))
        import runpy

        try:
            runpy.run_path(request["script"], run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - report as a crashed stage would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "serve":
        print("usage: python -m lineage.adapters.warm serve SOCKET", file=sys.stderr)
        return 2
    serve(argv[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

