"""Lazy Phase 2 features: the same rows as in RAM, the same training, bounded memory for a file larger than the
budget, and bad rows refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mocks.phase2_files import write_phase2_file
from rvq.data.feature_store import LazyFeatures, feature_memory_budget
from rvq.data.phase2 import load_phase2_data
from rvq.models import TokenSpace
from rvq.models.standardize import FeatureStandardizer
from tests.unit.training.test_head_training import _cfg, _tokenizer
from rvq.training.heads import build_head, fit_head


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("lazy")
    return [write_phase2_file(root / "a.h5", 120, 16, seed=0), write_phase2_file(root / "b.h5", 100, 16, seed=1)]


def test_lazy_rows_equal_the_rows_read_into_memory(files) -> None:
    eager, lazy = load_phase2_data(files, lazy=False), load_phase2_data(files, lazy=True)
    assert isinstance(lazy.features, LazyFeatures) and isinstance(eager.features, torch.Tensor)
    assert lazy.features.shape == eager.features.shape == (220, 16) and lazy.feature_dim == 16
    index = torch.tensor([219, 3, 3, 150, 0, 119, 120])  # both files, repeats, out of order
    assert torch.equal(lazy.features[index], eager.features[index])
    assert torch.equal(lazy.features[10:130], eager.features[10:130])
    assert torch.equal(lazy.features[5], eager.features[5][None])
    assert torch.equal(lazy.features.materialize(), eager.features)
    assert torch.equal(torch.cat(list(lazy.features.chunks(7))), eager.features)
    (lazy_train, lazy_val), (train, val) = lazy.split_by_episode(0.25, 0), eager.split_by_episode(0.25, 0)
    assert isinstance(lazy_train.features, LazyFeatures)
    assert torch.equal(lazy_train.features[torch.arange(len(lazy_train))], train.features)
    assert torch.equal(lazy_val.features.take(torch.tensor([4, 1]))[0:2], val.features[[4, 1]])
    with pytest.raises(IndexError, match="boolean index"):
        lazy.features[torch.ones(3, dtype=torch.bool)]


def test_standardizer_statistics_from_chunks_equal_the_in_memory_ones(files) -> None:
    lazy = load_phase2_data(files, lazy=True).features
    chunked = FeatureStandardizer(16).fit(lazy)
    whole = lazy.materialize().double()
    torch.testing.assert_close(chunked.mean, whole.mean(0).float())
    torch.testing.assert_close(chunked.std, whole.std(0).float())


def test_training_on_lazy_features_equals_training_in_memory(files) -> None:
    tokens = TokenSpace(2, 3, 4, 5)
    results = []
    for lazy in (False, True):
        train, val = load_phase2_data(files, lazy=lazy).split_by_episode(0.25, 0)
        cfg = _cfg("main", steps=20, eval_every=10, standardize_features=True)
        torch.manual_seed(0)
        results.append(fit_head(build_head(cfg.model_config(16, tokens)), train, val, _tokenizer(), cfg))
    assert results[0].best["loss"] == results[1].best["loss"]
    for key, value in results[0].model.state_dict().items():
        assert torch.equal(value, results[1].model.state_dict()[key]), key


def test_a_nan_row_in_a_lazily_read_file_is_refused(tmp_path: Path) -> None:
    path = write_phase2_file(tmp_path / "nan.h5", 300, 8, nan_row=257)
    with pytest.raises(ValueError, match="features contain NaN/inf"):
        load_phase2_data(path, lazy=True)


def test_the_memory_budget_decides_and_bad_budgets_are_refused(files, monkeypatch) -> None:
    monkeypatch.setenv("RVQ_FEATURE_MEMORY_MB", "0.001")  # ~1 KB: these files (14 KB of features) go lazy
    assert isinstance(load_phase2_data(files).features, LazyFeatures)
    monkeypatch.setenv("RVQ_FEATURE_MEMORY_MB", "1")
    assert isinstance(load_phase2_data(files).features, torch.Tensor)
    monkeypatch.setenv("RVQ_FEATURE_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match="RVQ_FEATURE_MEMORY_MB must be a number"):
        feature_memory_budget()


CHILD = textwrap.dedent("""
    import json, resource, sys
    import torch
    from rvq.data.feature_store import LazyFeatures
    from rvq.data.phase2 import load_phase2_data
    from rvq.models import TokenSpace
    from rvq.training.heads import build_head, fit_head
    from tests.unit.training.test_head_training import _cfg, _tokenizer
    torch.set_num_threads(1)
    tokenizer = _tokenizer()
    cfg = _cfg("main", steps=30, eval_every=30, batch_size=64, standardize_features=True)
    model = build_head(cfg.model_config(int(sys.argv[2]), TokenSpace(2, 3, 4, 5)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    train, val = load_phase2_data(sys.argv[1]).split_by_episode(0.02, 0)
    result = fit_head(model, train, val, tokenizer, cfg)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"lazy": isinstance(train.features, LazyFeatures), "peak_growth_kb": after - before,
                      "loss": result.best["loss"], "rows": len(train)}))
""")


def _train_in_child(path: Path, dim: int) -> dict:
    env = {**os.environ, "RVQ_FEATURE_MEMORY_MB": "8"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(dim)], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[3], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_feature_file_larger_than_the_budget_trains_in_bounded_memory(tmp_path: Path) -> None:
    rows, dim = 16000, 4096  # 250 MiB of features against a budget of 8 MiB
    big = _train_in_child(write_phase2_file(tmp_path / "big.h5", rows, dim, steps_per_episode=400), dim)
    # control: the same run on 64-d features (4 MiB) measures what torch and training cost whatever the file
    small = _train_in_child(write_phase2_file(tmp_path / "small.h5", rows, 64, steps_per_episode=400), 64)
    assert big["lazy"] and np.isfinite(big["loss"]) and big["rows"] > 0
    size_kb = rows * dim * 4 // 1024
    # read into RAM the features alone would add 250 MiB; lazily, a few 8 MiB scan chunks
    assert big["peak_growth_kb"] - small["peak_growth_kb"] < size_kb / 4, (big, small)
