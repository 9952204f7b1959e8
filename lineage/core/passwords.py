"""Passwords for a served hub's users: SHA-512 crypt (``$6$``), the htpasswd line a web server reads.

lighttpd's ``mod_authn_file`` checks ``$6$`` hashes with the system's crypt(3); Python's ``crypt``
module is gone in 3.13, so the algorithm (Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512",
the one glibc and libxcrypt implement) is written out here. Pure: no processes, no files.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

ROUNDS = 50_000  # what the hash costs to check; recorded in it as rounds=N
_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SALT_RE = re.compile(r"^\$6\$(?:rounds=(\d+)\$)?([^$]{0,16})(?:\$|$)")
# Bytes of the final digest, three at a time, in the order the algorithm writes them.
_ORDER = [(0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
          (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
          (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41)]


def _b64(value: int, count: int) -> str:
    out = []
    for _ in range(count):
        out.append(_ALPHABET[value & 0x3F])
        value >>= 6
    return "".join(out)


def _repeat(digest: bytes, length: int) -> bytes:
    return digest * (length // 64) + digest[: length % 64]


def sha512_crypt(password: str, salt: str | None = None, rounds: int = ROUNDS) -> str:
    """The ``$6$rounds=N$salt$hash`` string of a password (a fresh 16-character salt unless given)."""
    salt = (salt if salt is not None else "".join(secrets.choice(_ALPHABET) for _ in range(16)))[:16]
    rounds = max(1000, min(rounds, 999_999_999))
    key, salt_b = password.encode(), salt.encode()
    alternate = hashlib.sha512(key + salt_b + key).digest()
    a = hashlib.sha512(key + salt_b)
    a.update(_repeat(alternate, len(key)))
    n = len(key)
    while n:
        a.update(alternate if n & 1 else key)
        n >>= 1
    digest = a.digest()
    p = _repeat(hashlib.sha512(key * len(key)).digest(), len(key))
    s = _repeat(hashlib.sha512(salt_b * (16 + digest[0])).digest(), len(salt_b))
    for i in range(rounds):
        c = hashlib.sha512(p if i & 1 else digest)
        if i % 3:
            c.update(s)
        if i % 7:
            c.update(p)
        c.update(digest if i & 1 else p)
        digest = c.digest()
    encoded = "".join(_b64((digest[x] << 16) | (digest[y] << 8) | digest[z], 4) for x, y, z in _ORDER)
    encoded += _b64(digest[63], 2)
    return f"$6$rounds={rounds}${salt}${encoded}"


def check(password: str, hashed: str) -> bool:
    """True when password is the one hashed (a ``$6$`` string) stands for."""
    match = _SALT_RE.match(hashed)
    if match is None:
        return False
    rounds = int(match.group(1)) if match.group(1) else 5000
    return hmac.compare_digest(sha512_crypt(password, match.group(2), rounds), _with_rounds(hashed, rounds))


def _with_rounds(hashed: str, rounds: int) -> str:
    return hashed if "rounds=" in hashed else hashed.replace("$6$", f"$6$rounds={rounds}$", 1)
