"""Observations for state features, read back from a demo file that `rvq collect-demos` wrote.

Step t's observation is rebuilt from `obs/ee_pos`, `obs/ee_ori`, `obs/gripper_states` (the env's "state") and
`obs/objects/<name>` (poses), with the suite's task index from the file's `env_args` (not the file's position in
a folder, which is what `Episode.task_id` holds).
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np

from rvq.data.episodes import Episode
from rvq.data.hdf5 import read_hdf5

# The env's "state" [8] as recorded demo observations: these columns of it, under these keys.
STATE_COLUMNS = {"ee_pos": slice(0, 3), "ee_ori": slice(3, 6), "gripper_states": slice(6, 8)}
STATE_KEYS = tuple(STATE_COLUMNS)


def suite_task_id(handle: h5py.File, where: str) -> int:
    """The suite's task index recorded in `data.attrs["env_args"]` (JSON with "task_id")."""
    raw = handle["data"].attrs.get("env_args")
    try:
        env_args = json.loads(raw) if raw is not None else None
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{where}: data attribute 'env_args' is not JSON ({exc})") from exc
    if not isinstance(env_args, dict) or not isinstance(env_args.get("task_id"), int):
        raise ValueError(f"{where}: state features need the suite's task index in data.attrs['env_args']['task_id'] "
                         "(files from `rvq collect-demos` have it)")
    return env_args["task_id"]


def read_state_observations(episode: Episode) -> list[dict[str, Any]]:
    """The `T` observations of one episode (`state`, `task_id`, `objects`, `instruction`)."""
    return read_hdf5(episode.source, lambda handle: _read(handle, episode), "demos written by `rvq collect-demos`")


def _read(handle: h5py.File, episode: Episode) -> list[dict[str, Any]]:
    task = suite_task_id(handle, episode.source)
    group = handle["data"][episode.demo]
    obs = group.get("obs")
    missing = [k for k in (*STATE_KEYS, "objects") if not isinstance(obs, h5py.Group) or k not in obs]
    if missing:
        raise KeyError(f"{episode.name}: no observation(s) {missing} for state features; "
                       "collect the demos again with this version of `rvq collect-demos`")
    arrays = {k: np.asarray(obs[k][()], dtype=np.float64) for k in STATE_KEYS}
    arrays.update({f"objects/{name}": np.asarray(obs["objects"][name][()], dtype=np.float64) for name in obs["objects"]})
    for name, values in arrays.items():
        if values.ndim != 2 or len(values) != len(episode):
            raise ValueError(f"{episode.name}: obs/{name} has shape {list(values.shape)}; expected "
                             f"[{len(episode)}, d], one row per action")
    state = np.concatenate([arrays[k] for k in STATE_KEYS], axis=1)  # [T, 8]
    poses = {k[len("objects/"):]: v for k, v in arrays.items() if k.startswith("objects/")}
    rows = [{"state": state[t], "task_id": task, "instruction": episode.instruction,
             "objects": {name: values[t] for name, values in poses.items()}} for t in range(len(episode))]
    return rows
