"""Demo collection settings: randomized-reset seeds and the checks made before any simulator starts."""

from __future__ import annotations

import pytest

from rvq.expert.collect import CollectConfig, collect_demos, reset_seed


def test_reset_seeds_are_distinct_per_task_and_attempt_and_stable() -> None:
    seeds = {reset_seed(task, attempt) for task in range(10) for attempt in range(500)}
    assert len(seeds) == 10 * 500 and min(seeds) > 50  # never a small trial index or the eval seed 7
    assert reset_seed(3, 4) == reset_seed(3, 4)


def test_attempt_limit_and_refusals(tmp_path) -> None:
    assert CollectConfig(random_resets=50).attempt_limit() == 160
    assert CollectConfig(random_resets=50, max_attempts=70).attempt_limit() == 70
    with pytest.raises(ValueError, match="random_resets must be >= 0"):
        collect_demos(CollectConfig(random_resets=-1, out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"max_attempts must be in \[1, 10000\]"):
        collect_demos(CollectConfig(random_resets=5, max_attempts=20000, out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"trials must be in \[1, 50\]"):
        collect_demos(CollectConfig(trials=51, out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="format must be 'hdf5' or 'lerobot'"):
        collect_demos(CollectConfig(format="rlds", out_dir=str(tmp_path)))


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_export_writes_the_collected_demos_as_a_lerobot_dataset_and_a_rerun_rewrites_it(tmp_path, version) -> None:
    import numpy as np

    from mocks.libero_files import write_libero_folder
    from rvq.data.episodes import read_demos
    from rvq.expert.collect import export_lerobot

    write_libero_folder(tmp_path, ["put the cup on the plate"], num_demos=2, steps=8, image_size=8)
    cfg = CollectConfig(out_dir=str(tmp_path), format="lerobot", lerobot_version=version)
    export_lerobot(cfg)
    out = export_lerobot(cfg)  # a rerun replaces the dataset instead of refusing the folder
    assert out == tmp_path / "lerobot" and not (tmp_path / "lerobot.tmp").exists()
    hdf5, lerobot = read_demos([tmp_path], split_arms=False), read_demos([out], split_arms=False)
    assert [e.instruction for e in lerobot] == [e.instruction for e in hdf5]
    for a, b in zip(hdf5, lerobot):
        np.testing.assert_array_equal(a.actions, b.actions)
