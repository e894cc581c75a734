"""Demonstration episodes read from robomimic / LIBERO HDF5 files.

Layout (robomimic, also LIBERO's):
    data/                     attrs: env_args or env/env_info (JSON), LIBERO: problem_info (JSON with
                              "language_instruction"), bddl_file_name
    data/demo_N/actions       [T, A] float
    data/demo_N/obs/<key>     images [T, H, W, 3] uint8 (agentview_rgb, eye_in_hand_rgb, ...) and states
    data/demo_N/states        [T, S] sim states
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np

from rvq.data.episode import ARM_DIM, Episode
from rvq.data.hdf5 import read_hdf5
from rvq.data.lerobot import is_lerobot_dataset, lerobot_task_count, read_lerobot_dataset, read_lerobot_frames
from rvq.validation import REAL_DTYPE_KINDS

__all__ = ["ARM_DIM", "Episode", "list_demo_files", "read_actions", "read_demo_file", "read_demos", "read_obs"]

def _demo_sort_key(name: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) if match else -1, name)


def instruction_from_attrs(attrs: h5py.AttributeManager, path: Path) -> str:
    """LIBERO's `problem_info.language_instruction`, else the env name, else the file name."""
    if "problem_info" in attrs:
        raw = attrs["problem_info"]
        try:
            info = json.loads(raw)
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: data attribute 'problem_info' is not JSON ({exc}): {str(raw)[:80]!r}") from exc
        if not isinstance(info, dict):
            raise ValueError(f"{path}: data attribute 'problem_info' must be a JSON object, got {type(info).__name__}")
        if "language_instruction" in info:
            return str(info["language_instruction"]).strip().strip('"')
    stem = re.sub(r"_demo$", "", path.stem)
    if "env" in attrs and stem == "demo":
        return str(attrs["env"])
    return stem.replace("_", " ")


def read_actions(dataset: h5py.Dataset | h5py.Group, where: str) -> np.ndarray:
    """A demo's `actions` as `[T, A]` float32; refuses groups, non-numeric dtypes, empty or non-finite rows."""
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(f"{where}: 'actions' is a {type(dataset).__name__}, expected a [T, A] dataset")
    if dataset.dtype.kind not in REAL_DTYPE_KINDS:
        raise ValueError(f"{where}: actions have dtype {dataset.dtype} (kind {dataset.dtype.kind!r}); expected "
                         "floating-point or integer numbers (bool, complex, string and object actions are refused)")
    actions = np.asarray(dataset[()], dtype=np.float32)
    if actions.ndim != 2 or actions.shape[0] == 0 or actions.shape[1] == 0:
        raise ValueError(f"{where}: actions must be [T, A] with T > 0 and A > 0, got shape {list(actions.shape)}")
    bad_rows = np.nonzero(~np.isfinite(actions).all(axis=1))[0]
    if bad_rows.size:
        raise ValueError(f"{where}: {bad_rows.size} action row(s) contain NaN/inf, first at step {int(bad_rows[0])}")
    return actions


def read_demo_file(
    path: str | Path, task_id: int = 0, action_dim: int = ARM_DIM, split_arms: bool = True
) -> list[Episode]:
    """Every demo of one file as `Episode`s, actions checked.

    Actions of width `k * action_dim` (multi-arm) are split into k episodes when `split_arms`.
    Raises `FileNotFoundError` / `ValueError` naming the file and demo for missing files, a layout other
    than robomimic/LIBERO's, missing or non-numeric `actions`, a wrong width, non-finite rows, or a
    corrupt file (HDF5 read errors are re-raised with the file named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"demo file not found: {path}")
    return read_hdf5(path, lambda handle: _read_episodes(handle, path, task_id, action_dim, split_arms),
                     "robomimic/LIBERO demonstrations")


def _read_episodes(handle: h5py.File, path: Path, task_id: int, action_dim: int, split_arms: bool) -> list[Episode]:
    if "data" not in handle:
        raise ValueError(f"{path}: no 'data' group; expected robomimic/LIBERO layout data/demo_N/actions")
    data = handle["data"]
    if not isinstance(data, h5py.Group):
        raise ValueError(f"{path}: 'data' is a {type(data).__name__}, expected a group of demo_N groups")
    instruction = instruction_from_attrs(data.attrs, path)
    demos = sorted((k for k in data if isinstance(data[k], h5py.Group)), key=_demo_sort_key)
    if not demos:
        raise ValueError(f"{path}: 'data' holds no demo groups")
    episodes: list[Episode] = []
    for demo in demos:
        group = data[demo]
        if "actions" not in group:
            raise ValueError(f"{path}:{demo}: missing 'actions' dataset")
        actions = read_actions(group["actions"], f"{path}:{demo}")
        width = actions.shape[1]
        obs_keys = tuple(sorted(group["obs"].keys())) if isinstance(group.get("obs"), h5py.Group) else ()
        if width == action_dim:
            episodes.append(Episode(actions, str(path), demo, task_id, instruction, None, obs_keys))
        elif split_arms and width % action_dim == 0:
            for arm in range(width // action_dim):
                arm_actions = np.ascontiguousarray(actions[:, arm * action_dim : (arm + 1) * action_dim])
                episodes.append(Episode(arm_actions, str(path), demo, task_id, instruction, arm, obs_keys))
        else:
            raise ValueError(
                f"{path}:{demo}: actions have width {width}; expected {action_dim}"
                + (" or a multiple of it (multi-arm)" if split_arms else "")
            )
    return episodes


def read_obs(episode: Episode, key: str) -> np.ndarray:
    """One observation array `[T, ...]` of an episode, e.g. `agentview_rgb` `[T, H, W, 3]` (an episode of a LeRobot
    dataset: its cameras, by feature name or LIBERO name, in the simulator's raw orientation)."""
    if Path(episode.source).is_dir():
        return read_lerobot_frames(episode, key)
    with h5py.File(episode.source, "r") as handle:
        group = handle["data"][episode.demo]
        if "obs" not in group or key not in group["obs"]:
            available = sorted(group["obs"].keys()) if "obs" in group else []
            raise KeyError(f"{episode.name}: no observation {key!r}; available: {available}")
        return np.asarray(group["obs"][key][()])


def list_demo_files(folder: str | Path) -> list[Path]:
    """HDF5 files of a folder (one per task, LIBERO style), sorted by name: task id = position."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"demo folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".hdf5", ".h5"))
    if not files:
        raise ValueError(f"{folder}: no .hdf5 demo files, and not a LeRobot dataset (no meta/info.json)")
    return files


def read_demos(paths: list[str | Path], action_dim: int = ARM_DIM, split_arms: bool = True) -> list[Episode]:
    """Episodes of several files or folders, tasks numbered in order: each HDF5 file is one task; a LeRobot dataset
    folder (`rvq.data.lerobot`) adds its tasks in `task_index` order."""
    episodes: list[Episode] = []
    task_id = 0
    for p in paths:
        p = Path(p)
        if p.is_dir() and is_lerobot_dataset(p):
            episodes.extend(read_lerobot_dataset(p, task_id, action_dim, split_arms))
            task_id += lerobot_task_count(p)
            continue
        for path in list_demo_files(p) if p.is_dir() else [p]:
            episodes.extend(read_demo_file(path, task_id, action_dim, split_arms))
            task_id += 1
    return episodes
