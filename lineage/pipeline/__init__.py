"""Pipeline stages that DVC runs (through the thin scripts in stages/)."""
