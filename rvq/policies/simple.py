"""Policies without a model: no-op (a negative control) and demo replay (the positive control)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rvq.data.episodes import instruction_from_attrs, list_demo_files, read_demo_file
from rvq.data.lerobot import episode_index, episode_metadata, is_lerobot_dataset, read_lerobot_dataset
from rvq.envs.suites import NOOP_ACTION


class NoopPolicy:
    name = "noop"

    def __init__(self, chunk_size: int = 8) -> None:
        self.chunk_size = chunk_size

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        pass

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        return np.tile(NOOP_ACTION, (self.chunk_size, 1))

    def episode_stats(self) -> dict[str, Any]:
        return {}


class ReplayPolicy:
    """Plays the demo recorded from initial state `trial` (attribute `init_state_index`, written by
    `rvq collect-demos`), else demo `trial % demos`, of the task's demos: in a LIBERO folder the one file whose
    `problem_info.language_instruction` is the episode's instruction (not the file's place in name order, which
    is not the suite's task order: libero_object's files sort differently), in a LeRobot dataset the episodes whose
    task text is the instruction. After the demo ends it sends no-ops. Replaying a demo from its own initial state
    must succeed."""

    name = "replay"

    def __init__(self, demo_folder: str | Path, chunk_size: int = 8) -> None:
        self.lerobot = is_lerobot_dataset(demo_folder)
        self.folder = Path(demo_folder)
        self.files: dict[str, list[Path]] = {}  # instruction -> the files that hold its demos
        for path in [] if self.lerobot else list_demo_files(demo_folder):
            with h5py.File(path, "r") as f:
                self.files.setdefault(instruction_from_attrs(f["data"].attrs, path), []).append(path)
        self.chunk_size = chunk_size
        self.actions = np.zeros((0, 7))
        self.cursor = 0

    def _lerobot_actions(self, instruction: str, trial: int) -> np.ndarray:
        episodes = [e for e in read_lerobot_dataset(self.folder, split_arms=False) if e.instruction == instruction]
        if not episodes:
            raise ValueError(f"{self.folder}: no episode of task {instruction!r}")
        meta = episode_metadata(self.folder)
        chosen = [e for e in episodes if meta.get(episode_index(e), {}).get("init_state_index") == trial]
        return (chosen or [episodes[trial % len(episodes)]])[0].actions

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        if self.lerobot:
            self.actions = self._lerobot_actions(instruction, trial).astype(np.float64)
            self.cursor = 0
            return
        paths = self.files.get(instruction, [])
        if len(paths) != 1:
            found = "no file" if not paths else f"{len(paths)} files ({', '.join(p.name for p in paths)})"
            raise ValueError(f"{self.folder}: {found} with the instruction {instruction!r} (task {task_id}); the "
                             f"folder's instructions: {sorted(self.files)}")
        (path,) = paths
        episodes = read_demo_file(path, task_id, split_arms=False)
        index = trial % len(episodes)
        with h5py.File(path, "r") as f:
            for i, ep in enumerate(episodes):
                if f["data"][ep.demo].attrs.get("init_state_index") == trial:
                    index = i
                    break
        self.actions = episodes[index].actions.astype(np.float64)
        self.cursor = 0

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        chunk = self.actions[self.cursor : self.cursor + self.chunk_size]
        self.cursor += len(chunk)
        if len(chunk) < self.chunk_size:
            chunk = np.concatenate([chunk, np.tile(NOOP_ACTION, (self.chunk_size - len(chunk), 1))])
        return chunk

    def episode_stats(self) -> dict[str, Any]:
        return {"demo_steps": int(len(self.actions))}
