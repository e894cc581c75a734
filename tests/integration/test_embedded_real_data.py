"""What must hold on the embedded real teleoperation demos (robosuite's lift + two-arm handover):
robust held-out MSE at least 30% below naive (the seed documents' bar), all 8 robust layers
effective on held-out episodes, naive's dead layers shown, decode == forward."""

from __future__ import annotations

import pytest

from rvq.config_cli import config_from
from rvq.rfsq import ActionRFSQAE
from rvq.training.common import seed_everything
from rvq.training.tokenizer import TrainTokenizerConfig, fit_tokenizer, prepare_tokenizer_data

ACCEPTANCE_REDUCTION = 0.30  # seed documents: "> 30% improvement"


@pytest.fixture(scope="module")
def results() -> dict:
    cfg = config_from(TrainTokenizerConfig, steps=800, eval_every=400, progress=False, device="cpu")
    data = prepare_tokenizer_data([], cfg.model.chunk_size, cfg.val_fraction, cfg.seed)
    out = {}
    for quantizer in ("naive", "robust"):
        seed_everything(cfg.seed)
        model = ActionRFSQAE(quantizer=quantizer)
        out[quantizer] = fit_tokenizer(model, data, cfg).best
    return out


def test_robust_beats_naive_by_the_acceptance_bar(results: dict) -> None:
    naive, robust = results["naive"]["mse"], results["robust"]["mse"]
    assert robust <= (1 - ACCEPTANCE_REDUCTION) * naive, (robust, naive)


def test_all_robust_layers_effective_naive_dead(results: dict) -> None:
    assert results["robust"]["num_effective_layers"] == 8, results["robust"]["energy_ratio"]
    assert results["naive"]["num_effective_layers"] == 1
    naive_std = results["naive"]["residual_std"]
    assert all(s == pytest.approx(naive_std[1], rel=1e-6) for s in naive_std[1:])
    assert results["robust"]["residual_std"][-1] < 1e-3 * results["robust"]["residual_std"][0]


def test_decode_equals_forward_on_held_out(results: dict) -> None:
    assert results["robust"]["decode_matches_forward"] and results["naive"]["decode_matches_forward"]
    by_layers = results["robust"]["mse_by_layers"]
    assert by_layers[0] > by_layers[1] > by_layers[2]
