"""HDF5 demo reading: LIBERO and robomimic layouts, multi-arm split, clear errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mocks.libero_files import write_libero_file, write_libero_folder
from rvq.data import embedded_demo_files, read_demo_file, read_demos, read_obs


def test_libero_file_actions_and_instruction(tmp_path: Path) -> None:
    written = write_libero_file(tmp_path / "t.hdf5", "put the bowl on the plate", num_demos=3)
    episodes = read_demo_file(tmp_path / "t.hdf5", task_id=4)
    assert [e.demo for e in episodes] == ["demo_0", "demo_1", "demo_2"]
    for ep, actions in zip(episodes, written):
        assert np.allclose(ep.actions, actions) and ep.actions.dtype == np.float32
        assert ep.instruction == "put the bowl on the plate" and ep.task_id == 4
        assert "agentview_rgb" in ep.obs_keys
    images = read_obs(episodes[1], "agentview_rgb")
    assert images.shape == (len(episodes[1]), 32, 32, 3) and images.dtype == np.uint8
    with pytest.raises(KeyError, match="no observation 'wrist'"):
        read_obs(episodes[0], "wrist")


def test_folder_is_one_dataset_with_task_ids(tmp_path: Path) -> None:
    write_libero_folder(tmp_path, ["open the drawer", "close the drawer"], num_demos=2)
    episodes = read_demos([tmp_path])
    assert sorted({(e.task_id, e.instruction) for e in episodes}) == [(0, "close the drawer"), (1, "open the drawer")]
    assert len(episodes) == 4


def test_demo_numbering_sorts_numerically(tmp_path: Path) -> None:
    write_libero_file(tmp_path / "t.hdf5", "x", num_demos=12, steps=10, images=False)
    assert [e.demo for e in read_demo_file(tmp_path / "t.hdf5")][:3] == ["demo_0", "demo_1", "demo_2"]
    assert read_demo_file(tmp_path / "t.hdf5")[-1].demo == "demo_11"


def test_multi_arm_split(tmp_path: Path) -> None:
    written = write_libero_file(tmp_path / "two.hdf5", "handover", num_demos=2, action_dim=14, images=False)
    episodes = read_demo_file(tmp_path / "two.hdf5")
    assert len(episodes) == 4 and [e.arm for e in episodes] == [0, 1, 0, 1]
    assert np.allclose(episodes[1].actions, written[0][:, 7:])
    assert episodes[0].group == episodes[1].group != episodes[2].group
    with pytest.raises(ValueError, match="width 14; expected 7$"):
        read_demo_file(tmp_path / "two.hdf5", split_arms=False)


def test_errors_name_file_and_demo(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="demo file not found"):
        read_demo_file(tmp_path / "missing.hdf5")
    path = tmp_path / "bad.hdf5"
    write_libero_file(path, "x", num_demos=2, steps=10, images=False)
    with h5py.File(path, "a") as f:
        del f["data/demo_1/actions"]
    with pytest.raises(ValueError, match=r"bad.hdf5:demo_1: missing 'actions'"):
        read_demo_file(path)
    with h5py.File(path, "a") as f:
        f["data/demo_1/actions"] = np.zeros((10, 6))
    with pytest.raises(ValueError, match=r"bad.hdf5:demo_1: actions have width 6; expected 7"):
        read_demo_file(path)
    with h5py.File(path, "a") as f:
        del f["data/demo_1/actions"]
        bad = np.zeros((10, 7))
        bad[3, 2] = np.nan
        f["data/demo_1/actions"] = bad
    with pytest.raises(ValueError, match=r"bad.hdf5:demo_1: 1 action row\(s\) contain NaN/inf, first at step 3"):
        read_demo_file(path)
    (tmp_path / "text.hdf5").write_text("hello")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        read_demo_file(tmp_path / "text.hdf5")
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_group("stuff")
    with pytest.raises(ValueError, match="no 'data' group"):
        read_demo_file(tmp_path / "empty.hdf5")


def test_embedded_default_is_real_robosuite_data() -> None:
    files = embedded_demo_files()
    episodes = read_demos(files)
    lift = [e for e in episodes if "lift" in e.source]
    handover = [e for e in episodes if "handover" in e.source]
    assert len(lift) == 3 and sum(len(e) for e in lift) == 1384
    assert len(handover) == 14 and {e.arm for e in handover} == {0, 1}
    assert all(e.actions.shape[1] == 7 for e in episodes)
    assert {e.instruction for e in episodes} == {"Lift", "TwoArmHandover"}
