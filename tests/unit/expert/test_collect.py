"""Demo collection settings: randomized-reset seeds and the checks made before any simulator starts."""

from __future__ import annotations

import pytest

from rvq.expert.collect import CollectConfig, collect_demos, reset_seed


def test_reset_seeds_are_distinct_per_task_and_attempt_and_stable() -> None:
    seeds = {reset_seed(task, attempt) for task in range(10) for attempt in range(500)}
    assert len(seeds) == 10 * 500 and min(seeds) > 50  # never a small trial index or the eval seed 7
    assert reset_seed(3, 4) == reset_seed(3, 4)


def test_attempt_limit_and_refusals(tmp_path) -> None:
    assert CollectConfig(random_resets=50).attempt_limit() == 160
    assert CollectConfig(random_resets=50, max_attempts=70).attempt_limit() == 70
    with pytest.raises(ValueError, match="random_resets must be >= 0"):
        collect_demos(CollectConfig(random_resets=-1, out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"max_attempts must be in \[1, 10000\]"):
        collect_demos(CollectConfig(random_resets=5, max_attempts=20000, out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"trials must be in \[1, 50\]"):
        collect_demos(CollectConfig(trials=51, out_dir=str(tmp_path)))
