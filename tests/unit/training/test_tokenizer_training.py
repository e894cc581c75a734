"""The Phase 1 training loop: it learns, keeps the best by validation, resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mocks.libero_files import write_libero_folder
from rvq.config_cli import config_from
from rvq.rfsq import ActionRFSQAE, read_tokenizer
from rvq.training.tokenizer import TrainTokenizerConfig, fit_tokenizer, prepare_tokenizer_data, train_tokenizer


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    write_libero_folder(tmp_path / "demos", ["pick up the cup", "open the drawer"], num_demos=5, steps=30,
                        images=False)
    return tmp_path / "demos"


def _cfg(demo_dir: Path, **kw) -> TrainTokenizerConfig:
    base = dict(demos=[str(demo_dir)], steps=60, batch_size=64, eval_every=20, warmup_steps=5, progress=False,
                device="cpu")
    base.update(kw)
    return config_from(TrainTokenizerConfig, **base)


def test_fit_reduces_validation_error_and_logs(tmp_path: Path, demo_dir: Path) -> None:
    cfg = _cfg(demo_dir, steps=150, eval_every=50)
    data = prepare_tokenizer_data(cfg.demos, 8, 0.2, 0)
    untrained = ActionRFSQAE.from_config(cfg.model)
    from rvq.training.tokenizer_eval import evaluate_tokenizer

    before = evaluate_tokenizer(untrained, data.val, data.normalizer)["mse"]
    result = fit_tokenizer(ActionRFSQAE.from_config(cfg.model), data, cfg, tmp_path / "run")
    assert result.best["mse"] < before / 3
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [50, 100, 150]
    assert {"mse", "mse_raw", "mse_per_dim", "residual_std", "code_perplexity", "bits_per_chunk"} <= set(lines[0]["val"])
    saved = read_tokenizer(tmp_path / "run" / "tokenizer")
    assert saved.metrics["val"]["mse"] == result.best["mse"] == min(r["val"]["mse"] for r in lines)
    assert saved.action_stats["kind"] == "q99_guarded"


def test_the_layer0_warmup_ratio_is_a_share_of_the_run(tmp_path: Path, demo_dir: Path) -> None:
    cfg = _cfg(demo_dir, steps=60, layer0_warmup_ratio=0.25, layer0_warmup=0, coarse_decoder=True,
               out_dir=str(tmp_path / "run"))
    assert cfg.model.layer0_warmup == 0 and cfg.model_config().layer0_warmup == 15  # 0.25 of 60 steps
    assert _cfg(demo_dir, steps=200, layer0_warmup_ratio=0.25).model_config().layer0_warmup == 50
    train_tokenizer(cfg)
    saved = read_tokenizer(tmp_path / "run" / "tokenizer")
    assert saved.model.config.layer0_warmup == 15  # the checkpoint records the warm-up it trained with
    assert _cfg(demo_dir, layer0_warmup_ratio=0.0).model_config().layer0_warmup == 0
    # a count overrides the ratio (transformers' warmup_steps and warmup_ratio)
    assert _cfg(demo_dir, layer0_warmup_ratio=0.25, layer0_warmup=7).model_config().layer0_warmup == 7
    with pytest.raises(ValueError, match=r"layer0_warmup_ratio must be in \[0, 1\), got 1.0"):
        _cfg(demo_dir, layer0_warmup_ratio=1.0)


def _model() -> ActionRFSQAE:
    torch.manual_seed(0)
    return ActionRFSQAE()


def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path, demo_dir: Path) -> None:
    data = prepare_tokenizer_data([str(demo_dir)], 8, 0.2, 0)
    straight = fit_tokenizer(_model(), data, _cfg(demo_dir), tmp_path / "a")
    cut = fit_tokenizer(_model(), data, _cfg(demo_dir), tmp_path / "b", stop_at=40)  # preempted
    assert cut.history[-1]["step"] == 40
    resumed = fit_tokenizer(_model(), data, _cfg(demo_dir, resume=str(tmp_path / "b" / "last.pt")),
                            tmp_path / "b")
    assert [r["step"] for r in resumed.history] == [20, 40, 60]
    assert resumed.history == straight.history
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [20, 40, 60]


def test_resume_refuses_other_files(tmp_path: Path, demo_dir: Path) -> None:
    data = prepare_tokenizer_data([str(demo_dir)], 8, 0.2, 0)
    fit_tokenizer(ActionRFSQAE(), data, _cfg(demo_dir, steps=20), tmp_path / "a")
    with pytest.raises(ValueError, match="not a rvq.tokenizer-train-state"):
        fit_tokenizer(ActionRFSQAE(), data, _cfg(demo_dir, resume=str(tmp_path / "a" / "tokenizer")))
    with pytest.raises(ValueError, match="model config differs"):
        fit_tokenizer(ActionRFSQAE(num_layers=4), data, _cfg(demo_dir, resume=str(tmp_path / "a" / "last.pt")))
    # A state written before the optimizer had two parameter groups (version 1) cannot continue under this one.
    from rvq.checkpoint_io import read_checkpoint, write_checkpoint

    old = read_checkpoint(tmp_path / "a" / "last.pt")
    write_checkpoint(tmp_path / "old.pt", {**old, "version": 1})
    with pytest.raises(ValueError, match="training state of version 1.*start a new run"):
        fit_tokenizer(ActionRFSQAE(), data, _cfg(demo_dir, steps=20, resume=str(tmp_path / "old.pt")))


def test_rare_action_reach_measures_how_much_of_a_large_action_survives() -> None:
    from rvq.training.tokenizer_eval import rare_action_reach

    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(50, 8, 2, generator=generator) * 0.1
    raw[0, 0, 0], raw[1, 0, 0] = 2.0, -1.5  # two rare large actions on dim 0
    valid = torch.ones(50, 8, dtype=torch.bool)
    mask = torch.tensor([True, False])
    exact = rare_action_reach(raw.clone(), raw, valid, mask)
    assert exact["rare_reach_median"] == pytest.approx(1.0) and exact["rare_reach_min"] == pytest.approx(1.0)
    assert 0 < exact["rare_fraction"] <= 0.02 * 0.5 + 1e-9  # beyond q01/q99 of dim 0 only (dim 1 not normalized)
    clipped = rare_action_reach(raw.clamp(-0.5, 0.5), raw, valid, mask)
    assert clipped["rare_reach_min"] == pytest.approx(0.25)  # 2.0 executed as 0.5
    assert clipped["rare_reach_p05"] < 0.9 and clipped["rare_reach_median"] == pytest.approx(1.0)  # the rest intact


def test_the_job_prints_a_line_per_evaluation_and_draws_its_figures_from_its_tables(tmp_path: Path, demo_dir: Path,
                                                                                   capsys) -> None:
    from rvq.plots import residual_std_title

    report = train_tokenizer(_cfg(demo_dir, steps=40, eval_every=20, progress=True, out_dir=str(tmp_path / "run")))
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if " step " in line and "held-out" in line]
    assert [line.split(" step ")[1].split(":")[0] for line in lines] == ["20/40", "40/40"], out  # in a log file too
    assert "(best so far, saved)" in lines[0]
    assert report["figures"] == ["residual_std.png", "error_by_prefix.png"]
    for name in report["figures"]:
        assert (tmp_path / "run" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "`residual_std.png`, `error_by_prefix.png`" in (tmp_path / "run" / "report.md").read_text()
    std = report["best"]["residual_std"]
    title = residual_std_title({"robust": std})  # the title states what the plotted numbers show
    assert f"{std[0] / std[-1]:.3g}x" in title


def test_demos_shorter_than_one_chunk_are_refused_not_trained_on_padding(tmp_path: Path) -> None:
    write_libero_folder(tmp_path / "short", ["reach"], num_demos=4, steps=5, images=False)
    with pytest.raises(ValueError, match=r"the longest of 4 episode\(s\) has [1-7] steps, fewer than one chunk of 8"):
        prepare_tokenizer_data([str(tmp_path / "short")], 8, 0.2, 0)
