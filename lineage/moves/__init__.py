"""moves: the commands that change a store (init, data add, propose, promote, rollback, change,
recover, gc, burn-in, push and pull)."""
