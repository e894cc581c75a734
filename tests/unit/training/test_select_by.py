"""`TrainTokenizerConfig.select_by`: which held-out error picks the best tokenizer checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from mocks.libero_files import write_libero_folder
from rvq.config_cli import config_from
from rvq.rfsq import build_tokenizer_model
from rvq.training.common import seed_everything
from rvq.training.tokenizer import TrainTokenizerConfig, fit_tokenizer, prepare_tokenizer_data


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("select_by") / "demos"
    write_libero_folder(folder, ["pick up the cup", "open the drawer"], num_demos=5, steps=30, images=False)
    return folder


def fitted(demo_dir: Path, select_by: str):
    cfg = config_from(TrainTokenizerConfig, demos=[str(demo_dir)], steps=60, batch_size=64, eval_every=10,
                      warmup_steps=5, progress=False, device="cpu", select_by=select_by, cascade=True,
                      layer0_share=0.5, layer0_warmup_ratio=0.0, linear_inverse=True, encoder_mlp=False)
    data = prepare_tokenizer_data(cfg.demos, 8, 0.2, 0)
    seed_everything(0)
    return fit_tokenizer(build_tokenizer_model(cfg.model_config()), data, cfg)


@pytest.mark.parametrize("select_by, key", [("full_depth", "mse"), ("prefix_mean", "mse_prefix_mean")])
def test_the_best_checkpoint_has_the_lowest_chosen_error(demo_dir: Path, select_by: str, key: str) -> None:
    result = fitted(demo_dir, select_by)
    errors = [record["val"][key] for record in result.history]
    assert result.best[key] == min(errors)
    assert result.best["step"] == result.history[errors.index(min(errors))]["step"]
    for record in result.history:  # the prefix mean is the mean over k = 1..L of decoding the first k layers
        by_layers = record["val"]["mse_by_layers"]
        assert record["val"]["mse_prefix_mean"] == pytest.approx(sum(by_layers) / len(by_layers))


@pytest.mark.parametrize("select_by, best_step", [("full_depth", 10), ("prefix_mean", 20)])
def test_the_two_rules_choose_different_checkpoints_when_the_errors_disagree(
        demo_dir: Path, monkeypatch: pytest.MonkeyPatch, select_by: str, best_step: int) -> None:
    # a linear residual stage decodes the full depth almost exactly from the start (step 10 here), while layer 0 is
    # still coarse; the prefix mean keeps the later checkpoint whose k = 1 has trained
    import rvq.training.tokenizer as training

    scripted = iter([{"mse": 1e-7, "mse_by_layers": [2e-2] + [1e-7] * 7},
                     {"mse": 3e-7, "mse_by_layers": [1e-2] + [3e-7] * 7},
                     {"mse": 2e-7, "mse_by_layers": [1.5e-2] + [2e-7] * 7}])

    def evaluate(*args, **kwargs) -> dict:
        errors = next(scripted)
        return {**errors, "mse_prefix_mean": sum(errors["mse_by_layers"]) / 8}

    monkeypatch.setattr(training, "evaluate_tokenizer", evaluate)
    cfg = config_from(TrainTokenizerConfig, demos=[str(demo_dir)], steps=30, batch_size=64, eval_every=10,
                      warmup_steps=5, progress=False, device="cpu", select_by=select_by)
    data = prepare_tokenizer_data(cfg.demos, 8, 0.2, 0)
    assert fit_tokenizer(build_tokenizer_model(cfg.model_config()), data, cfg).best["step"] == best_step


@pytest.mark.parametrize("options, match", [
    ({"select_by": "k1"}, "select_by must be one of"),
    ({"select_by": "prefix_mean", "quantizer": "layernorm"}, "quantizer 'layernorm' cannot"),
])
def test_bad_selection_rules_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config_from(TrainTokenizerConfig, **options)
