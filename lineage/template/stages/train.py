"""DVC stage entry point: train (the work is in lineage.pipeline.train)."""

from lineage.pipeline.common import run_stage
from lineage.pipeline.train import main

raise SystemExit(run_stage(main))
