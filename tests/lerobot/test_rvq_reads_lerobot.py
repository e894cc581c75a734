"""rvq reads datasets LeRobot made (issue 49): run by `nox -s lerobot` in rvq's environment after
tests/lerobot/test_lerobot_reads_rvq.py made them with `LeRobotDataset.create` under $RVQ_LEROBOT_CHECK/made_by_lerobot
(PNG images and AV1 video), with what LeRobot was given in `given.npz`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rvq.data.episodes import read_demos
from rvq.data.lerobot import read_lerobot_frames

MADE = Path(os.environ["RVQ_LEROBOT_CHECK"]) / "made_by_lerobot"


@pytest.mark.parametrize("kind", ["images", "video"])
def test_rvq_reads_what_lerobot_wrote(kind: str) -> None:
    """Actions bit for bit, task text, and frames: PNG exact; video within the codec's loss, each frame at its step
    (rvq turns LeRobot's upright frames back to the simulator's orientation, so they are turned again here)."""
    root = MADE / kind
    given = np.load(root / "given.npz")
    episodes = read_demos([root], split_arms=False)
    assert [e.instruction for e in episodes] == ["put the bowl on the plate", "open the drawer"]
    for i, episode in enumerate(episodes):
        np.testing.assert_array_equal(episode.actions, given[f"actions_{i}"])
        frames = read_lerobot_frames(episode, "observation.images.image")[:, ::-1, ::-1]
        assert frames.shape == given[f"images_{i}"].shape and frames.dtype == np.uint8
        error = np.abs(frames.astype(np.int16) - given[f"images_{i}"]).mean(axis=(1, 2, 3))
        if kind == "images":
            assert error.max() == 0
        else:  # lossy, but each frame nearest to the one LeRobot was given at that step
            assert error.max() < 3, error
            distance = np.abs(frames[:, None].astype(np.int16) - given[f"images_{i}"][None]).mean(axis=(2, 3, 4))
            assert (distance.argmin(axis=1) == np.arange(len(frames))).all()
