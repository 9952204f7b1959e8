"""core: pure rules and records (errors, canonical bytes, policy, settings, metrics, gate, data gate,
corpus, cards, hashes). No processes, no git, no heavy libraries."""
