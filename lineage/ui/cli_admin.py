"""Commands that keep a store: keys, repair, gc, push and pull (the hub and clone: cli_hub.py)."""

from __future__ import annotations

import click

from .output import out

ROLE_CHOICE = click.Choice(["propose", "arbiter", "approve"])


@click.group()
def keys() -> None:
    """Signing keys and allowed_signers: who may propose, judge (arbiter) and approve; one key, one role."""


@keys.command("init")
@click.option("--principal", default=None, help="Name in allowed_signers (default: git's user.email).")
@click.option("--path", default=None, type=click.Path(dir_okay=False),
              help="Where to create the key (default: the configured key, else ~/.config/lineage/signing_key).")
@click.option("--role", default="approve", show_default=True, type=ROLE_CHOICE,
              help="The role the printed allowed_signers line gives the key.")
@click.pass_context
def keys_init(ctx, principal: str | None, path: str | None, role: str) -> None:
    """Create an ed25519 signing key (an existing one is kept) and print its allowed_signers line."""
    from .. import api

    k = api.keys_init(principal, path, ".", role)
    text = [f"{'created' if k.created else 'kept'} {k.path} ({k.fingerprint})",
            f"allowed_signers line: {k.line}"]
    if k.roles_on_tip:
        text.append(f"this store already lets it: {', '.join(k.roles_on_tip)}")
    else:
        text.append(f"next: lineage keys allow <principal> {k.path}.pub --role {k.role} && "
                    "lineage change --reason 'add a signer'")
    out(ctx).result(k, "\n".join(text))


@keys.command("allow")
@click.argument("principal")
@click.argument("public_key")
@click.option("--role", required=True, type=ROLE_CHOICE,
              help="What the key may sign: propose (rollbacks to a generation not withdrawn), arbiter "
                   "(verdicts) or approve (approvals, changes, any rollback). One key holds one role.")
@click.pass_context
def keys_allow(ctx, principal: str, public_key: str, role: str) -> None:
    """Add PUBLIC_KEY (a .pub file or 'ssh-ed25519 AAAA…') for PRINCIPAL to allowed_signers and stage it."""
    from .. import api

    line = api.keys_allow(principal, public_key, role, ".")
    out(ctx).result({"line": line}, f"staged in allowed_signers: {line}\n"
                                    "next: lineage change --reason '...' (signed by a current approver)")


@click.command()
@click.pass_context
def repair(ctx) -> None:
    """Finish or undo commands that were killed mid-way and clear stale git locks no process holds."""
    from .. import api

    r = api.repair(".")
    text = [f"in the way: {b}" for b in r.blocking]  # what was recovered is already on stderr, one line each
    text += [f"not recorded: {u}" for u in r.unrecorded]
    text.append(f"repair: {len(r.recovered)} interrupted command(s) or stale lock(s) dealt with; "
                + ("the store is consistent" if r.ok else f"{len(r.blocking)} lock(s) still held"))
    out(ctx).result({"recovered": r.recovered, "blocking": r.blocking, "unrecorded": r.unrecorded, "ok": r.ok},
                    "\n".join(text))
    if not r.ok:
        ctx.exit(3)


@click.command("gc")
@click.option("--cloud", is_flag=True, help="Also delete unreferenced objects from the DVC remote "
                                             "(refused where other clones' refs could need them).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.pass_context
def gc_cmd(ctx, cloud: bool, dry_run: bool) -> None:
    """Free DVC cache space, keeping the data of every commit, tag, branch, experiment and the work tree."""
    from .. import api

    r = api.gc(".", cloud=cloud, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    text = [f"gc: {verb} {r.cache_objects} object(s) from the DVC cache"
            + ("" if dry_run else f", {_bytes(r.cache_bytes)} freed")]
    if cloud:
        text.append(f"gc: {verb} {r.remote_objects} object(s) from the DVC remote"
                    + ("" if dry_run else f", {_bytes(r.remote_bytes)} freed" if r.remote_bytes is not None
                       else " (bytes freed not measured on a non-local remote)"))
    text += [f"gc: {line}" for line in r.pruned_worktrees]
    out(ctx).result(r, "\n".join(text))


def _bytes(n: int) -> str:
    return f"{n:,} bytes" + (f" ({n / (1 << 20):.1f} MiB)" if n >= 1 << 20 else "")


@click.command()
@click.option("--remote", default="hub", show_default=True, help="Git remote of the hub.")
@click.pass_context
def push(ctx, remote: str) -> None:
    """Push DVC data, then the protected branch, candidates, tags, log and verdicts atomically."""
    from .. import api

    r = api.push(".", remote)
    out(ctx).result(r, f"pushed {len(r.refs)} ref(s) to {r.remote} after the DVC data")


@click.command()
@click.option("--remote", default="hub", show_default=True, help="Git remote of the hub.")
@click.pass_context
def pull(ctx, remote: str) -> None:
    """Fetch lineage refs (log and verdicts included) and DVC data from the hub; fast-forward the protected branch."""
    from .. import api

    r = api.pull(".", remote)
    out(ctx).result(r, f"pulled from {remote}; protected branch {'moved' if r['protected_moved'] else 'unchanged'}")


COMMANDS = (keys, repair, gc_cmd, push, pull)
