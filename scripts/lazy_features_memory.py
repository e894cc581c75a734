"""Peak memory of head training on a Phase 2 file read lazily vs into RAM (docs/history/RESULTS.md, issue 18).

    PYTHONPATH=. python scripts/lazy_features_memory.py [ROWS] [DIM]

Writes a Phase 2 file of ROWS x DIM float32 features (default 16000 x 4096, 250 MiB), then trains a main head for 30
steps in a fresh process per setting and prints the growth of its peak resident memory during load + training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mocks.phase2_files import write_phase2_file
from tests.unit.data.test_feature_store import CHILD


def main(rows: int = 16000, dim: int = 4096) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_phase2_file(Path(tmp) / "features.h5", rows, dim, steps_per_episode=400)
        print(f"features: {rows} x {dim} float32 = {rows * dim * 4 / 2**20:.0f} MiB")
        print("| read | peak RSS growth (MiB) |\n|---|---|")
        for label, budget in (("lazy (RVQ_FEATURE_MEMORY_MB=8)", "8"), ("into RAM (RVQ_FEATURE_MEMORY_MB=100000)", "100000")):
            done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(dim)], capture_output=True, text=True,
                                  env={**os.environ, "RVQ_FEATURE_MEMORY_MB": budget}, check=True)
            report = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {label} | {report['peak_growth_kb'] / 1024:.0f} |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
