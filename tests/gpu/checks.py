"""The GPU suite's checks as functions of the device, so their logic can be run (slowly) on CPU too:
`python -c "from tests.gpu.checks import phase1; print(phase1('cpu', tmp))"`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from rvq import criteria


def phase1_demos() -> list[str]:
    """robosuite's demos, plus scripted LIBERO demos (RVQ_SCRIPTED_DEMOS) and a user's LIBERO folder
    (RVQ_LIBERO_DEMOS) when those variables name folders."""
    from rvq.data import embedded_demo_files

    demos = [str(p) for p in embedded_demo_files()]
    for var in ("RVQ_SCRIPTED_DEMOS", "RVQ_LIBERO_DEMOS"):
        if os.environ.get(var):
            demos.append(os.environ[var])
    return demos


def phase1(device: str, out_dir: Path, steps: int = 3000) -> dict[str, Any]:
    """Train robust and naive tokenizers on real demos; assert the Phase 1 criteria; return both reports."""
    from rvq.tokenizer import ActionTokenizer
    from rvq.training.tokenizer import TrainTokenizerConfig, train_tokenizer

    reports = {}
    for quantizer in ("robust", "naive"):
        cfg = TrainTokenizerConfig(quantizer=quantizer, demos=phase1_demos(), out_dir=str(out_dir / quantizer),
                                   steps=steps, device=device, progress=False)
        reports[quantizer] = train_tokenizer(cfg)
    robust, naive = reports["robust"]["best"], reports["naive"]["best"]
    assert robust["mse"] <= criteria.ROBUST_VS_NAIVE_MSE_RATIO * naive["mse"], (robust["mse"], naive["mse"])
    assert robust["num_effective_layers"] == 8, robust["num_effective_layers"]
    tokenizer = ActionTokenizer.from_checkpoint(out_dir / "robust" / "tokenizer.pt", device=device)
    x = torch.rand(256, 8, 7, device=device) * 2 - 1
    with torch.no_grad():
        forward, codes = tokenizer.model(x)
        decoded = tokenizer.model.decode_from_indices(codes)
    assert (decoded - forward).abs().max().item() <= criteria.DECODE_EQUALS_FORWARD_ATOL
    return reports


def expert_sample(tasks: dict[str, list[int]], trials: int, out_dir: Path) -> dict[str, float]:
    """Run the scripted expert with the standard protocol on a task sample; assert the success criterion."""
    from rvq.eval import EvalConfig, build_report, run_eval

    rates = {}
    for suite, ids in tasks.items():
        path = run_eval(EvalConfig(suite=suite, tasks=ids, trials=trials, policy="expert", out_dir=str(out_dir / suite),
                                   workers=int(os.environ.get("RVQ_EVAL_WORKERS", "4"))), progress=False)
        summary = build_report([path])["suites"][0]
        assert summary["errors"] == 0, summary
        rates[suite] = summary["success_rate"]
        assert rates[suite] >= criteria.EXPERT_SUCCESS_RATE, (suite, rates[suite])
    return rates
