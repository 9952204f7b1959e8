"""Commands of the evolution loop: evolve, proposal, shadow, stats."""

from __future__ import annotations

import click

from .output import out, table


def _csv_ints(value: str | None) -> list[int] | None:
    try:
        return [int(v) for v in value.split(",")] if value else None
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None


@click.command()
@click.option("--cycle", type=int, default=None, help="The caller's heartbeat cycle; acts only when a window opens.")
@click.option("-k", "k", type=int, default=None, help="Candidates in this window (default evolve.k, capped).")
@click.option("--seeds", default=None, help="Comma-separated seeds, one per candidate.")
@click.option("--strategies", default=None, help="Comma-separated data strategies, cycled over candidates.")
@click.pass_context
def evolve(ctx, cycle: int | None, k: int | None, seeds: str | None, strategies: str | None) -> None:
    """One evolution window: preconditions, K candidates, rank, freeze all, propose the best."""
    from .. import api

    o = out(ctx)
    r = api.evolve(".", cycle, k, _csv_ints(seeds), strategies.split(",") if strategies else None, progress=o.info)
    lines = [f"window {r.window or '-'}: {r.state}: {r.reason}"]
    if r.ranked:
        lines.append(table([[i + 1, c["branch"].split("/", 1)[1], c["seed"], c["strategy"], c["verdict"],
                              "" if c.get("composite") is None else f"{c['composite']:.4f}",
                              ", ".join(c.get("failed") or [])] for i, c in enumerate(r.ranked)],
                            ["rank", "candidate", "seed", "strategy", "verdict", "score", "failed"]))
    if r.proposal and r.proposal["status"] == "open":
        lines.append("approve with: lineage proposal approve   (or: lineage proposal reject --reason TEXT)")
    o.result(r, "\n".join(lines))


@click.group()
def proposal() -> None:
    """The open promotion proposal of the evolution loop."""


@proposal.command("show")
@click.pass_context
def proposal_show(ctx) -> None:
    """Show the proposal: current head, proposed head, improvement, gates, hashes."""
    from .. import api

    p = api.proposal_show(".")
    rows = [[c["name"], c["observed"], f'{c["op"]} {c["threshold"]}', "" if c["parent"] is None else c["parent"],
             "n.a." if not c.get("applicable", True) else ("PASS" if c["passed"] else "FAIL")]
            for c in p.get("criteria") or []]
    text = [f"proposal ({p['status']}): {p['candidate']} ({p['commit'][:12]}) over HEAD {p['current_head'][:12]}",
            f"improvement {p['improvement']:+.4f} (composite {p['composite']:.4f} vs {p['head_composite']})",
            f"risk: {p['risk']} ({'; '.join(p['risk_reasons'])})", table(rows, ["criterion", "child", "threshold",
                                                                                  "parent", "result"])]
    text += [f"  {k}: {v}" for k, v in sorted((p.get("hashes") or {}).items())]
    live = p.get("live_shadow")
    if live:
        text.append(f"live shadow: parity {live['parity']} over {live['samples']} mirrored requests against "
                    f"{live['served']} (p50 {live['latency_ms']['candidate_p50']} ms vs served "
                    f"{live['latency_ms']['served_p50']} ms; {len(live['differ'])} differences kept)")
    else:
        text.append("live shadow: none yet (lineage serve --shadow " + p["candidate"] + ")")
    out(ctx).result(p, "\n".join(text))


@proposal.command("approve")
@click.pass_context
def proposal_approve(ctx) -> None:
    """Promote the proposal through the arbiter, recording your approval."""
    from .. import api

    p = api.proposal_decide(True, None, ".")
    out(ctx).result(p, f"approved and promoted {p['candidate']}")


@proposal.command("reject")
@click.option("--reason", required=True, help="Why: recorded in the evolution log.")
@click.pass_context
def proposal_reject(ctx, reason: str) -> None:
    """Reject the proposal, recording why."""
    from .. import api

    p = api.proposal_decide(False, reason, ".")
    out(ctx).result(p, f"rejected {p['candidate']}: {reason}")


@click.command()
@click.argument("candidate")
@click.pass_context
def shadow(ctx, candidate: str) -> None:
    """Run HEAD and CANDIDATE side by side on everyday prompts; report parity."""
    from .. import api

    r = api.shadow(candidate, ".")
    lines = [f"parity {r['parity']:.3f} over {r['prompts']} prompts ({len(r['differ'])} differ)"]
    lines += [f"  {d['prompt']!r}: HEAD {d['a']!r} | candidate {d['b']!r}" for d in r["differ"][:10]]
    out(ctx).result(r, "\n".join(lines))


@click.command()
@click.pass_context
def stats(ctx) -> None:
    """How the evolution loop is doing: proposals, promotions, rejections, rollbacks, rates."""
    from .. import api

    s = api.stats(".")
    text = [f"windows {s.windows} (refused {s.refused_windows}), candidates {s.proposals}, promoted {s.promoted}, "
            f"rejected {s.rejected}, rollbacks {s.rollbacks}",
            f"promotion success rate {s.promotion_success_rate}, regression rate {s.regression_rate}, "
            f"mean cycles to revert {s.mean_cycles_to_revert}, mean seconds to revert {s.mean_seconds_to_revert}",
            "rejected by: " + (", ".join(f"{k} {v}" for k, v in sorted(s.rejected_by.items())) or "none")]
    if s.plateau:
        text.append(f"plateau: {s.plateau}")
    out(ctx).result(s, "\n".join(text))


COMMANDS = (evolve, proposal, shadow, stats)
