"""Temporal ensembling (ACT): which predictions are averaged, their weights, the gripper split, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rvq.eval import EvalConfig, run_eval
from rvq.eval.results import read_results
from rvq.eval.temporal_ensemble import TemporalEnsembler


def _chunk(value: float, gripper: float, size: int = 3) -> np.ndarray:
    chunk = np.full((size, 7), value)
    chunk[:, -1] = gripper
    return chunk


def test_the_action_is_the_weighted_mean_of_every_chunk_covering_the_step() -> None:
    ensembler = TemporalEnsembler(decay=0.5)
    first = _chunk(0.0, -1.0) + np.arange(3)[:, None] * 0.1  # rows 0.0, 0.1, 0.2 (arm dims)
    assert np.allclose(ensembler.step(first)[:6], 0.0)
    second = _chunk(1.0, -1.0)
    w = np.exp(-0.5 * np.arange(2))
    assert np.allclose(ensembler.step(second)[:6], (w @ [0.1, 1.0]) / w.sum())  # first's row 1, second's row 0
    third = _chunk(2.0, 1.0)
    w = np.exp(-0.5 * np.arange(3))
    action = ensembler.step(third)
    assert np.allclose(action[:6], (w @ [0.2, 1.0, 2.0]) / w.sum())  # oldest weighted most
    assert action[-1] == -1.0  # two of three chunks (the heavier ones) open: the mean is below 0
    action = ensembler.step(_chunk(3.0, 1.0))  # the first chunk no longer covers this step
    w = np.exp(-0.5 * np.arange(3))
    assert len(ensembler.chunks) == 3 and np.allclose(action[:6], (w @ [1.0, 2.0, 3.0]) / w.sum())
    assert action[-1] == -1.0  # rows -1, +1, +1 weighted 1, 0.61, 0.37: -0.02, the oldest still outweighs
    even = TemporalEnsembler(decay=0.0)
    for chunk in (_chunk(0.0, -1.0), _chunk(0.0, 1.0), _chunk(0.0, 1.0)):
        action = even.step(chunk)
    assert action[-1] == 1.0  # equal weights: two closes against one open
    ensembler.reset()
    assert np.allclose(ensembler.step(_chunk(5.0, 1.0))[:6], 5.0)


def test_refusals() -> None:
    with pytest.raises(ValueError, match="decay must be >= 0"):
        TemporalEnsembler(-1.0)
    ensembler = TemporalEnsembler()
    with pytest.raises(ValueError, match=r"\[C, A\]"):
        ensembler.step(np.zeros(7))
    ensembler.step(np.zeros((8, 7)))
    with pytest.raises(ValueError, match="chunk shape changed"):
        ensembler.step(np.zeros((4, 7)))
    with pytest.raises(ValueError, match="does not combine with execute_steps"):
        EvalConfig(policy="noop", env="mock", temporal_ensemble=0.01, execute_steps=2).validate()
    with pytest.raises(ValueError, match=r"temporal_ensemble \(the decay m\) must be >= 0"):
        EvalConfig(policy="noop", env="mock", temporal_ensemble=-0.5).validate()


def test_the_policy_acts_every_step_and_the_setting_is_a_result_setting(tmp_path: Path, monkeypatch) -> None:
    from rvq.policies import NoopPolicy

    calls: list[int] = []
    original = NoopPolicy.act
    monkeypatch.setattr(NoopPolicy, "act", lambda self, obs: calls.append(1) or original(self, obs))
    cfg = EvalConfig(suite="libero_spatial", tasks=[0], trials=1, policy="noop", env="mock", max_steps=12,
                     out_dir=str(tmp_path), temporal_ensemble=0.01)
    path = run_eval(cfg, progress=False)
    (record,) = read_results(path)
    assert record["steps"] == 12 and len(calls) == 12 and record["error"] is None
    with pytest.raises(ValueError, match=r"temporal_ensemble: 0.01 there, absent now"):
        run_eval(EvalConfig(suite="libero_spatial", tasks=[0], trials=2, policy="noop", env="mock", max_steps=12,
                            out_dir=str(tmp_path)), progress=False)
