"""Optional experiment logging: off by default, TensorBoard event files that read back, wandb calls through its
public API (a recording stand-in module, since wandb is not installed here), and clear errors."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from rvq.training.heads import build_head, fit_head
from rvq.training.loggers import make_logger, scalar_metrics
from rvq.models import TokenSpace
from tests.unit.training.test_head_training import _cfg, _synthetic, _tokenizer


def _fit(tmp_path: Path, **kw):
    train, val = _synthetic().split_by_episode(0.25, seed=0)
    cfg = _cfg("draft", steps=20, eval_every=10, **kw)
    torch.manual_seed(0)
    return fit_head(build_head(cfg.model_config(16, TokenSpace(2, 3, 4, 5))), train, val, _tokenizer(), cfg, tmp_path)


def test_scalars_flatten_per_layer_lists_and_drop_what_is_not_a_number() -> None:
    record = {"step": 10, "train_loss": 1.5, "lr": 1e-3,
              "val": {"loss": 1.2, "token_accuracy": [0.5, 0.25], "decodable": True, "name": "x", "bad": float("nan")}}
    assert scalar_metrics(record, "train_loss") == {
        "train/train_loss": 1.5, "lr": 1e-3, "val/loss": 1.2, "val/token_accuracy/0": 0.5,
        "val/token_accuracy/1": 0.25}


def test_no_logger_by_default_and_unknown_ones_refused(tmp_path: Path) -> None:
    assert make_logger("none", tmp_path, "run", {}) is None
    with pytest.raises(ValueError, match="unknown logger 'mlflow'"):
        make_logger("mlflow", tmp_path, "run", {})
    with pytest.raises(ValueError, match="needs an output folder"):
        make_logger("tensorboard", None, "run", {})
    _fit(tmp_path / "plain")
    assert not (tmp_path / "plain" / "tensorboard").exists()


def test_tensorboard_event_files_hold_every_evaluation(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _fit(tmp_path, log_to="tensorboard")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    loss = events.Scalars("val/loss")
    assert [e.step for e in loss] == [10, 20]
    assert [e.value for e in loss] == pytest.approx([h["val"]["loss"] for h in result.history])
    assert "val/token_accuracy/0" in events.Tags()["scalars"] and "train/train_loss" in events.Tags()["scalars"]


def test_wandb_gets_the_config_and_each_evaluation(tmp_path: Path, monkeypatch) -> None:
    calls: list[tuple] = []

    class Run:
        def log(self, scalars, step):
            calls.append(("log", step, dict(scalars)))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    result = _fit(tmp_path, log_to="wandb", wandb_project="rvq-test")
    (_, init_kwargs), *logs, finish = calls
    assert init_kwargs["project"] == "rvq-test" and init_kwargs["dir"] == str(tmp_path)
    assert init_kwargs["config"]["log_to"] == "wandb" and init_kwargs["config"]["optim"]["steps"] == 20
    assert [c[1] for c in logs] == [10, 20] and finish == ("finish",)
    assert logs[-1][2]["val/loss"] == pytest.approx(result.history[-1]["val"]["loss"])


def test_a_missing_package_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r'pip install "rvq\[log\]"'):
        _fit(tmp_path, log_to="wandb")
