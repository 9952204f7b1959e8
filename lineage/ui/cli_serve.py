"""The serve command: the protected branch's generation over OpenAI-compatible HTTP."""

from __future__ import annotations

import click

from .output import out


@click.command()
@click.option("--port", type=int, default=None, help="TCP port (default serve.port in params.yaml, 8000; 0 picks a "
                                                     "free one).")
@click.option("--bind", default=None, help="Address to listen on (default serve.bind, 127.0.0.1).")
@click.option("--shadow", "shadow", default=None, metavar="CANDIDATE",
              help="Mirror a sample of live requests to CANDIDATE (never returned); parity goes to the log.")
@click.option("--shadow-rate", type=click.FloatRange(0, 1), default=None,
              help="Share of requests mirrored to the shadow (default serve.shadow_rate, 0.25).")
@click.option("--poll", "poll", type=click.FloatRange(0.05, 3600), default=None,
              help="Seconds between looks at the protected branch (default serve.poll_seconds, 1).")
@click.pass_context
def serve(ctx, port: int | None, bind: str | None, shadow: str | None, shadow_rate: float | None,
          poll: float | None) -> None:
    """Answer /v1/completions, /v1/chat/completions, /v1/models, /health and /metrics with the served generation.

    When the protected branch moves (promote, rollback, pull) the server loads the new generation
    beside the old one, checks it against hashes.csv and switches between two requests; after a
    promotion a live burn-in (serve.burn_in_* in params.yaml) rolls back by itself on failure.
    Stop with Ctrl-C.
    """
    from .. import api

    o = out(ctx)

    def ready(info: dict) -> None:
        shadowing = f", shadowing {info['shadow']}" if info["shadow"] else ""
        o.result(info, f"serving {info['generation']} ({info['commit'][:12]}) on {info['url']}{shadowing}")
        o.info("stop with Ctrl-C")

    done = api.serve(".", port, bind, shadow, shadow_rate, ready, poll)
    moves = ", ".join(f"{c['from']}->{c['to']} {c['result']}" for c in done["cutovers"]) or "none"
    o.info(f"stopped; served {done['served']} last; cut-overs: {moves}")


COMMANDS = (serve,)
