"""DVC stage entry point: gate (the work is in lineage.pipeline.gating)."""

from lineage.pipeline.common import run_stage
from lineage.pipeline.gating import main

raise SystemExit(run_stage(main))
