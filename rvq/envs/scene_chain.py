"""Each trial's scene as a function of (suite, task, trial) alone, equal to OpenVLA-OFT's sequential run.

LIBERO draws the fixed furniture's placement (cabinet, stove, wine rack: 0.4–1.8 cm apart between draws) from
NumPy's global generator at every hard reset, and `set_init_state` does not overwrite it. Before it, a task whose
initial state opens a drawer or turns on a stove (libero_spatial task 4, libero_10 tasks 3, 8, 9) draws once per
property sampler, and LIBERO adds a sampler at every hard reset without dropping the old ones: the k-th reset of one
env object draws k + 1 such values. So the reset is told which trial it is (`hard_reset(trial)`), and
`LiberoEnv._hard_reset` makes it draw as the sequential run's reset of that trial does. OFT's
`run_libero_eval.py` creates one env per task, calls `env.seed(0)` (LIBERO: `np.random.seed(0)`), then runs trials
0, 1, 2, … in order, each `env.reset()` drawing from where the previous one stopped. So trial i's scene is what the
i-th reset after `seed(0)` draws. The placement sampler rejects colliding draws, so a reset consumes a varying
number of values: a generator state cannot be skipped ahead arithmetically, only by replaying resets.

`SceneChain` keeps `S_i`, the generator state before trial i's reset in that sequential run (`S_0` = `seed(0)`).
Trial i restores `S_i`, resets, and records `S_{i+1}` from the state the reset leaves. A missing `S_i` is made by
replaying the resets from the nearest known state. States are shared through a folder (one small `.npz` per state,
written whole by rename), so workers that split one task's trials replay only what no worker has reached yet; a
sequential run replays nothing. What a policy draws from the global generator during an episode no longer moves
the next trial's scene (OFT's policies draw nothing from it, so this changes nothing there).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

OFT_ENV_SEED = 0  # OFT's get_libero_env: env.seed(0)
# What evaluation results and pipeline stages record as their scenes. Version 1 let a reset's draws depend on the env
# object's earlier resets on tasks with property samplers (see above); its results are not resumed under version 2.
SCENE_PROTOCOL = "oft-sequential-chain-2"

RngState = tuple  # numpy's legacy generator state: ("MT19937", keys [624] uint32, pos, has_gauss, cached_gaussian)


def seeded_state(seed: int) -> RngState:
    return np.random.RandomState(seed).get_state()


def _save(path: Path, state: RngState) -> None:
    name, keys, pos, has_gauss, cached = state
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, keys=keys, pos=pos, has_gauss=has_gauss, cached_gaussian=cached)
    tmp.replace(path)


def _load(path: Path) -> RngState:
    with np.load(path) as data:
        return ("MT19937", data["keys"], int(data["pos"]), int(data["has_gauss"]), float(data["cached_gaussian"]))


class SceneChain:
    """The generator states before each trial's reset of one task. `folder`: shared store (None: in memory)."""

    def __init__(self, seed: int = OFT_ENV_SEED, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.states: dict[int, RngState] = {0: seeded_state(seed)}
        self.replayed = 0  # resets replayed to reach a state (the cost of running trials out of order)

    def _path(self, trial: int) -> Path:
        assert self.folder is not None
        return self.folder / f"before-trial{trial:03d}.npz"

    def _known(self, trial: int) -> RngState | None:
        if trial in self.states:
            return self.states[trial]
        if self.folder is not None and self._path(trial).is_file():
            self.states[trial] = _load(self._path(trial))
            return self.states[trial]
        return None

    def _record(self, trial: int, state: RngState) -> None:
        if trial not in self.states:
            self.states[trial] = state
            if self.folder is not None and not self._path(trial).is_file():
                _save(self._path(trial), state)

    def reset(self, trial: int, hard_reset: Callable[[int], object]):
        """Run `hard_reset(i)` (which draws from NumPy's global generator as the sequential run's reset of trial `i`
        does) for `trial`, after replaying the resets no worker has run yet; returns what it returns."""
        start = trial
        while self._known(start) is None:
            start -= 1
        for i in range(start, trial):  # replay the resets no worker has run yet
            np.random.set_state(self._known(i))
            hard_reset(i)
            self._record(i + 1, np.random.get_state())
            self.replayed += 1
        np.random.set_state(self._known(trial))
        result = hard_reset(trial)
        self._record(trial + 1, np.random.get_state())
        return result
