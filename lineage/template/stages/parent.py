"""DVC stage entry point: parent (the work is in lineage.pipeline.parent)."""

from lineage.pipeline.common import run_stage
from lineage.pipeline.parent import main

raise SystemExit(run_stage(main))
