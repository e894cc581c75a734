"""`rvq compare-tokenizers` on small demo files: every method trained, curves, table and plots written."""

from __future__ import annotations

import json
from pathlib import Path

from mocks.libero_files import write_libero_folder
from rvq.config_cli import config_from
from rvq.compare import CURVE_METHODS, LABELS, compare_tokenizers, comparison_title
from rvq.training.tokenizer import TrainTokenizerConfig


def test_comparison_trains_every_method_and_writes_k_prefix_curves(tmp_path: Path) -> None:
    write_libero_folder(tmp_path / "demos", ["reach", "push"], num_demos=4, steps=30, images=False)
    cfg = config_from(TrainTokenizerConfig, demos=[str(tmp_path / "demos")], steps=6, eval_every=6, batch_size=32, device="cpu",
                               progress=False)
    report = compare_tokenizers(cfg, tmp_path / "out")
    assert set(report["curves"]) == set(CURVE_METHODS)
    assert all(len(curve) == cfg.model.num_layers for curve in report["curves"].values())
    bits = [b for b, _ in report["curves"]["robust"]]
    assert bits == sorted(bits) and bits[-1] == 8 * bits[0]
    families = {row["family"] for row in report["rows"]}
    assert {"naive", "layernorm", "robust", "robust_single", "residual_fsq", "robust_seed_arch", "openvla_bins",
            "dct"} <= families
    cascade = report["trained"]["robust"]  # robust's default recipe is a cascade
    assert cascade["decode_matches_forward"] and len(cascade["mse_by_layers"]) == cfg.model.num_layers
    assert len(cascade["code_perplexity"]) == cfg.model.num_layers  # layer 0's stage, then the residual stage's
    seed_arch, single = report["trained"]["robust_seed_arch"], report["trained"]["robust_single"]
    assert len({seed_arch["mse"], single["mse"], cascade["mse"]}) == 3  # different models, each trained on its own
    table = (tmp_path / "out" / "comparison.md").read_text()
    for method in CURVE_METHODS:
        assert LABELS[method] in table
    assert json.loads((tmp_path / "out" / "comparison.json").read_text())["curves"].keys() == report["curves"].keys()
    assert (tmp_path / "out" / "error_vs_bits.png").stat().st_size > 1000
    assert comparison_title(report).startswith("Robust RFSQ: ")


def test_a_missing_baseline_package_names_the_extra(monkeypatch) -> None:
    import sys

    import pytest

    from rvq.baselines.residual_fsq import LibraryResidualFSQ

    monkeypatch.setitem(sys.modules, "vector_quantize_pytorch", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "rvq\[bench\]"'):
        LibraryResidualFSQ(4, 2, 5)


def test_logging_is_refused_rather_than_ignored(tmp_path) -> None:
    import pytest

    from rvq.training.tokenizer import TrainTokenizerConfig

    with pytest.raises(ValueError, match="does not log to TensorBoard or wandb"):
        compare_tokenizers(config_from(TrainTokenizerConfig, log_to="tensorboard"), tmp_path)


def test_each_row_trains_its_quantizers_recipe() -> None:
    from rvq.compare import _method_config

    base = config_from(TrainTokenizerConfig)
    robust = _method_config("robust", base).resolved()
    model = robust.model_config()
    assert model.cascade and model.layer0_share == 0.5 and model.layer0_warmup == 0  # no warm-up needed
    assert model.linear_inverse and not model.encoder_mlp and robust.select_by == "prefix_mean"
    for method in ("naive", "robust_single"):  # one autoencoder: the fifth pass's recipe, whatever robust's default
        single = _method_config(method, base).resolved()
        assert not single.model.cascade and single.model.encoder_mlp and not single.model.linear_inverse
        assert (single.layer0_warmup_ratio, single.select_by) == (0.2, "full_depth")
    seed_arch = _method_config("robust_seed_arch", base).model_config()
    assert not seed_arch.cascade and not seed_arch.linear_skip and seed_arch.mlp_dim == 64
