"""store: what a store is and holds (root, refs and their names, weights and hashes.csv, locks,
journal, ref transactions, the evolution log, the record). Reads and writes through adapters only."""
