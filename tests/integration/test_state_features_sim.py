"""State features in the real LIBERO simulator: the documented per-task scenes match the suites' BDDL files and
the live observations, `rvq collect-demos --random-resets` starts from seeded randomized placements (not the
evaluation initial states) and records what state features need, and features rebuilt from the file equal
the live ones."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

if importlib.util.find_spec("libero") is None:
    if os.environ.get("RVQ_REQUIRE_LIBERO") == "1":
        raise RuntimeError("RVQ_REQUIRE_LIBERO=1 but LIBERO is not installed (rvq setup-libero --install)")
    pytest.skip("LIBERO is not installed (pip install -e '.[libero]' && rvq setup-libero --install)",
                allow_module_level=True)

from rvq.backbones.state import SCENE_OBJECTS, StateFeatures  # noqa: E402
from rvq.cli import main  # noqa: E402
from rvq.data import read_demos  # noqa: E402
from rvq.data.state_obs import read_state_observations  # noqa: E402
from rvq.envs.libero_env import LiberoEnv  # noqa: E402
from rvq.expert.collect import reset_seed  # noqa: E402


def bddl_objects(suite: str, task: int) -> tuple[str, ...]:
    from rvq.envs.libero_env import _benchmark
    from rvq.envs.setup import prepare_libero

    prepare_libero()
    text = Path(_benchmark(suite).get_task_bddl_file_path(task)).read_text()
    block = re.search(r"\(:objects(.*?)\)", text, re.S).group(1)
    return tuple(sorted(n for line in block.splitlines() if " - " in line for n in line.split(" - ")[0].split()))


@pytest.mark.parametrize("suite", sorted(SCENE_OBJECTS))
def test_documented_scenes_are_the_bddl_objects(suite: str) -> None:
    for task, names in SCENE_OBJECTS[suite].items():
        assert tuple(sorted(names)) == bddl_objects(suite, task), (suite, task)


def test_random_reset_demos_rebuild_the_live_state_features(tmp_path: Path) -> None:
    out = tmp_path / "demos"
    assert main(["collect-demos", "--suite", "libero_object", "--tasks", "0", "--random-resets", "1", "--no-images",
                 "--out-dir", str(out)]) == 0
    (path,) = sorted(out.glob("*_demo.hdf5"))
    with h5py.File(path, "r") as f:
        data = f["data"]
        assert data.attrs["starts"] == "random_resets" and data.attrs["kept"] == 1
        seed = int(data["demo_0"].attrs["reset_seed"])
        assert seed == reset_seed(0, int(data.attrs["attempts"]) - 1) and data["demo_0"].attrs["init_state_index"] == -1
    (episode,) = read_demos([out])
    recorded = read_state_observations(episode)
    features = StateFeatures.for_suite("libero_object")
    env = LiberoEnv("libero_object", 0, render=False)
    try:
        live = env.reset_random(seed)  # the same seed gives the same placement
        fixed = env.reset(0)
    finally:
        env.close()
    assert sorted(live["objects"]) == sorted(SCENE_OBJECTS["libero_object"][0])
    np.testing.assert_allclose(features.vector(recorded[0]), features.vector(live), atol=1e-6)
    moved = np.abs(features.vector(live) - features.vector(fixed))[8:-10].max()
    assert moved > 0.01  # a randomized placement, not evaluation initial state 0
    assert main(["collect-demos", "--suite", "libero_object", "--tasks", "0", "--trials", "1", "--no-images",
                 "--out-dir", str(out)]) == 2  # a finished file of other settings is refused, not reused
