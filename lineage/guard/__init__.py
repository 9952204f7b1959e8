"""guard: who may move the protected branch (arbiter, attestations, signers, local hook, hub hook)."""
