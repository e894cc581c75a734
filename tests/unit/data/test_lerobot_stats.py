"""LeRobot-style feature stats: exact moments, the histogram quantiles within a bin of the true order statistic,
image stats per channel in [0, 1], and aggregation equal to the stats of the pooled frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rvq.data.lerobot_stats import (HISTOGRAM_BINS, QUANTILE_KEYS, QUANTILES, aggregate_stats, column_stats,
                                    image_stats, sampled_frame_indices)

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(2, 300), st.integers(1, 4)), elements=finite))
def test_column_stats_are_the_columns_moments_and_quantiles_within_a_bin(values: np.ndarray) -> None:
    stats = column_stats(values)
    as_float = values.astype(np.float64)
    np.testing.assert_allclose(stats["mean"], as_float.mean(axis=0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats["std"], as_float.std(axis=0), rtol=1e-12, atol=1e-9)
    assert (stats["min"] == as_float.min(axis=0)).all() and (stats["max"] == as_float.max(axis=0)).all()
    assert stats["count"].tolist() == [len(values)]
    ordered = np.sort(as_float, axis=0)
    width = (ordered[-1] - ordered[0]) / HISTOGRAM_BINS + 1e-9
    for q, key in zip(QUANTILES, QUANTILE_KEYS):
        assert stats[key].shape == (values.shape[1],)
        # the estimate lies in the histogram bin that holds the ceil(q n)-th smallest value
        nearest = ordered[max(math.ceil(q * len(values)), 1) - 1]
        assert (np.abs(stats[key] - nearest) <= width).all(), (key, stats[key], nearest)


def test_a_scalar_column_gives_one_value_per_stat_and_one_frame_gives_its_value_as_every_quantile() -> None:
    stats = column_stats(np.arange(10, dtype=np.int64))
    assert {k: v.shape for k, v in stats.items()} == {k: (1,) for k in stats}
    assert stats["mean"].tolist() == [4.5]
    assert stats["q50"][0] == pytest.approx(4, abs=10 / HISTOGRAM_BINS)  # the 5th smallest of 10: LeRobot's estimate
    single = column_stats(np.array([[2.0, -1.0]], dtype=np.float32))
    assert all(single[k].tolist() == [2.0, -1.0] for k in QUANTILE_KEYS) and single["std"].tolist() == [0, 0]


@pytest.mark.parametrize("bad, message", [(np.array([[1.0], [np.nan]]), "NaN or inf"),
                                          (np.zeros((0, 3)), "no frames")])
def test_bad_columns_are_refused(bad: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        column_stats(bad)


def test_image_stats_are_per_channel_in_unit_range_over_the_sampled_frames() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(250, 8, 6, 3), dtype=np.uint8)
    stats = image_stats(frames)
    picked = sampled_frame_indices(250)
    assert len(picked) == 100 and picked[0] == 0 and picked[-1] == 249  # 250 ** 0.75 < 100: LeRobot's floor
    pixels = frames[picked].reshape(-1, 3) / 255.0
    assert all(v.shape == (3, 1, 1) for k, v in stats.items() if k != "count") and stats["count"].tolist() == [100]
    np.testing.assert_allclose(stats["mean"].ravel(), pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats["std"].ravel(), pixels.std(axis=0), rtol=1e-12)
    assert 0 <= stats["min"].min() and stats["max"].max() <= 1
    large = image_stats(np.zeros((3, 300, 320, 3), dtype=np.uint8) + np.arange(320, dtype=np.uint8)[:, None] % 7)
    assert large["count"].tolist() == [3]  # fewer than 100 frames: every frame
    with pytest.raises(ValueError, match="uint8"):
        image_stats(frames.astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(st.lists(hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.just(3)), elements=finite), min_size=1,
                max_size=5))
def test_aggregated_stats_equal_the_pooled_frames_stats(episodes: list[np.ndarray]) -> None:
    pooled = np.concatenate(episodes)
    total = aggregate_stats([{"action": column_stats(e)} for e in episodes])["action"]
    direct = column_stats(pooled)
    for key in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(total[key], direct[key], rtol=1e-9, atol=1e-7)
    assert total["count"].tolist() == [len(pooled)]
    weights = np.array([len(e) for e in episodes]) / len(pooled)
    np.testing.assert_allclose(total["q50"], sum(w * column_stats(e)["q50"] for w, e in zip(weights, episodes)))


def test_aggregation_keeps_image_shapes_and_features_only_some_episodes_hold() -> None:
    frames = np.full((4, 2, 2, 3), 51, dtype=np.uint8)
    total = aggregate_stats([{"img": image_stats(frames)}, {"img": image_stats(frames), "x": column_stats(np.ones(3))}])
    assert total["img"]["mean"].shape == (3, 1, 1) and np.allclose(total["img"]["mean"], 0.2)
    assert total["x"]["count"].tolist() == [3] and total["img"]["count"].tolist() == [8]
    with pytest.raises(ValueError, match="no episode"):
        aggregate_stats([])
