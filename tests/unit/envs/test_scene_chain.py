"""The scene chain: a trial's draws equal the sequential run's whatever the order, the worker, or a policy drawing
from the global generator in between; states shared through a folder spare other workers the replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rvq.envs.scene_chain import SceneChain


def fake_reset(trial: int) -> list[float]:
    """Draws a varying number of values, like a rejection sampler: replay is the only way to skip ahead. Like LIBERO
    on a task with a drawer, the reset of trial i first draws i + 2 values that the scene does not show."""
    np.random.uniform(size=trial + 2)
    draws = [np.random.uniform()]
    while draws[-1] < 0.6:
        draws.append(np.random.uniform())
    return draws


def sequential(trials: int) -> list[list[float]]:
    np.random.seed(0)  # OFT: env.seed(0), then trial after trial
    return [fake_reset(trial) for trial in range(trials)]


def test_any_order_gives_the_sequential_runs_scenes() -> None:
    expected = sequential(6)
    chain = SceneChain(0)
    for trial in (4, 0, 5, 2, 1, 3):
        np.random.uniform(size=7)  # a policy (or anything) drawing in between changes nothing
        assert chain.reset(trial, fake_reset) == expected[trial]
    assert chain.replayed == 4  # trials 0..3 replayed once to reach trial 4; nothing after


def test_workers_share_states_through_a_folder(tmp_path: Path) -> None:
    expected = sequential(5)
    first, second = SceneChain(0, tmp_path), SceneChain(0, tmp_path)
    assert first.reset(3, fake_reset) == expected[3] and first.replayed == 3
    assert second.reset(4, fake_reset) == expected[4] and second.replayed == 0  # S_4 came from the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"before-trial{i:03d}.npz" for i in range(1, 6)]


def test_a_sequential_run_replays_nothing() -> None:
    expected = sequential(4)
    chain = SceneChain(0)
    assert [chain.reset(i, fake_reset) for i in range(4)] == expected and chain.replayed == 0


def test_each_reset_is_told_its_trial_replays_included() -> None:
    told = []

    def recording_reset(trial: int) -> list[float]:
        told.append(trial)
        return fake_reset(trial)

    chain = SceneChain(0)
    chain.reset(3, recording_reset)
    chain.reset(1, recording_reset)
    assert told == [0, 1, 2, 3, 1]  # three replays on the way to trial 3, then trial 1 from its known state
