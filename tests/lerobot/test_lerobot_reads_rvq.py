"""LeRobot's own code on what `rvq collect-demos --format lerobot` wrote (issue 49).

Run by `nox -s lerobot` in its own environment (LeRobot 0.4.4 and the torch it pins); the checks read with LeRobot's
code, h5py and numpy only, never rvq's. $RVQ_LEROBOT_CHECK names the folder the session filled:
`demos/` (rvq's HDF5 files and `demos/lerobot`, layout v3.0) and `demos_v21/` (the same files, layout v2.1). The
last test also writes `made_by_lerobot/` for the rvq side (tests/lerobot/test_rvq_reads_lerobot.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from lerobot.datasets.compute_stats import (aggregate_stats, compute_episode_stats, get_feature_stats,
                                            sample_images)
from lerobot.datasets.lerobot_dataset import LeRobotDataset

ROOT = Path(os.environ["RVQ_LEROBOT_CHECK"])
V30, V21 = ROOT / "demos" / "lerobot", ROOT / "demos_v21" / "lerobot"
CAMERAS = {"observation.images.image": "agentview_rgb", "observation.images.wrist_image": "eye_in_hand_rgb"}
STAT_KEYS = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")


def _hdf5_demos() -> list[dict]:
    """Every demo in rvq's HDF5 files: actions, state, raw camera frames and the instruction."""
    demos = []
    for path in sorted((ROOT / "demos").glob("*.hdf5")):
        with h5py.File(path, "r") as f:
            text = json.loads(f["data"].attrs["problem_info"])["language_instruction"]
            for name in f["data"]:
                obs = f["data"][name]["obs"]
                demos.append({"actions": f["data"][name]["actions"][()], "task": text,
                              "state": np.concatenate([obs[k][()].reshape(len(obs[k]), -1)
                                                       for k in ("ee_pos", "ee_ori", "gripper_states")], axis=1),
                              **{key: obs[raw][()] for key, raw in CAMERAS.items()}})
    assert demos, f"no HDF5 demos in {ROOT / 'demos'}"
    return demos


@pytest.fixture(scope="module")
def demos() -> list[dict]:
    return _hdf5_demos()


@pytest.fixture(scope="module")
def dataset() -> LeRobotDataset:
    return LeRobotDataset("rvq/check", root=V30)


def _episode_ranges(dataset: LeRobotDataset) -> list[tuple[int, int]]:
    episodes = dataset.meta.episodes
    return [(int(a), int(b)) for a, b in zip(episodes["dataset_from_index"], episodes["dataset_to_index"])]


def _match(demos: list[dict], actions: np.ndarray) -> dict:
    """The HDF5 demo whose actions these are (bit for bit as float32, the dtype both write); exactly one."""
    found = [d for d in demos if d["actions"].shape == actions.shape
             and np.array_equal(d["actions"].astype(np.float32), actions)]
    assert len(found) == 1, f"{len(found)} HDF5 demos have these {actions.shape} actions"
    return found[0]


def test_every_frame_loads_equal_to_rvqs_hdf5(dataset: LeRobotDataset, demos: list[dict]) -> None:
    """Actions and state bit-identical, images equal to the HDF5 renders turned by 180 degrees (LIBERO's LeRobot
    datasets store them upright), task text, fps, episode boundaries."""
    assert dataset.fps == 20 and dataset.meta.total_episodes == len(demos)
    assert dataset.num_frames == sum(len(d["actions"]) for d in demos)
    matched = []
    for start, stop in _episode_ranges(dataset):
        frames = [dataset[i] for i in range(start, stop)]
        actions = torch.stack([f["action"] for f in frames]).numpy()
        demo = _match(demos, actions)
        matched.append(id(demo))
        np.testing.assert_array_equal(torch.stack([f["observation.state"] for f in frames]).numpy(),
                                      demo["state"].astype(np.float32))
        for key in CAMERAS:
            upright = demo[key][:, ::-1, ::-1].astype(np.float32) / 255  # LeRobot gives [C, H, W] in [0, 1]
            np.testing.assert_allclose(torch.stack([f[key] for f in frames]).permute(0, 2, 3, 1).numpy(), upright,
                                       atol=1e-6)
        assert {f["task"] for f in frames} == {demo["task"]}
        assert [int(f["frame_index"]) for f in frames] == list(range(stop - start))
    assert len(set(matched)) == len(demos)


def test_action_chunks_come_through_a_dataloader(demos: list[dict]) -> None:
    """`delta_timestamps` gives 8-step action chunks, padded (and flagged) past an episode's end."""
    chunked = LeRobotDataset("rvq/check", root=V30, delta_timestamps={"action": [t / 20 for t in range(8)]})
    start, stop = _episode_ranges(chunked)[0]
    demo = _match(demos, np.stack([chunked.hf_dataset[i]["action"].numpy() for i in range(start, stop)]))
    loader = torch.utils.data.DataLoader(chunked, batch_size=4, shuffle=False)
    batch, actions = next(iter(loader)), demo["actions"].astype(np.float32)
    assert batch["action"].shape == (4, 8, 7)
    for row in range(4):
        np.testing.assert_array_equal(batch["action"][row].numpy(), actions[row:row + 8])
    last = chunked[stop - 1]
    assert last["action_is_pad"].tolist() == [False] + [True] * 7
    np.testing.assert_array_equal(last["action"].numpy(), np.repeat(actions[-1:], 8, axis=0))


def _image_std(paths: list[str]) -> np.ndarray:
    """Image std by LeRobot's own function on the frames it samples, with the pixels promoted to float64 first.
    LeRobot 0.4.4 squares the uint8 pixels in uint8, which wraps (its image std comes out near 0); later LeRobot
    promotes them to float32, whose sum of 1.6 M squares over axis 0 is about 1% off. rvq writes the exact value."""
    pixels = sample_images(paths).astype(np.float64)
    return get_feature_stats(pixels, axis=(0, 2, 3), keepdims=True)["std"][0] / 255.0


def _lerobots_stats(dataset: LeRobotDataset, tmp: Path) -> list[dict]:
    """Each episode's stats by LeRobot's `compute_episode_stats` over the frames as LeRobot loads them (images
    written back to PNG files, what LeRobot computes image stats from when it records); image std by `_image_std`."""
    table = dataset.hf_dataset.with_format(None)
    features = dataset.meta.features
    out = []
    for episode, (start, stop) in enumerate(_episode_ranges(dataset)):
        rows = [table[i] for i in range(start, stop)]
        data = {}
        for key, feature in features.items():
            if feature["dtype"] == "image":
                (tmp / f"{episode}" / key).mkdir(parents=True)
                data[key] = [str(tmp / f"{episode}" / key / f"{i:06d}.png") for i in range(len(rows))]
                for row, path in zip(rows, data[key]):
                    row[key].save(path)
            else:
                data[key] = np.asarray([row[key] for row in rows])
        stats = compute_episode_stats(data, features)
        for key, feature in features.items():
            if feature["dtype"] == "image":
                stats[key]["std"] = _image_std(data[key])
        out.append(stats)
    return out


def test_stats_match_lerobots_own_computation(dataset: LeRobotDataset, tmp_path: Path) -> None:
    """meta/stats.json and each episode's `stats/*` columns equal LeRobot's computation on the same frames, to float
    tolerance (image std as `_image_std` says)."""
    import pyarrow.parquet as pq

    episodes = _lerobots_stats(dataset, tmp_path)
    expected = aggregate_stats(episodes)
    written = json.loads((V30 / "meta" / "stats.json").read_text())
    per_episode = pq.read_table(V30 / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert set(written) == set(expected) == set(dataset.meta.features)
    for feature, stats in expected.items():
        for key in STAT_KEYS:
            np.testing.assert_allclose(np.asarray(written[feature][key], dtype=np.float64), stats[key], rtol=1e-5,
                                       atol=1e-7, err_msg=f"stats.json: {feature} {key}")
            for episode, ours in enumerate(per_episode[f"stats/{feature}/{key}"]):
                np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), episodes[episode][feature][key],
                                           rtol=1e-5, atol=1e-7, err_msg=f"episode {episode}: {feature} {key}")


def test_lerobots_converter_takes_rvqs_v21_output(tmp_path: Path, demos: list[dict]) -> None:
    """LeRobot's v2.1 → v3.0 converter accepts rvq's v2.1 dataset (it needs meta/episodes_stats.jsonl), and the
    converted dataset loads with the same actions."""
    from lerobot.datasets.v30.convert_dataset_v21_to_v30 import convert_dataset

    shutil.copytree(V21, tmp_path / "rvq" / "v21")
    convert_dataset("rvq/v21", root=tmp_path, push_to_hub=False)
    converted = LeRobotDataset("rvq/v21", root=tmp_path / "rvq" / "v21")
    assert converted.meta.total_episodes == len(demos) and converted.num_frames == sum(len(d["actions"]) for d in demos)
    for start, stop in _episode_ranges(converted):
        _match(demos, np.stack([converted.hf_dataset[i]["action"].numpy() for i in range(start, stop)]))
    ours = json.loads((V30 / "meta" / "stats.json").read_text())
    np.testing.assert_allclose(converted.meta.stats["action"]["mean"], ours["action"]["mean"], rtol=1e-6)


def test_two_training_steps_normalize_with_rvqs_stats(tmp_path: Path) -> None:
    """`lerobot-train` (ACT, CPU, no pretrained backbone: nothing to download) runs two steps on rvq's dataset, and
    the policy's saved normalizer holds rvq's stats."""
    from safetensors.numpy import load_file

    out = tmp_path / "train"
    command = [sys.executable, "-m", "lerobot.scripts.lerobot_train", "--policy.type=act", "--policy.device=cpu",
               "--policy.push_to_hub=false", "--policy.pretrained_backbone_weights=null",
               "--dataset.repo_id=rvq/check", f"--dataset.root={V30}", "--dataset.use_imagenet_stats=false",
               "--steps=2", "--batch_size=2", "--num_workers=0", "--save_freq=2", "--log_freq=1",
               "--wandb.enable=false", f"--output_dir={out}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved = sorted(out.rglob("*normalizer_processor.safetensors"))
    assert saved, f"no normalizer state saved under {out}"
    state = {}
    for path in saved:
        state |= load_file(path)
    ours = json.loads((V30 / "meta" / "stats.json").read_text())
    np.testing.assert_allclose(state["action.mean"], ours["action"]["mean"], rtol=1e-6)
    np.testing.assert_allclose(state["action.std"], ours["action"]["std"], rtol=1e-6)
    np.testing.assert_allclose(state["observation.state.mean"], ours["observation.state"]["mean"], rtol=1e-6)


@pytest.mark.parametrize("videos", [False, True], ids=["images", "video"])
def test_lerobot_makes_a_dataset_for_rvq_to_read(videos: bool) -> None:
    """A dataset made by `LeRobotDataset.create` (PNG images, or AV1 video as LeRobot records by default), and what
    it was given, for tests/lerobot/test_rvq_reads_lerobot.py to compare."""
    root = ROOT / "made_by_lerobot" / ("video" if videos else "images")
    shutil.rmtree(root, ignore_errors=True)
    features = {"action": {"dtype": "float32", "shape": (7,), "names": None},
                "observation.state": {"dtype": "float32", "shape": (8,), "names": None},
                "observation.images.image": {"dtype": "video" if videos else "image", "shape": (32, 32, 3),
                                             "names": ["height", "width", "channel"]}}
    made = LeRobotDataset.create("rvq/made", fps=20, root=root, features=features, use_videos=videos)
    rng = np.random.default_rng(0)
    given = {}
    for episode, (task, length) in enumerate([("put the bowl on the plate", 12), ("open the drawer", 9)]):
        actions = rng.uniform(-1, 1, (length, 7)).astype(np.float32)
        rows, cols = np.mgrid[0:32, 0:32]  # smooth frames that move: what a codec keeps nearly intact
        images = np.stack([np.stack([cols * 2 + 15 * t, rows * 4 + 40 * episode, rows + cols + 9 * t], axis=-1)
                           for t in range(length)]).astype(np.uint8)
        for t in range(length):
            made.add_frame({"action": actions[t], "observation.state": rng.normal(size=8).astype(np.float32),
                            "observation.images.image": images[t], "task": task})
        made.save_episode()
        given |= {f"actions_{episode}": actions, f"images_{episode}": images}
    made.finalize()
    np.savez(root / "given.npz", **given)
    assert LeRobotDataset("rvq/made", root=root).num_frames == 21
