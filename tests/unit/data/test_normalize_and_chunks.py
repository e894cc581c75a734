"""BOUNDS_Q99 normalization, chunking with padding masks, split by episode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rvq.data import ActionNormalizer, Episode, chunk_episode, make_chunks, split_by_episode


def test_normalizer_q99_maps_and_clips() -> None:
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(10000, 7)) * np.array([1, 2, 3, 0.1, 0.1, 0.1, 1])
    actions[:, -1] = np.sign(actions[:, -1])
    norm = ActionNormalizer.fit(actions, method="bounds_q99")
    assert np.allclose(norm.low[:6], np.quantile(actions[:, :6], 0.01, axis=0), rtol=1e-5)
    x = norm.normalize(actions)
    assert float(x.abs().max()) <= 1.0
    inside = (actions[:, :6] > norm.low[:6]) & (actions[:, :6] < norm.high[:6])
    assert inside.mean() == pytest.approx(0.98, abs=0.01)
    assert torch.equal(x[:, -1], torch.as_tensor(actions[:, -1], dtype=torch.float32))  # gripper kept as ±1
    back = norm.unnormalize(x).numpy()
    assert np.allclose(back[:, :6][inside], actions[:, :6][inside], atol=1e-5)
    clipped = np.clip(actions[:, :6], norm.low[:6], norm.high[:6])
    assert np.allclose(back[:, :6], clipped, atol=1e-5)


def test_q99_guarded_keeps_rare_large_actions_up_to_the_training_extremes() -> None:
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(10000, 7)) * 0.1
    actions[::500, 5] = 0.9  # rare large wrist turns: 0.2% of steps, far beyond the 99th percentile
    norm = ActionNormalizer.fit(actions)
    assert norm.kind == "q99_guarded"
    assert np.allclose(norm.high[:6], np.quantile(actions[:, :6], 0.99, axis=0), rtol=1e-5)
    x = norm.normalize(actions)
    lo, hi = norm.normalized_bounds()
    assert float(x[:, 5].max()) == pytest.approx(hi[5]) and hi[5] > 3  # kept far outside [-1, 1]
    back = norm.unnormalize(x).numpy()
    assert np.allclose(back[:, :6], actions[:, :6], atol=1e-5)  # every training action survives
    beyond = norm.unnormalize(norm.normalize(np.full((1, 7), 5.0))).numpy()
    assert np.allclose(beyond[0, :6], norm.clip_high[:6])  # the guard: nothing past the training extremes
    legacy = ActionNormalizer.fit(actions, method="bounds_q99")
    assert float(legacy.unnormalize(legacy.normalize(actions))[:, 5].max()) < 0.3  # BOUNDS_Q99 cuts them off
    again = ActionNormalizer.from_dict(norm.to_dict())
    assert torch.equal(again.normalize(actions), x)


def test_constant_dimension_maps_to_zero_and_back() -> None:
    actions = np.zeros((100, 7))
    actions[:, 0] = np.linspace(-1, 1, 100)
    actions[:, 3] = 0.25
    norm = ActionNormalizer.fit(actions)
    x = norm.normalize(actions)
    assert torch.all(x[:, 3] == 0)
    assert torch.allclose(norm.unnormalize(x)[:, 3], torch.full((100,), 0.25))


def test_normalizer_dict_roundtrip_and_errors() -> None:
    norm = ActionNormalizer.fit(np.random.default_rng(1).normal(size=(50, 7)))
    again = ActionNormalizer.from_dict(norm.to_dict())
    assert np.array_equal(again.low, norm.low) and np.array_equal(again.mask, norm.mask)
    with pytest.raises(ValueError, match="dict of kind"):
        ActionNormalizer.from_dict({"kind": "mean_std"})
    with pytest.raises(ValueError, match="missing 'mask'"):
        ActionNormalizer.from_dict({"kind": "bounds_q99", "low": [0], "high": [1]})
    with pytest.raises(ValueError, match="6 dims in the last axis, normalizer expects 7"):
        norm.normalize(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="NaN"):
        norm.normalize(np.full((3, 7), np.nan))
    with pytest.raises(ValueError, match="NaN/inf"):
        ActionNormalizer.fit(np.full((3, 7), np.inf))


def test_chunks_pad_with_last_action_and_mark_padding() -> None:
    actions = np.arange(10 * 7, dtype=np.float32).reshape(10, 7)
    chunks, valid = chunk_episode(actions, 8)
    assert chunks.shape == (10, 8, 7) and valid.shape == (10, 8)
    assert np.array_equal(chunks[0], actions[:8])
    assert np.array_equal(chunks[5, :5], actions[5:]) and np.all(chunks[5, 5:] == actions[-1])
    assert valid[5].tolist() == [True] * 5 + [False] * 3
    assert valid.sum() == sum(min(8, 10 - t) for t in range(10))


def _episodes(files: int, demos: int, arms: int = 1) -> list[Episode]:
    out = []
    for f in range(files):
        for d in range(demos):
            for a in range(arms):
                out.append(Episode(np.zeros((5, 7), np.float32), f"f{f}.hdf5", f"demo_{d}", f, "x",
                                   a if arms > 1 else None))
    return out


def test_split_by_episode_keeps_demos_and_arms_whole() -> None:
    episodes = _episodes(files=3, demos=10, arms=2)
    train, val = split_by_episode(episodes, 0.2, seed=3)
    train_groups, val_groups = {e.group for e in train}, {e.group for e in val}
    assert not train_groups & val_groups
    assert len(val_groups) == 6  # 2 per file
    for group in val_groups:
        assert sum(e.group == group for e in val) == 2  # both arms together
    assert split_by_episode(episodes, 0.2, seed=3)[1] == val
    chunks = make_chunks(val, 8)
    assert len(chunks) == 5 * len(val) and chunks.episode.max() == len(val) - 1


def test_split_needs_two_demos_somewhere() -> None:
    with pytest.raises(ValueError, match="two or more demonstrations"):
        split_by_episode(_episodes(files=2, demos=1), 0.2)
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_episode(_episodes(files=1, demos=3), 1.5)
