"""The embedded default data: real human teleoperation demos that robosuite ships.

Found through the installed `robosuite` package (not imported: only its files are read), so
training runs out of the box with no download. Actions are OSC_POSE deltas, 7-d per arm:
`lift` (3 demos, keyboard teleop) and `two_arm_handover` (7 demos, 14-d: two 7-d arms, phone teleop).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

EMBEDDED_DEMOS = (
    "models/assets/demonstrations/lift/demo.hdf5",
    "models/assets/demonstrations/handover/panda_panda/demo.hdf5",
)


def robosuite_root() -> Path:
    """Folder of the installed robosuite package (raises if it is not installed)."""
    spec = importlib.util.find_spec("robosuite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "robosuite is not installed, so its bundled teleoperation demos are unavailable: "
            "install the data extra (pip install 'rvq[data]') or pass demo files explicitly"
        )
    return Path(list(spec.submodule_search_locations)[0])


def embedded_demo_files() -> list[Path]:
    """Paths of the bundled 7-d-per-arm demo files (each must exist)."""
    root = robosuite_root()
    files = [root / rel for rel in EMBEDDED_DEMOS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"robosuite at {root} lacks its bundled demos: {missing}")
    return files
