"""LeRobot datasets in and out: rvq's demos written in layouts v2.1 and v3.0 read back unchanged (actions, tasks,
camera frames, state), image and video cameras, the tokenizer / Phase 2 / replay paths on a LeRobot folder, pandas
reading the task table as LeRobot does, and bad datasets refused with the problem named."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import imageio.v2 as imageio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mocks.libero_files import write_libero_folder
from rvq.backbones import build_backbone
from rvq.data.episodes import read_demos, read_obs
from rvq.data.lerobot import episode_metadata, is_lerobot_dataset, read_lerobot_dataset
from rvq.data.lerobot_write import write_lerobot_dataset
from rvq.data.phase2 import build_phase2_data, load_phase2_data
from rvq.policies.simple import ReplayPolicy
from rvq.training.tokenizer import prepare_tokenizer_data
from tests.unit.data.test_phase2 import _tokenizer

INSTRUCTIONS = ["pick up the bowl", "open the drawer"]


@pytest.fixture(scope="module")
def hdf5(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hdf5") / "demos"
    write_libero_folder(root, INSTRUCTIONS, num_demos=3, steps=10, image_size=16)
    for i, path in enumerate(sorted(root.iterdir())):  # as `rvq collect-demos` records them
        with h5py.File(path, "a") as f:
            for j, demo in enumerate(sorted(f["data"])):
                f["data"][demo].attrs["init_state_index"] = 10 * i + j
    return root


@pytest.fixture(scope="module", params=["v2.1", "v3.0"])
def dataset(request, hdf5, tmp_path_factory) -> Path:
    return write_lerobot_dataset(read_demos([hdf5], split_arms=False), tmp_path_factory.mktemp("lr") / "ds",
                                 version=request.param)


def test_written_datasets_read_back_unchanged(hdf5, dataset) -> None:
    source, read = read_demos([hdf5], split_arms=False), read_demos([dataset], split_arms=False)
    assert is_lerobot_dataset(dataset) and len(read) == len(source) == 6
    info = json.loads((dataset / "meta" / "info.json").read_text())
    assert info["total_frames"] == sum(len(e) for e in source) and info["total_tasks"] == 2
    assert set(info["features"]) >= {"action", "observation.state", "observation.images.image",
                                     "observation.images.wrist_image", "task_index", "frame_index"}
    for a, b in zip(source, read):
        np.testing.assert_array_equal(a.actions, b.actions)
        assert a.instruction == b.instruction and b.demo.startswith("episode_")
        np.testing.assert_array_equal(read_obs(a, "agentview_rgb"), read_obs(b, "agentview_rgb"))  # raw orientation
        np.testing.assert_array_equal(read_obs(a, "eye_in_hand_rgb"), read_obs(b, "observation.images.wrist_image"))
    assert sorted({e.task_id for e in read}) == [0, 1]
    # stored upright, as LIBERO's LeRobot datasets are: the first frame is the HDF5 render turned by 180 degrees
    table = pq.read_table(sorted((dataset / "data").rglob("*.parquet"))[0])
    from PIL import Image
    import io
    first = np.asarray(Image.open(io.BytesIO(table["observation.images.image"][0].as_py()["bytes"])))
    np.testing.assert_array_equal(first, read_obs(source[0], "agentview_rgb")[0][::-1, ::-1])
    state = np.asarray(table["observation.state"][0].as_py())
    with h5py.File(source[0].source) as f:
        obs = f["data"][source[0].demo]["obs"]
        np.testing.assert_allclose(state, np.concatenate([obs[k][0] for k in ("ee_pos", "ee_ori", "gripper_states")]),
                                   rtol=1e-6)
    assert [m["init_state_index"] for _, m in sorted(episode_metadata(dataset).items())] == [0, 1, 2, 10, 11, 12]


def test_written_datasets_carry_lerobots_stats_column_types_and_names(hdf5, dataset) -> None:
    """meta/stats.json aggregates per-episode stats of every feature (v3.0: `stats/*` columns of meta/episodes; v2.1:
    meta/episodes_stats.jsonl); vectors are fixed-size lists and the action / state dimensions are named."""
    source = read_demos([hdf5], split_arms=False)
    info = json.loads((dataset / "meta" / "info.json").read_text())
    stats = json.loads((dataset / "meta" / "stats.json").read_text())
    assert set(stats) == set(info["features"])
    actions = np.concatenate([e.actions for e in source]).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats["action"]["std"], actions.std(axis=0), rtol=1e-6, atol=1e-9)
    assert stats["action"]["count"] == [len(actions)] and len(stats["action"]["q99"]) == 7
    assert np.asarray(stats["observation.images.image"]["mean"]).shape == (3, 1, 1)
    assert stats["index"]["max"] == [len(actions) - 1] and stats["episode_index"]["count"] == [len(actions)]
    if info["codebase_version"] == "v2.1":
        rows = [json.loads(line) for line in (dataset / "meta" / "episodes_stats.jsonl").read_text().splitlines()]
        episode_means = [row["stats"]["action"]["mean"] for row in rows]
    else:
        table = pq.read_table(dataset / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
        stat_names = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
        assert {f"stats/{feature}/{k}" for feature in info["features"] for k in stat_names} <= set(table.schema.names)
        episode_means = table["stats/action/mean"].to_pylist()
    np.testing.assert_allclose(episode_means, [e.actions.astype(np.float64).mean(axis=0) for e in source],
                               rtol=1e-6, atol=1e-9)
    data = pq.read_table(sorted((dataset / "data").rglob("*.parquet"))[0])
    assert data.schema.field("action").type == pa.list_(pa.float32(), 7)
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 8)
    assert len(info["features"]["action"]["names"]) == 7 and len(info["features"]["observation.state"]["names"]) == 8


def test_pandas_reads_the_task_table_with_the_task_text_as_its_index(dataset) -> None:
    import pandas as pd

    if (dataset / "meta" / "tasks.jsonl").exists():  # v2.1 keeps tasks in JSON lines
        rows = [json.loads(line) for line in (dataset / "meta" / "tasks.jsonl").read_text().splitlines()]
        assert [r["task"] for r in rows] == [INSTRUCTIONS[1], INSTRUCTIONS[0]]
        return
    tasks = pd.read_parquet(dataset / "meta" / "tasks.parquet")
    assert list(tasks.index) == [INSTRUCTIONS[1], INSTRUCTIONS[0]] and list(tasks["task_index"]) == [0, 1]


def test_tokenizer_phase2_and_replay_take_a_lerobot_folder(hdf5, dataset, tmp_path: Path) -> None:
    data = prepare_tokenizer_data([str(dataset)], chunk_size=4, val_fraction=0.34, seed=0)
    assert len(data.val_episodes) >= 1 and len(data.train_episodes) >= 1
    assert not {e.group for e in data.val_episodes} & {e.group for e in data.train_episodes}
    extractor = build_backbone("tiny")
    a = load_phase2_data(build_phase2_data([hdf5], _tokenizer(), extractor, tmp_path / "a.h5", progress=False))
    b = load_phase2_data(build_phase2_data([dataset], _tokenizer(), extractor, tmp_path / "b.h5", progress=False))
    assert torch.equal(a.codes, b.codes) and a.instructions == b.instructions
    torch.testing.assert_close(a.features, b.features)  # the same frames reach the extractor
    policy = ReplayPolicy(dataset, chunk_size=4)
    policy.reset(INSTRUCTIONS[0], task_id=1, trial=11)  # the demo recorded from initial state 11
    expected = [e for e in read_demos([hdf5], split_arms=False) if e.instruction == INSTRUCTIONS[0]][1].actions
    np.testing.assert_allclose(policy.act({})[:4], expected[:4])


def _video_dataset(root: Path, version: str, lengths: list[int]) -> tuple[Path, list[np.ndarray]]:
    """A dataset whose camera is an mp4 `video` feature; episode e's frames have brightness 40 + 80 e."""
    (root / "meta").mkdir(parents=True)
    clips = [np.full((n, 16, 16, 3), 40 + 80 * e, dtype=np.uint8) for e, n in enumerate(lengths)]
    for clip in clips:
        clip[:, :8] += 30  # upper half brighter: shows the 180-degree turn
    info = {"codebase_version": version, "fps": 10, "chunks_size": 1000, "features": {
        "action": {"dtype": "float32", "shape": [7]}, "observation.images.image": {"dtype": "video", "shape": [16, 16, 3]}}}
    rows = []
    for e, n in enumerate(lengths):
        rows.append(pa.table({"action": [list(np.full(7, 0.1 * e, np.float32)) for _ in range(n)],
                              "episode_index": [e] * n, "frame_index": list(range(n)), "task_index": [0] * n}))
    write = lambda frames, path: imageio.mimwrite(path, frames, fps=10, codec="libx264", quality=10,  # noqa: E731
                                                  macro_block_size=1, format="ffmpeg")
    if version == "v2.1":
        for e, (table, clip) in enumerate(zip(rows, clips)):
            (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
            pq.write_table(table, root / f"data/chunk-000/episode_{e:06d}.parquet")
            (root / "videos/chunk-000/observation.images.image").mkdir(parents=True, exist_ok=True)
            write(clip, root / f"videos/chunk-000/observation.images.image/episode_{e:06d}.mp4")
        (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "stack"}) + "\n")
        (root / "meta/episodes.jsonl").write_text("".join(
            json.dumps({"episode_index": e, "tasks": ["stack"], "length": n}) + "\n" for e, n in enumerate(lengths)))
    else:
        (root / "data/chunk-000").mkdir(parents=True)
        pq.write_table(pa.concat_tables(rows), root / "data/chunk-000/file-000.parquet")
        (root / "videos/observation.images.image/chunk-000").mkdir(parents=True)
        write(np.concatenate(clips), root / "videos/observation.images.image/chunk-000/file-000.mp4")
        pq.write_table(pa.table({"task_index": [0], "task": ["stack"]}), root / "meta/tasks.parquet")
        bounds = np.concatenate([[0], np.cumsum(lengths)]) / 10
        (root / "meta/episodes/chunk-000").mkdir(parents=True)
        pq.write_table(pa.table({
            "episode_index": list(range(len(lengths))), "length": lengths,
            "videos/observation.images.image/chunk_index": [0] * len(lengths),
            "videos/observation.images.image/file_index": [0] * len(lengths),
            "videos/observation.images.image/from_timestamp": bounds[:-1].tolist(),
            "videos/observation.images.image/to_timestamp": bounds[1:].tolist()}),
            root / "meta/episodes/chunk-000/file-000.parquet")
    (root / "meta/info.json").write_text(json.dumps(info))
    return root, clips


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_video_cameras_decode_to_each_episodes_own_frames(tmp_path: Path, version: str) -> None:
    root, clips = _video_dataset(tmp_path / "video", version, [5, 7, 6])
    episodes = read_lerobot_dataset(root)
    assert [len(e) for e in episodes] == [5, 7, 6]
    for episode, clip in zip(episodes, clips):
        frames = read_obs(episode, "agentview_rgb")
        assert frames.shape == clip.shape
        assert np.abs(frames.astype(int) - clip[:, ::-1, ::-1]).mean() < 4  # lossy codec, right clip, turned


def _rewrite_frames(dataset: Path, change) -> None:
    path = sorted((dataset / "data").rglob("*.parquet"))[0]
    table = pq.read_table(path)
    pq.write_table(change(table), path)


@pytest.mark.parametrize("case", ["version", "no_action", "nan", "gap", "task", "fps_nan", "fps_bool", "string_actions",
                                  "bool_actions", "null_episode", "duplicate_task", "feature_not_object", "shape",
                                  "total_str", "chunks_str", "episode_missing", "episode_cut", "total_frames"])
def test_bad_datasets_are_refused_naming_the_problem(hdf5, tmp_path: Path, case: str) -> None:
    dataset = write_lerobot_dataset(read_demos([hdf5], split_arms=False)[:2], tmp_path / "ds")
    info_path = dataset / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    if case == "version":
        info_path.write_text(json.dumps({**info, "codebase_version": "v1.6"}))
        match = "LeRobot layout 'v1.6' is not supported"
    elif case == "no_action":
        info_path.write_text(json.dumps({**info, "features": {k: v for k, v in info["features"].items()
                                                               if k != "action"}}))
        match = "no 'action' feature"
    elif case == "nan":
        def poison(table):
            actions = table["action"].to_pylist()
            actions[3][2] = float("nan")
            return table.set_column(table.column_names.index("action"), "action",
                                    pa.array(actions, type=pa.list_(pa.float32())))
        _rewrite_frames(dataset, poison)
        match = "episode 0: 1 action row.s. contain NaN/inf, first at frame 3"
    elif case == "gap":
        _rewrite_frames(dataset, lambda table: table.filter(pa.compute.not_equal(table["frame_index"], 4)))
        match = "frame_index values are not"
    elif case == "task":
        _rewrite_frames(dataset, lambda t: t.set_column(t.column_names.index("task_index"), "task_index",
                                                        pa.array([7] * len(t), type=pa.int64())))
        match = r"task_index \[7\] is not one task"
    elif case in ("fps_nan", "fps_bool"):
        info_path.write_text(json.dumps({**info, "fps": float("nan") if case == "fps_nan" else True}))
        match = "'fps' must be a finite positive number"
    elif case in ("string_actions", "bool_actions"):
        def stored_as(table):
            rows = table["action"].to_pylist()
            kind = pa.string() if case == "string_actions" else pa.bool_()
            cast = [[str(v) for v in row] if case == "string_actions" else [v > 0 for v in row] for row in rows]
            return table.set_column(table.column_names.index("action"), "action", pa.array(cast, type=pa.list_(kind)))
        _rewrite_frames(dataset, stored_as)
        match = "'action' values must be equal-length lists of numbers, found \\['" + \
            ("str" if case == "string_actions" else "bool")
    elif case == "null_episode":
        _rewrite_frames(dataset, lambda t: t.set_column(t.column_names.index("episode_index"), "episode_index",
                                                        pa.array([None] * len(t), type=pa.int64())))
        match = r"row 0: \['episode_index'\] must be whole numbers >= 0, got \[None\]"
    elif case == "feature_not_object":
        info_path.write_text(json.dumps({**info, "features": {**info["features"], "action": 5}}))
        match = "features.action must be an object with a dtype, got 5"
    elif case == "shape":
        info["features"]["action"]["shape"] = ["x"]
        info_path.write_text(json.dumps(info))
        match = r"features.action.shape must be a list of whole numbers > 0, got \['x'\]"
    elif case in ("total_str", "chunks_str"):
        key = "total_episodes" if case == "total_str" else "chunks_size"
        info_path.write_text(json.dumps({**info, key: "two"}))
        match = f"'{key}' must be a whole number, got 'two'"
    elif case == "total_frames":
        info_path.write_text(json.dumps({**info, "total_frames": info["total_frames"] + 1}))
        match = f"total_frames is {info['total_frames'] + 1} but the data files hold {info['total_frames']}"
    elif case == "episode_missing":  # a data file lost: its episode would silently be missing
        _rewrite_frames(dataset, lambda t: t.filter(pa.compute.not_equal(t["episode_index"], 1)))
        match = r"lists episodes the data files do not hold \(\[1\]\)"
    elif case == "episode_cut":  # the last frames of an episode lost: still 0..T'-1, so only its length tells
        _rewrite_frames(dataset, lambda t: t.filter(pa.compute.invert(pa.compute.and_(
            pa.compute.equal(t["episode_index"], 1), pa.compute.greater_equal(t["frame_index"], 5)))))
        match = r"episode 1 has length \d+ but the data files hold 5 frames of it"
    else:
        pq.write_table(pa.table({"task_index": [0, 0], "task": ["a", "b"]}), dataset / "meta" / "tasks.parquet")
        match = "task_index 0 is given twice \\('a', 'b'\\)"
    with pytest.raises(ValueError, match=match):
        read_demos([dataset])


def test_writing_into_a_folder_that_holds_a_dataset_is_refused(hdf5, tmp_path: Path) -> None:
    episodes = read_demos([hdf5], split_arms=False)[:1]
    write_lerobot_dataset(episodes, tmp_path / "ds")
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        write_lerobot_dataset(episodes, tmp_path / "ds")


def test_episodes_whose_video_ranges_overlap_are_refused(tmp_path: Path) -> None:
    root, _ = _video_dataset(tmp_path / "video", "v3.0", [5, 7])
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    column = "videos/observation.images.image/from_timestamp"
    starts = table[column].to_pylist()
    starts[1] = starts[1] - 0.2  # episode 1 would begin inside episode 0's frames
    pq.write_table(table.set_column(table.column_names.index(column), column, pa.array(starts)), path)
    with pytest.raises(ValueError, match="episodes 0 and 1 overlap in videos/observation.images.image/"):
        episode_metadata(root)


def test_an_image_that_cannot_be_decoded_is_refused_naming_the_episode_camera_and_frame(hdf5, tmp_path: Path) -> None:
    dataset = write_lerobot_dataset(read_demos([hdf5], split_arms=False)[:1], tmp_path / "ds")

    def corrupt(table):
        column = next(c for c in table.column_names if c.startswith("observation.images."))
        cells = table[column].to_pylist()
        cells[2] = {**cells[2], "bytes": b"not an image"}
        return table.set_column(table.column_names.index(column), column, pa.array(cells, type=table[column].type))

    _rewrite_frames(dataset, corrupt)
    episode = read_demos([dataset])[0]
    with pytest.raises(ValueError, match=r"episode_000000: camera 'observation.images.image': image of frame 2 cannot "
                                         r"be decoded \(UnidentifiedImageError"):
        read_obs(episode, "agentview_rgb")
