"""loop: the evolution loop (windows, risk, proposals, shadow, stats), built on moves."""
