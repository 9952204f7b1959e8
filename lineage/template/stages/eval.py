"""DVC stage entry point: eval (the work is in lineage.pipeline.evaluate)."""

from lineage.pipeline.common import run_stage
from lineage.pipeline.evaluate import main

raise SystemExit(run_stage(main))
