"""A hub served over smart HTTP (`lineage hub serve`: lighttpd + git http-backend), pushed to and cloned for real.

One world per module: the shared tiny G000 (conftest's trained_g000), an approver, a proposer and an
arbiter listed with one role each, G001-a proposed and pushed over the path to a hub whose users are
ada (approver), loop (proposer) and judge (arbiter). Each test serves a private copy of the hub on a
free loopback port through the real CLI (`lineage hub serve`, stopped with SIGTERM) and pushes to it
with git as each user. "Nothing moved" means every ref of the hub is byte-for-byte the same.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    ROLE_PRINCIPALS,
    as_role,
    copy_store,
    hooks_off_move,
    lineage,
    make_key,
    refs,
    relaxed_tiny,
    sh,
    sign_verdict,
    signed_store_with_hub,
    trained_g000,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def web_server():
    """These tests need the real web server; `make test` installs it where it can (root with apt-get)."""
    if not (shutil.which("lighttpd") or os.path.exists("/usr/sbin/lighttpd")):
        pytest.fail("lighttpd is not installed: apt-get install lighttpd (as root), then run the tests again")

TINY = relaxed_tiny(10, 5, eval={"max_new_tokens": 4})  # test_roles' recipe: the same G000, built once per run
G001 = "candidates/G001-a"
USERS = {"ada": "approver", "loop": "proposer", "judge": "arbiter"}
PASSWORD = "correct horse"


def git(repo: Path, *args: str, check: bool = True, env: dict | None = None) -> str:
    return sh(["git", *args], repo, check=check, env=env).stdout.strip()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = signed_store_with_hub(tmp_path_factory.mktemp("hub-http"), trained_g000(tmp_path_factory, TINY))
    base, hub = world["base"], world["hub"]
    secret = base / "password"
    secret.write_text(PASSWORD + "\n")
    for name, role in USERS.items():
        assert f"added {name} to the hub as its {role}" in \
            lineage(base, "hub", "user", "add", hub, name, "--role", role, "--password-file", secret).stdout
    return world


class Served:
    """`lineage hub serve` on a free loopback port, as a child process."""

    def __init__(self, hub: Path, how: str = "--port") -> None:
        self.hub = hub
        self.proc = subprocess.Popen([sys.executable, "-m", "lineage", "hub", "serve", str(hub), how, "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert line.startswith("serving "), line + (self.proc.stderr.read() if self.proc.stderr else "")
        self.url = line.split(" at ", 1)[1].strip()
        self.port = int(self.url.split(":")[2].split("/")[0])

    def as_user(self, user: str, password: str = PASSWORD) -> str:
        return self.url.replace("http://", f"http://{user}:{password.replace(' ', '%20')}@", 1)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, _err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out


@pytest.fixture
def served(world, tmp_path):
    """A private copy of the world's hub, served; stopped (SIGTERM) after the test, which must exit 0."""
    hub = Path(shutil.copytree(world["hub"], tmp_path / "luna.git", symlinks=True))
    server = Served(hub)
    yield server
    code, out = server.stop()
    assert code == 0 and "stopped serving" in out, out
    with socket.socket() as probe:  # lighttpd is gone: the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))


@pytest.fixture
def store(world, tmp_path):
    return copy_store(world["store"], tmp_path / "luna")


def push(store: Path, url: str, *refspecs: str, extra: tuple = ()) -> tuple[int, str]:
    proc = sh(["git", "push", "--atomic", "--force", *extra, url, *refspecs], store, check=False,
              env={"GIT_TERMINAL_PROMPT": "0"})
    return proc.returncode, proc.stderr


# ---------------------------------------------------------------- what HTTP closes


def test_the_receive_pack_override_cannot_bypass_a_served_hub(served, store, tmp_path):
    candidate = git(store, "rev-parse", G001)
    hooks_off_move(store, candidate)  # main on the proposer's own candidate: no verdict, no approval
    override = ("--receive-pack=git -c core.hooksPath=/dev/null receive-pack",)
    # over the filesystem path the pusher picks the receive-pack, and the hook is skipped (the hole)
    by_path = Path(shutil.copytree(served.hub, tmp_path / "by-path.git", symlinks=True))
    assert push(store, str(by_path), "main", extra=override)[0] == 0
    assert git(by_path, "rev-parse", "main") == candidate
    # over HTTP the server runs its own receive-pack: the arbiter refuses
    before = refs(served.hub)
    code, err = push(store, served.as_user("loop"), "main", extra=override)
    assert code != 0 and f"lineage hub: refused to move refs/heads/main: no arbiter verdict for {candidate[:12]}" \
        in err, err
    assert refs(served.hub) == before


def test_a_proposer_pushing_main_with_a_forged_verdict_is_refused(served, store, world):
    candidate = git(store, "rev-parse", G001)
    forged = sign_verdict(store, G001, world["keys"]["propose"], principal=ROLE_PRINCIPALS["propose"])
    hooks_off_move(store, candidate)
    before = refs(served.hub)
    code, err = push(store, served.as_user("loop"), "main", f"refs/lineage/verdicts/{candidate}")
    assert code != 0, err
    assert f"lineage hub: refused to move refs/lineage/verdicts/{candidate}: loop is the hub's proposer; only the " \
           "arbiter pushes verdicts" in err, err
    assert "lineage hub: refused to move refs/heads/main" in err
    assert refs(served.hub) == before and forged not in before


def test_only_the_arbiter_pushes_verdicts_and_an_honest_promotion_goes_through_logged_by_user(
        served, store, world, tmp_path):
    keys, candidate = world["keys"], git(store, "rev-parse", G001)
    sign_verdict(store, G001, keys["arbiter"])
    verdict_ref = f"refs/lineage/verdicts/{candidate}"
    before = refs(served.hub)
    for user in ("loop", "ada"):  # a real verdict, signed by the arbiter's key, but pushed by someone else
        code, err = push(store, served.as_user(user), verdict_ref)
        assert code != 0 and "only the arbiter pushes verdicts" in err, err
    assert refs(served.hub) == before
    assert push(store, served.as_user("judge"), verdict_ref)[0] == 0
    # the approver promotes (the store's key is the approver's) and pushes with its own credentials
    lineage(store, "promote", G001)
    git(store, "remote", "set-url", "hub", served.as_user("ada"))
    lineage(store, "push")
    assert git(served.hub, "rev-parse", "main") == candidate
    # GTO's version and stage tags travel with the promotion, and the hub holds them as a registry
    tags = git(served.hub, "tag", "--list", "luna*").split()
    assert "luna@v1.0.0" in tags and any(t.startswith("luna#prod#") for t in tags), tags
    log = lineage(tmp_path, "hub", "log", served.hub).stdout
    accepted = [ln.split() for ln in log.splitlines() if " accepted " in ln]
    assert ["judge", verdict_ref] in [[r[1], r[3]] for r in accepted], log
    assert ["ada", "refs/heads/main"] in [[r[1], r[3]] for r in accepted], log
    assert sum(" refused " in ln and verdict_ref in ln for ln in log.splitlines()) == 2, log


def test_only_a_proposer_pushes_candidates_and_nobody_deletes_one(served, store):
    before = refs(served.hub)
    code, err = push(store, served.as_user("ada"), f"{G001}:refs/heads/candidates/G001-z")
    assert code != 0 and "ada is the hub's approver; only a proposer pushes candidate branches" in err, err
    code, err = push(store, served.as_user("judge"), "refs/tags/lineage/frozen/G001-a:refs/tags/lineage/frozen/G001-y")
    assert code != 0 and "only a proposer pushes frozen tags" in err, err
    assert refs(served.hub) == before
    for who in ("loop", "ada"):
        code, err = push(store, served.as_user(who), f":refs/heads/{G001}")
        assert code != 0 and f"refused to move refs/heads/{G001}: candidate branches are never deleted" in err, err
    code, err = push(store, str(served.hub), f":refs/heads/{G001}")  # over the path too
    assert code != 0 and "candidate branches are never deleted" in err, err
    assert refs(served.hub) == before
    assert push(store, served.as_user("loop"), f"{G001}:refs/heads/candidates/G001-z")[0] == 0


def test_a_stage_tag_on_an_unserved_commit_is_refused(served, store):
    candidate, main = git(store, "rev-parse", G001), git(store, "rev-parse", "main")
    before = refs(served.hub)
    for name, why in (("luna#prod#7", "luna#prod#7 is not a prod stage of a generation main promoted"),
                      ("luna@v1.0.0", "luna@v1.0.0 does not name the commit main promoted as that version"),
                      ("other#prod#1", "a registry tag must name a commit main served")):
        git(store, "tag", "-a", "-m", "in production", name, candidate)
        code, err = push(store, served.as_user("ada"), f"refs/tags/{name}")
        assert code != 0 and f"refused to move refs/tags/{name}: {why}" in err, err
    git(store, "tag", "luna#prod#8", main)  # the model's own tags are annotated, as GTO writes them
    code, err = push(store, served.as_user("ada"), "refs/tags/luna#prod#8")
    assert code != 0 and "registry tags are annotated tags" in err, err
    assert refs(served.hub) == before
    git(store, "tag", "-a", "-m", "G000 in production", "other#prod#2", main)
    assert push(store, served.as_user("ada"), "refs/tags/other#prod#2")[0] == 0


def test_lineage_clone_of_a_served_hub_gives_a_store_that_verifies(served, world, tmp_path):
    dest = tmp_path / "ada-clone"
    cloned = lineage(tmp_path, "clone", served.as_user("ada"), dest)
    assert f"cloned {served.url.replace('http://', 'http://ada:***@')} into {dest}" in cloned.stdout, cloned.stdout
    assert PASSWORD not in cloned.stdout
    assert git(dest, "rev-parse", "main") == git(world["store"], "rev-parse", "main")
    assert (dest / ".git" / "hooks" / "reference-transaction").is_file()
    assert "origin" in (dest / ".dvc" / "config.local").read_text()  # the advertised remote, kept untracked
    assert git(dest, "status", "--porcelain") == ""
    verified = lineage(dest, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert lineage(dest, "pull").returncode == 0


def test_arbiter_watch_judges_over_a_served_hub_with_its_own_credentials(world, served, store, tmp_path):
    keys, home = world["keys"], tmp_path / "arbiter-home"
    # the arbiter's sealed exam pinned on main (an approved change), then a candidate on top of it
    lineage(store, "arbiter", "init", "--home", home)
    lineage(store, "change", "--reason", "pin the arbiter's sealed exam")
    assert "candidates/G002-b" in lineage(store, "propose", "--name", "b", env=as_role(keys, "propose"),
                                           check=False).stdout
    sh(["git", "push", "-q", served.as_user("ada"), "main", "refs/lineage/log"], store)  # the approver's change
    git(store, "remote", "set-url", "hub", served.as_user("loop"))
    lineage(store, "push")  # then the proposer's candidate
    judge = lineage(tmp_path, "clone", served.as_user("judge"), tmp_path / "arbiter")
    assert judge.returncode == 0
    watched = lineage(tmp_path / "arbiter", "arbiter", "watch", served.as_user("judge"), "--once", "--home", home,
                      env=as_role(keys, "arbiter")).stdout
    candidate = git(store, "rev-parse", "candidates/G002-b")
    assert f"-> refs/lineage/verdicts/{candidate} pushed to {served.url.replace('http://', 'http://judge:***@')}" \
        in watched, watched
    assert PASSWORD not in watched
    assert git(served.hub, "rev-parse", f"refs/lineage/verdicts/{candidate}")
    log = lineage(tmp_path, "hub", "log", served.hub).stdout
    assert any(" judge " in ln and " accepted " in ln and candidate in ln for ln in log.splitlines()), log


def test_over_ssh_each_key_is_forced_to_git_on_the_hub_and_the_hook_knows_its_user(world, store, tmp_path):
    if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")):
        pytest.fail("sshd is not installed: apt-get install openssh-server (as root), then run the tests again")
    hub = Path(shutil.copytree(world["hub"], tmp_path / "luna.git", symlinks=True))
    keys = {who: make_key(tmp_path / "ssh" / who, who) for who in ("loop", "ada", "stranger")}
    for who, role in (("loop", "proposer"), ("ada", "approver")):
        assert f"added {who}'s SSH key to the hub ({role})" in \
            lineage(tmp_path, "hub", "user", "add", hub, who, "--role", role, "--ssh-key", f"{keys[who]}.pub").stdout
    server = Served(hub, "--ssh-port")
    try:
        def over_ssh(who: str, *refspecs: str, extra: tuple = ()) -> tuple[int, str]:
            ssh = f"ssh -i {keys[who]} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
            proc = sh(["git", "push", "--atomic", *extra, server.url, *refspecs], store, check=False,
                      env={"GIT_SSH_COMMAND": ssh})
            return proc.returncode, proc.stderr

        before = refs(hub)
        hooks_off_move(store, git(store, "rev-parse", G001))
        code, err = over_ssh("loop", "main", extra=("--receive-pack=git -c core.hooksPath=/dev/null receive-pack",))
        assert code != 0 and "lineage hub: refused: loop may only fetch from or push to luna.git with git" in err, err
        code, err = over_ssh("loop", "main")
        assert code != 0 and "lineage hub: refused to move refs/heads/main: no arbiter verdict" in err, err
        code, err = over_ssh("ada", f"{G001}:refs/heads/candidates/G001-s")
        assert code != 0 and "ada is the hub's approver; only a proposer pushes candidate branches" in err, err
        code, err = over_ssh("stranger", f"{G001}:refs/heads/candidates/G001-s")
        assert code != 0 and "Permission denied (publickey)" in err, err
        assert refs(hub) == before
        assert over_ssh("loop", f"{G001}:refs/heads/candidates/G001-s")[0] == 0
        log = lineage(tmp_path, "hub", "log", hub).stdout
        assert any(" loop " in ln and " accepted " in ln and "candidates/G001-s" in ln for ln in log.splitlines()), log
    finally:
        code, out = server.stop()
    assert code == 0 and "stopped serving" in out, out


# ---------------------------------------------------------------- bad input: one line each, nothing moved


def test_wrong_password_unknown_user_and_a_user_without_a_role_are_refused(served, store, tmp_path):
    before = refs(served.hub)
    for url in (served.as_user("loop", "wrong"), served.as_user("mallory"), served.url):
        code, err = push(store, url, f"{G001}:refs/heads/candidates/G001-z")
        assert code != 0 and "Authentication failed" in err or "could not read Username" in err, err
        proc = lineage(tmp_path, "clone", url, tmp_path / "nope", check=False)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert proc.returncode != 0 and len(errors) == 1 and "cannot read the hub at" in errors[0], proc.stderr
        assert "wrong" not in proc.stderr and not (tmp_path / "nope").exists()
    git(served.hub, "config", "--unset", "lineage-user.loop.role")  # a password, but no role
    code, err = push(store, served.as_user("loop"), f"{G001}:refs/heads/candidates/G001-z")
    assert code != 0 and "lineage hub: refused: loop has no role on this hub" in err, err
    assert refs(served.hub) == before


def test_serve_refuses_not_a_hub_a_taken_port_and_a_missing_web_server(world, tmp_path):
    def refused(*args, env=None) -> str:
        proc = lineage(tmp_path, "hub", "serve", *args, check=False, env=env)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert proc.returncode != 0 and len(errors) == 1, proc.stderr
        return errors[0]

    assert "is not a lineage hub" in refused(str(world["store"]), "--port", "0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert f"port {port} on 127.0.0.1 is taken" in refused(str(world["hub"]), "--port", str(port))
    line = refused(str(world["hub"]), "--port", "0", env={"LINEAGE_LIGHTTPD": str(tmp_path / "no-lighttpd")})
    assert "the web server is not installed" in line
    assert "apt-get install lighttpd" in lineage(tmp_path, "hub", "serve", world["hub"], "--port", "0", check=False,
                                                 env={"LINEAGE_LIGHTTPD": "/nonexistent"}).stderr
