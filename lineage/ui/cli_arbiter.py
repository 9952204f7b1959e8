"""The independent arbiter: its sealed exam, its evaluation of a candidate, its watch over a hub."""

from __future__ import annotations

import click

from .output import out, table

HOME_HELP = "The arbiter's private directory (default: $XDG_CONFIG_HOME/lineage/arbiter)."


@click.group()
def arbiter() -> None:
    """The independent arbiter: evaluates candidates itself and signs its verdicts (role lineage-arbiter)."""


def _sealing_text(s) -> str:
    text = [f"sealed exam: {s.items} items about {', '.join(s.deltas)} in {s.home} "
            f"({'new secret seed' if s.seed_created else 'kept'}), digest {s.digest}"]
    if s.pin_path:
        text.append(f"staged the pin {s.pin_path}")
        text.append('next: an approver runs lineage change --reason "pin the sealed exam"')
    else:
        text.append("the protected branch already pins this sealed exam; nothing to stage")
    return "\n".join(text)


@arbiter.command("init")
@click.option("--home", default=None, type=click.Path(file_okay=False), help=HOME_HELP)
@click.pass_context
def arbiter_init(ctx, home: str | None) -> None:
    """Make the arbiter's directory and secret seed, derive the bundled corpus's sealed exam, stage its pin."""
    from .. import api

    s = api.arbiter_init(home, ".")
    out(ctx).result(s, _sealing_text(s))


@arbiter.command("seal")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--home", default=None, type=click.Path(file_okay=False), help=HOME_HELP)
@click.pass_context
def arbiter_seal(ctx, file: str, home: str | None) -> None:
    """Keep FILE (generalize items: delta, prompt, choices, answer) as the sealed exam; stage its pin."""
    from .. import api

    s = api.arbiter_seal(file, home, ".")
    out(ctx).result(s, _sealing_text(s))


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def summary(e) -> str:
    """One screen: the verdict, what failed, measured against claimed, the divergences, the verdict ref."""
    m, c = e.metrics, e.claimed if isinstance(e.claimed, dict) else {}
    text = [f"{e.candidate} ({e.commit[:12]}): {e.verdict}"
            + (f"  failed: {', '.join(e.failed)}" if e.failed else ""),
            f"judged by {e.arbiter} (key {e.key}) against {e.served.get('generation') or 'the base'} on main "
            f"{e.policy_commit[:12]}; new data: {', '.join(e.new_deltas) or 'none'}"]
    rows = []
    for label, path in (("recall", ("child", "recall")), ("generalize", ("child", "generalize")),
                        ("law_violations", ("child", "law_violations")), ("tone_drift", ("tone_drift",)),
                        ("parent recall", ("parent", "recall")), ("parent generalize", ("parent", "generalize"))):
        rows.append([label, _number(_get(m, path)), _number(_get(c, path))])
    sealed = m.get("sealed") or {}
    if sealed.get("items"):
        rows.append(["sealed generalize", _number(sealed.get("child")), "(never shown)"])
        rows.append(["parent sealed generalize", _number(sealed.get("parent")), "(never shown)"])
    rows.append(["output_mb", _number(m.get("output_mb")), "-"])
    text.append(table(rows, ["", "measured", "claimed"]))
    gains = e.gains
    text.append(f"generalize gain: visible {gains['visible']:+.2f}, sealed "
                + (f"{gains['sealed']:+.2f}" if gains.get("sealed") is not None else "not measured")
                + f" (sealed_margin {gains['margin']:g})")
    text += [f"reason: {r}" for r in e.reasons]
    text.append("divergences: " + ("; ".join(e.divergences) if e.divergences else "none"))
    text += [f"note: {n}" for n in e.notes]
    text.append(f"verdict: {e.ref} ({e.ref_commit[:12]})" + (f", pushed to {e.pushed}" if e.pushed else ""))
    return "\n".join(text)


def _get(data, path):
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


@arbiter.command("evaluate")
@click.argument("candidate")
@click.option("--push", "push", default=None, metavar="REMOTE", help="Push the verdict ref to REMOTE (a hub).")
@click.option("--home", default=None, type=click.Path(file_okay=False), help=HOME_HELP)
@click.pass_context
def arbiter_evaluate(ctx, candidate: str, push: str | None, home: str | None) -> None:
    """Measure CANDIDATE on main's exam and the sealed exam, judge by main's policy, sign and store the verdict."""
    from .. import api

    o = out(ctx)
    e = api.arbiter_evaluate(candidate, ".", home, push, progress=o.info)
    o.result(e, summary(e))
    if e.verdict != "PASS":
        ctx.exit(1)


@arbiter.command("watch")
@click.argument("hub")
@click.option("--once", is_flag=True, help="One pass, then exit.")
@click.option("--interval", default=60.0, show_default=True, type=float, help="Seconds between passes.")
@click.option("--home", default=None, type=click.Path(file_okay=False), help=HOME_HELP)
@click.pass_context
def arbiter_watch(ctx, hub: str, once: bool, interval: float, home: str | None) -> None:
    """Evaluate every frozen candidate on HUB whose parent is its main and that has no verdict; push the verdicts."""
    from .. import api

    o = out(ctx)
    seen = api.arbiter_watch(hub, ".", home, once, interval, echo=None if o.as_json else click.echo,
                             progress=o.info)
    if o.as_json:
        o.result([{"candidate": s.candidate, "commit": s.commit, "verdict": s.verdict, "line": s.line}
                  for s in seen])
    elif once and not seen:
        click.echo(f"nothing to judge on {hub}")


COMMANDS = (arbiter,)
