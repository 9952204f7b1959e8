"""The hub and its clones: hub init / serve / user / log / dvc-remote, and clone."""

from __future__ import annotations

import sys

import click

from .output import out, table

ROLE_NAMES = click.Choice(["proposer", "arbiter", "approver", "propose", "approve"])


@click.group()
def hub() -> None:
    """A shared bare repository whose receive hook enforces the arbiter for everyone; served over HTTP."""


@hub.command("init")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--name", default="hub", show_default=True, help="Git remote name to register in the current store.")
@click.option("--dvc-remote", default=None,
              help="The DVC remote the hub advertises to clones (default: the store's default DVC remote).")
@click.pass_context
def hub_init(ctx, path: str, name: str, dvc_remote: str | None) -> None:
    """Create a hub at PATH for the current store (whose main must list signers) and register it as a remote."""
    from .. import api

    h = api.hub_init(path, ".", name, dvc_remote)
    out(ctx).result(h, f"hub at {h.path} (protected branch {h.protected_branch})"
                       + (f", registered as remote '{h.remote_name}'" if h.remote_name else ""))


@hub.command("serve")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--port", default=None, type=int, help="HTTP port to listen on (0: any free port).")
@click.option("--ssh-port", default=None, type=int,
              help="SSH port to listen on (0: any free port): sshd with each user's key forced to git.")
@click.option("--bind", default="127.0.0.1", show_default=True,
              help="Address to listen on; put TLS in front (docs/hub.md) before binding beyond loopback.")
@click.pass_context
def hub_serve(ctx, path: str, port: int | None, ssh_port: int | None, bind: str) -> None:
    """Serve the hub at PATH over smart HTTP (lighttpd + git http-backend, every request authenticated)
    and/or SSH (sshd, one key per user).

    Runs in the foreground and prints each URL; SIGTERM or Ctrl-C stops it.
    """
    from .. import api

    s = api.hub_serve(path, port, bind, echo=click.echo, ssh_port=ssh_port)
    out(ctx).result(s, f"stopped serving {s.hub} ({s.stopped_by})")


@hub.group("user")
def hub_user() -> None:
    """The users of a served hub: a password each and one role (proposer, arbiter, approver)."""


@hub_user.command("add")
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("name")
@click.option("--role", required=True, type=ROLE_NAMES, help="What the user may push (docs/hub.md).")
@click.option("--password-file", default=None, type=click.File("r"),
              help="Read the password from the first line of this file ('-': stdin).")
@click.option("--ssh-key", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Let the user in over SSH with this public key instead (no password asked).")
@click.pass_context
def hub_user_add(ctx, path: str, name: str, role: str, password_file, ssh_key: str | None) -> None:
    """Give the hub at PATH a user NAME with a password (stdin, --password-file or a prompt) and one role."""
    from pathlib import Path

    from .. import api

    if ssh_key is not None:
        added, held = api.hub_user_add_key(path, name, role, Path(ssh_key).read_text())
        out(ctx).result({"user": added, "role": held}, f"added {added}'s SSH key to the hub ({held})")
        return
    if password_file is not None:
        password = password_file.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    added, held = api.hub_user_add(path, name, role, password)
    out(ctx).result({"user": added, "role": held}, f"added {added} to the hub as its {held}")


@hub_user.command("remove")
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("name")
@click.pass_context
def hub_user_remove(ctx, path: str, name: str) -> None:
    """Take user NAME (password and role) off the hub at PATH."""
    from .. import api

    api.hub_user_remove(path, name)
    out(ctx).result({"removed": name}, f"removed {name}")


@hub_user.command("list")
@click.argument("path", type=click.Path(file_okay=False))
@click.pass_context
def hub_user_list(ctx, path: str) -> None:
    """The users of the hub at PATH and their roles."""
    from .. import api

    rows = api.hub_users(path)
    out(ctx).result([{"user": n, "role": r} for n, r in rows],
                    table([[n, r] for n, r in rows], ["user", "role"]) if rows else "no users")


@hub.command("log")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("-n", "limit", default=0, type=int, help="Only the last N entries (0: all).")
@click.pass_context
def hub_log(ctx, path: str, limit: int) -> None:
    """Who pushed each ref update to the hub at PATH, accepted or refused (its push log)."""
    from .. import api

    rows = api.hub_log(path)
    rows = rows[-limit:] if limit > 0 else rows
    text = table([[r.get("time", ""), r.get("user", ""), r.get("outcome", ""), r.get("ref", ""),
                   str(r.get("new", ""))[:12], r.get("reason", "")] for r in rows],
                 ["time", "user", "outcome", "ref", "new", "reason"]) if rows else "no pushes yet"
    out(ctx).result(rows, text)


@hub.command("dvc-remote")
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("url")
@click.pass_context
def hub_dvc_remote(ctx, path: str, url: str) -> None:
    """Set the DVC remote the hub at PATH advertises to clones (e.g. s3://bucket/luna)."""
    from .. import api

    api.hub_dvc_remote(path, url)
    out(ctx).result({"dvc_remote": url}, f"the hub advertises the DVC remote {url}")


@click.command()
@click.argument("url")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--dvc-remote", default=None, help="Use this DVC remote instead of the one the hub advertises.")
@click.pass_context
def clone(ctx, url: str, dest: str, dvc_remote: str | None) -> None:
    """Clone the hub at URL into DEST: its DVC remote, the local hook, the log, verdicts and served weights.

    Credentials are git's own: https://USER:PASSWORD@HOST/…, a credential helper, or GIT_ASKPASS.
    """
    from .. import api

    c = api.clone(url, dest, dvc_remote)
    out(ctx).result(c, f"cloned {c.url} into {c.path} ({c.protected_branch} serves {c.serves or 'nothing yet'}; "
                       f"DVC remote {c.dvc_remote})")


COMMANDS = (hub, clone)
