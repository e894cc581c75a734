"""rvq demos written as a LeRobot dataset (layout v3.0 or v2.1, as `rvq.data.lerobot` reads them back): frames,
tasks, episode metadata and LeRobot's statistics (`rvq.data.lerobot_stats`), cameras turned upright.

pyarrow writes the parquet files (`pip install "rvq[lerobot]"`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rvq.data.episode import Episode
from rvq.data.episodes import read_obs
from rvq.data.lerobot import (CAMERA_ALIASES, DEFAULT_FPS, V21_DATA_PATH, V30_DATA_PATH, V30_EPISODES_PATH, VERSIONS,
                              load_pyarrow)
from rvq.data.lerobot_stats import (Stats, aggregate_stats, column_stats, flat_stats_columns, image_stats,
                                   stats_to_json)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def _state(episode: Episode) -> np.ndarray | None:
    """LIBERO's 8-d `observation.state` (end-effector position and axis-angle, two gripper joints) when recorded."""
    keys = ("ee_pos", "ee_ori", "gripper_states")
    if not all(k in episode.obs_keys for k in keys):
        return None
    return np.concatenate([read_obs(episode, k).reshape(len(episode), -1) for k in keys], axis=1).astype(np.float32)


# Dimension names in info.json (LeRobot lists them per feature): rvq's actions are LIBERO's (delta end-effector
# position and axis-angle rotation, gripper command -1 open / +1 closed); the state is LIBERO's LeRobot state.
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
STATE_NAMES = ("eef_x", "eef_y", "eef_z", "eef_axis_angle_x", "eef_axis_angle_y", "eef_axis_angle_z",
               "gripper_left", "gripper_right")
INDEX_FEATURES = (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
                  ("task_index", "int64"))  # LeRobot's default features, `names` null as LeRobot writes them


def _episode_columns(episode: Episode, state: np.ndarray | None, cameras: list[str], index: int, start: int,
                     task_index: int, fps: int) -> dict[str, np.ndarray]:
    """One episode's frame columns: name → [T, ...] (cameras [T, H, W, 3] uint8, turned upright)."""
    n = len(episode)
    columns = {"action": episode.actions.astype(np.float32)}
    if state is not None:
        columns["observation.state"] = state
    for key in cameras:
        columns[CAMERA_ALIASES[key]] = np.ascontiguousarray(read_obs(episode, key)[:, ::-1, ::-1])  # raw -> upright
    return columns | {"timestamp": np.arange(n, dtype=np.float32) / fps, "frame_index": np.arange(n, dtype=np.int64),
                      "episode_index": np.full(n, index, dtype=np.int64),
                      "index": np.arange(start, start + n, dtype=np.int64),
                      "task_index": np.full(n, task_index, dtype=np.int64)}


def _arrow_table(columns: dict[str, np.ndarray], features: dict[str, dict[str, Any]]):
    """Frame columns as LeRobot's parquet holds them: vectors as fixed-size lists, images as PNG structs."""
    pyarrow, _ = load_pyarrow()
    image = pyarrow.struct([("bytes", pyarrow.binary()), ("path", pyarrow.string())])
    arrays = {}
    for name, values in columns.items():
        feature = features[name]
        if feature["dtype"] == "image":
            arrays[name] = pyarrow.array([{"bytes": _png(f), "path": None} for f in values], type=image)
        elif feature["shape"] == [1]:
            arrays[name] = pyarrow.array(values)
        else:
            width = feature["shape"][0]
            arrays[name] = pyarrow.FixedSizeListArray.from_arrays(pyarrow.array(values.reshape(-1)), width)
    return pyarrow.table(arrays)


def _episode_stats(columns: dict[str, np.ndarray], features: dict[str, dict[str, Any]]) -> dict[str, Stats]:
    return {name: image_stats(values) if features[name]["dtype"] == "image" else column_stats(values)
            for name, values in columns.items()}


def write_lerobot_dataset(episodes: Sequence[Episode], out: str | Path, version: str = "v3.0",
                          fps: int = DEFAULT_FPS, robot_type: str = "panda") -> Path:
    """rvq demos (HDF5 `Episode`s) → a LeRobot dataset folder of layout `version`: actions, `observation.state` when
    recorded, and the cameras the demos hold (`agentview_rgb` → `observation.images.image`, `eye_in_hand_rgb` →
    `observation.images.wrist_image`) as PNG `image` features, turned upright; the stats LeRobot normalizes with
    (`meta/stats.json`; per episode `stats/*` columns in v3.0's `meta/episodes`, `meta/episodes_stats.jsonl` in v2.1).
    Tasks are the demos' instructions. Refuses a folder that already holds a dataset."""
    if version not in VERSIONS:
        raise ValueError(f"unknown LeRobot layout {version!r}; choose one of {VERSIONS}")
    if not episodes:
        raise ValueError("no episodes to write")
    pyarrow, pq = load_pyarrow()
    out = Path(out)
    if (out / "meta").exists() or (out / "data").exists():
        raise FileExistsError(f"{out} already holds a dataset (meta/ or data/); choose an empty folder")
    action_dim = {e.actions.shape[1] for e in episodes}
    if len(action_dim) != 1:
        raise ValueError(f"episodes have different action widths {sorted(action_dim)}")
    width = next(iter(action_dim))
    cameras = [k for k in CAMERA_ALIASES if all(k in e.obs_keys for e in episodes)]
    states = [_state(e) for e in episodes]
    with_state = all(s is not None for s in states)
    task_texts = list(dict.fromkeys(e.instruction for e in episodes))
    features = {"action": {"dtype": "float32", "shape": [width],
                           "names": list(ACTION_NAMES) if width == len(ACTION_NAMES) else None}}
    if with_state:
        features["observation.state"] = {"dtype": "float32", "shape": [len(STATE_NAMES)], "names": list(STATE_NAMES)}
    index_features = {name: {"dtype": dtype, "shape": [1], "names": None} for name, dtype in INDEX_FEATURES}
    tables, lengths, stats = [], [], []
    for index, (episode, state) in enumerate(zip(episodes, states)):
        columns = _episode_columns(episode, state if with_state else None, cameras, index, sum(lengths),
                                   task_texts.index(episode.instruction), fps)
        for name in (CAMERA_ALIASES[key] for key in cameras):
            shape = list(columns[name].shape[1:])
            if features.setdefault(name, {"dtype": "image", "shape": shape, "names": ["height", "width", "channel"]}
                                   )["shape"] != shape:
                raise ValueError(f"{episode.source}: {episode.demo}'s {name} frames are {shape}, the first "
                                 f"episode's {features[name]['shape']}; a dataset's camera has one frame shape")
        tables.append(_arrow_table(columns, features | index_features))
        stats.append(_episode_stats(columns, features | index_features))
        lengths.append(len(episode))
    features |= index_features
    starts = [_init_state_index(e) for e in episodes]
    info = {"codebase_version": version, "robot_type": robot_type, "total_episodes": len(episodes),
            "total_frames": sum(lengths), "total_tasks": len(task_texts), "chunks_size": 1000, "fps": fps,
            "splits": {"train": f"0:{len(episodes)}"}, "features": features, "video_path": None}
    (out / "meta").mkdir(parents=True)
    if version == "v2.1":
        info.update(data_path=V21_DATA_PATH, total_chunks=1, total_videos=0)
        for index, table in enumerate(tables):
            path = out / V21_DATA_PATH.format(episode_chunk=index // 1000, episode_index=index)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
        (out / "meta" / "tasks.jsonl").write_text(
            "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(task_texts)))
        (out / "meta" / "episodes.jsonl").write_text("".join(
            json.dumps({"episode_index": i, "tasks": [e.instruction], "length": n, "init_state_index": start}) + "\n"
            for i, (e, n, start) in enumerate(zip(episodes, lengths, starts))))
        (out / "meta" / "episodes_stats.jsonl").write_text("".join(
            json.dumps({"episode_index": i, "stats": stats_to_json(s)}) + "\n" for i, s in enumerate(stats)))
    else:
        info.update(data_path=V30_DATA_PATH, data_files_size_in_mb=100, video_files_size_in_mb=200)
        path = out / V30_DATA_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True)
        pq.write_table(pyarrow.concat_tables(tables), path)
        _write_tasks_parquet(out / "meta" / "tasks.parquet", task_texts)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        flat = [flat_stats_columns(s) for s in stats]
        episodes_table = pyarrow.table({
            "episode_index": pyarrow.array(np.arange(len(episodes), dtype=np.int64)),
            "tasks": pyarrow.array([[e.instruction] for e in episodes], type=pyarrow.list_(pyarrow.string())),
            "length": pyarrow.array(np.asarray(lengths, dtype=np.int64)),
            "data/chunk_index": pyarrow.array(np.zeros(len(episodes), dtype=np.int64)),
            "data/file_index": pyarrow.array(np.zeros(len(episodes), dtype=np.int64)),
            "dataset_from_index": pyarrow.array(bounds[:-1].astype(np.int64)),
            "dataset_to_index": pyarrow.array(bounds[1:].astype(np.int64)),
            "meta/episodes/chunk_index": pyarrow.array(np.zeros(len(episodes), dtype=np.int64)),
            "meta/episodes/file_index": pyarrow.array(np.zeros(len(episodes), dtype=np.int64)),
            "init_state_index": pyarrow.array(np.asarray(starts, dtype=np.int64)),
            **{column: pyarrow.array([row[column] for row in flat]) for column in flat[0]},
        })
        meta_path = out / V30_EPISODES_PATH
        meta_path.parent.mkdir(parents=True)
        pq.write_table(episodes_table, meta_path)
    (out / "meta" / "stats.json").write_text(json.dumps(stats_to_json(aggregate_stats(stats)), indent=4))
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return out


def _init_state_index(episode: Episode) -> int:
    """The fixed initial state a collected demo started from (-1: a randomized reset or not recorded)."""
    import h5py

    with h5py.File(episode.source, "r") as f:
        return int(f["data"][episode.demo].attrs.get("init_state_index", -1))


def _write_tasks_parquet(path: Path, tasks: list[str]) -> None:
    """`meta/tasks.parquet` as LeRobot writes it with pandas: the task text is the table's index, `task_index` its
    one column (the pandas metadata says so, so `pandas.read_parquet` restores the index)."""
    pyarrow, pq = load_pyarrow()
    table = pyarrow.table({"task_index": pyarrow.array(np.arange(len(tasks), dtype=np.int64)),
                           "task": pyarrow.array(tasks, type=pyarrow.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pyarrow.__version__},
        "pandas_version": "2.2.0",
    }
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}), path)
