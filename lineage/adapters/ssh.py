"""SSH signatures adapter: `ssh-keygen -Y sign/verify` and key files, nothing lineage-specific.

OpenSSH's signature format (SSHSIG) and its allowed-signers file are what git uses for SSH-signed
commits; a key may be a private key file or, for a key held by ssh-agent, its ``.pub`` file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from ..core.errors import StoreError, UsageError


def _keygen(args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise StoreError("ssh-keygen was not found on PATH; signatures need OpenSSH 8.2 or newer",
                         "Install OpenSSH's client tools (Debian/Ubuntu: apt install openssh-client).")
    # stdin carries the data; with none, ssh-keygen must not wait on the terminal's stdin
    return subprocess.run([exe, *args], input=data if data is not None else b"", capture_output=True)


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


def generate(path: Path, comment: str) -> None:
    """Create an ed25519 key pair at path (and path.pub) without a passphrase."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    proc = _keygen(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    if proc.returncode != 0:
        raise StoreError(f"ssh-keygen could not create {path}: {_last_line(proc)}")


def public_key(key: Path) -> str:
    """'type base64' of a key file: its .pub beside it, the file itself when it is a .pub, else derived."""
    for candidate in (key, Path(str(key) + ".pub")):
        if candidate.suffix == ".pub" and candidate.is_file():
            parts = candidate.read_text().split()
            if len(parts) >= 2:
                return f"{parts[0]} {parts[1]}"
    proc = _keygen(["-y", "-f", str(key)])
    if proc.returncode != 0:
        raise UsageError(f"cannot read the public key of {key}: {_last_line(proc)}",
                         "Give an SSH private key, or the .pub of a key loaded in ssh-agent.")
    parts = proc.stdout.decode().split()
    return f"{parts[0]} {parts[1]}"


def fingerprint(public: str) -> str:
    """OpenSSH's 'SHA256:…' fingerprint of a 'type base64' public key."""
    blob = base64.b64decode(public.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def signature_fingerprint(armored: str) -> str | None:
    """Fingerprint of the key embedded in an SSHSIG signature, or None when it is not one."""
    body = "".join(line for line in armored.strip().splitlines() if not line.startswith("-----"))
    try:
        raw = base64.b64decode(body)
        if raw[:6] != b"SSHSIG":
            return None
        (size,) = struct.unpack(">I", raw[10:14])
        blob = raw[14:14 + size]
    except (ValueError, struct.error):
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def sign(key: Path, data: bytes, namespace: str) -> str:
    """Armored SSH signature of data in namespace."""
    proc = _keygen(["-Y", "sign", "-f", str(key), "-n", namespace], data)
    if proc.returncode != 0:
        raise StoreError(f"ssh-keygen could not sign with {key}: {_last_line(proc)}",
                         "Check the key; a key with a passphrase signs through ssh-agent: point the "
                         "key setting at its .pub file.")
    return proc.stdout.decode()


def verify(allowed_signers: bytes, principal: str, namespace: str, data: bytes, signature: str,
           when: str | None = None) -> tuple[bool, bool]:
    """(verified against allowed_signers for principal in namespace, signature valid for its own key)."""
    with tempfile.TemporaryDirectory(prefix="lineage-sig-") as tmp:
        signers, sig = os.path.join(tmp, "allowed_signers"), os.path.join(tmp, "data.sig")
        Path(signers).write_bytes(allowed_signers)
        Path(sig).write_text(signature)
        args = ["-Y", "verify", "-f", signers, "-I", principal, "-n", namespace, "-s", sig]
        if when and b"valid-" in allowed_signers:  # judge valid-after/valid-before at signing time
            args.append(f"-Overify-time={when}")
        if _keygen(args, data).returncode == 0:
            return True, True
        intact = _keygen(["-Y", "check-novalidate", "-n", namespace, "-s", sig], data).returncode == 0
        return False, intact
