"""DVC stage entry point: prepare (the work is in lineage.pipeline.prepare)."""

from lineage.pipeline.common import run_stage
from lineage.pipeline.prepare import main

raise SystemExit(run_stage(main))
