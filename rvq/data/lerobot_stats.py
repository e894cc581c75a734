"""Feature statistics as LeRobot computes and stores them (`meta/stats.json`, per-episode stats).

LeRobot's training scripts normalize with these; a dataset without them crashes `lerobot-train` or trains without
normalization. Per feature and episode: `min`, `max`, `mean`, `std` and the quantiles `q01 q10 q50 q90 q99`, each
one value per dimension (shape [D]; [1] for a scalar column), and `count` (shape [1], the episode's frames). Images
are per channel, in [0, 1], shape [3, 1, 1], from a sample of the episode's frames (`count` = frames sampled).
The dataset's stats aggregate the episodes': count-weighted mean, pooled variance, min of mins, max of maxes, and
count-weighted quantiles.

Why not LeRobot's own functions: rvq writes datasets without LeRobot installed (its dependencies pin an older torch).
The quantiles use LeRobot's estimator on purpose (a 5000-bin histogram over [min, max], linear inside the bin), not
exact quantiles, so a dataset rvq writes carries the numbers LeRobot would have written for the same frames; the
nox session `lerobot` checks them against LeRobot's own computation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
HISTOGRAM_BINS = 5000
EDGE_PAD = 1e-10  # LeRobot widens the histogram's range by this much on each side

Stats = dict[str, np.ndarray]


def _histogram_quantiles(column: np.ndarray, low: float, high: float) -> list[float]:
    """LeRobot's quantile estimate of one dimension's values: the bin where the cumulative count reaches q · n,
    linearly interpolated inside it (the lower edge of the range when the first bin already reaches it)."""
    edges = np.linspace(low - EDGE_PAD, high + EDGE_PAD, HISTOGRAM_BINS + 1)
    cumulative = np.cumsum(np.histogram(column, bins=edges)[0])
    out = []
    for q in QUANTILES:
        target = q * len(column)
        i = int(np.searchsorted(cumulative, target))
        if i == 0 or i >= len(cumulative):
            out.append(float(edges[0] if i == 0 else edges[-1]))
            continue
        before, inside = cumulative[i - 1], cumulative[i] - cumulative[i - 1]
        out.append(float(edges[i] + (target - before) / inside * (edges[i + 1] - edges[i])) if inside
                   else float(edges[i]))
    return out


def column_stats(values: np.ndarray) -> Stats:
    """Stats of a numeric column: `values` [N] (a scalar feature) or [N, D]; every stat [D] ([1] for a scalar),
    `count` [1] = N. Refuses NaN / inf and an empty column (LeRobot would write them into stats.json)."""
    values = np.asarray(values)
    if not len(values):
        raise ValueError("no frames to compute stats over")
    rows = values.reshape(len(values), -1) if values.ndim > 1 else values.reshape(-1, 1)
    if np.issubdtype(rows.dtype, np.floating) and not np.isfinite(rows).all():
        raise ValueError("stats of a column holding NaN or inf")
    as_float = rows.astype(np.float64)
    stats = {"min": as_float.min(axis=0), "max": as_float.max(axis=0), "mean": as_float.mean(axis=0),
             "std": as_float.std(axis=0), "count": np.array([len(rows)], dtype=np.int64)}
    if len(rows) < 2:  # as LeRobot: no histogram over one value, its quantiles are the value
        quantiles = [stats["mean"]] * len(QUANTILES)
    else:
        per_dim = [_histogram_quantiles(as_float[:, d], stats["min"][d], stats["max"][d])
                   for d in range(rows.shape[1])]
        quantiles = [np.array([dim[k] for dim in per_dim]) for k in range(len(QUANTILES))]
    return stats | dict(zip(QUANTILE_KEYS, quantiles))


def sampled_frame_indices(length: int) -> np.ndarray:
    """Which of an episode's `length` frames LeRobot samples for image stats: all up to 100, then about
    length^0.75 (at most 10,000), evenly spaced."""
    count = length if length < 100 else max(100, min(int(length ** 0.75), 10_000))
    return np.round(np.linspace(0, length - 1, count)).astype(int)


def image_stats(frames: np.ndarray) -> Stats:
    """Per-channel stats of an episode's frames `frames` [T, H, W, 3] uint8, as LeRobot stores them: a sample of the
    frames (`sampled_frame_indices`), frames of 300 px or more thinned to about 150 px, values in [0, 1]; every stat
    [3, 1, 1], `count` [1] = frames sampled."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"image stats need frames [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    sample = frames[sampled_frame_indices(len(frames))]
    height, width = sample.shape[1:3]
    if max(height, width) >= 300:
        step = int(max(height, width) / 150)
        sample = sample[:, ::step, ::step]
    stats = column_stats(sample.reshape(-1, 3))
    return {k: v if k == "count" else (v / 255.0).reshape(3, 1, 1) for k, v in stats.items()} | {
        "count": np.array([len(sample)], dtype=np.int64)}


def aggregate_stats(episodes: Sequence[Mapping[str, Stats]]) -> dict[str, Stats]:
    """The dataset's stats from its episodes' (feature → stats): count-weighted means and quantiles, the pooled
    variance, min of mins and max of maxes; `count` the total."""
    if not episodes:
        raise ValueError("no episode stats to aggregate")
    out = {}
    for feature in dict.fromkeys(k for episode in episodes for k in episode):
        parts = [episode[feature] for episode in episodes if feature in episode]
        counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
        weights = (counts / counts.sum()).reshape(-1, *([1] * parts[0]["mean"].ndim))
        means = np.stack([p["mean"] for p in parts])
        mean = (weights * means).sum(axis=0)
        variance = (weights * (np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2)).sum(axis=0)
        out[feature] = {"min": np.min([p["min"] for p in parts], axis=0),
                        "max": np.max([p["max"] for p in parts], axis=0),
                        "mean": mean, "std": np.sqrt(variance),
                        "count": np.array([int(counts.sum())], dtype=np.int64)}
        out[feature] |= {q: (weights * np.stack([p[q] for p in parts])).sum(axis=0) for q in QUANTILE_KEYS}
    return out


def stats_to_json(stats: Mapping[str, Stats]) -> dict[str, dict[str, list]]:
    """feature → stat → nested lists (what `meta/stats.json` and `episodes_stats.jsonl` hold)."""
    return {feature: {k: np.asarray(v).tolist() for k, v in s.items()} for feature, s in stats.items()}


def flat_stats_columns(stats: Mapping[str, Stats]) -> dict[str, list]:
    """An episode's stats as LeRobot v3.0's `meta/episodes` columns: `stats/<feature>/<stat>` → nested lists."""
    return {f"stats/{feature}/{k}": np.asarray(v).tolist() for feature, s in stats.items() for k, v in s.items()}
