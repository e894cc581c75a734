"""The GPU suite's checks as functions of the device, so their logic can be run (slowly) on CPU too:
`python -c "from tests.gpu.checks import phase1; print(phase1('cpu', tmp))"`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from rvq.config_cli import config_from
from rvq import criteria


def eval_workers() -> int:
    """Simulator worker processes for the GPU runner's evaluations (RVQ_EVAL_WORKERS, default 4)."""
    return int(os.environ.get("RVQ_EVAL_WORKERS", "4"))


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
        cfg = config_from(TrainTokenizerConfig, quantizer=quantizer, demos=phase1_demos(), out_dir=str(out_dir / quantizer),
                                   steps=steps, device=device, progress=False)
        reports[quantizer] = train_tokenizer(cfg)
    robust, naive = reports["robust"]["best"], reports["naive"]["best"]
    assert robust["mse"] <= criteria.ROBUST_VS_NAIVE_MSE_RATIO * naive["mse"], (robust["mse"], naive["mse"])
    assert robust["num_effective_layers"] == 8, robust["num_effective_layers"]
    tokenizer = ActionTokenizer.from_checkpoint(out_dir / "robust" / "tokenizer", device=device)
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
                                   workers=eval_workers()), progress=False)
        summary = build_report([path])["suites"][0]
        assert summary["errors"] == 0, summary
        rates[suite] = summary["success_rate"]
        assert rates[suite] >= criteria.EXPERT_SUCCESS_RATE, (suite, rates[suite])
    return rates


def _cli(argv: list[str]) -> None:
    from rvq.cli import main

    assert main(argv) == 0, argv


def scripted_demos(out_dir: Path, suite: str = "libero_spatial", tasks: str = "0-2", trials: int = 10) -> Path:
    """Scripted LIBERO demos with images: RVQ_SCRIPTED_DEMOS when it names a folder, else collected here."""
    if os.environ.get("RVQ_SCRIPTED_DEMOS"):
        return Path(os.environ["RVQ_SCRIPTED_DEMOS"])
    out = out_dir / "scripted-demos"
    _cli(["collect-demos", "--suite", suite, "--tasks", tasks, "--trials", str(trials), "--out-dir", str(out),
          "--workers", str(eval_workers())])
    return out


def phase2(device: str, out_dir: Path, demos: Path, backbone: str | None = None, steps: int = 3000) -> dict[str, Any]:
    """Tokenizer → features → draft and main heads → a checkpoint folder the RSD policy loads.

    backbone None: the tiny random backbone (made here), held to "far above chance": layer-0 accuracy
    of both heads at least `TINY_BACKBONE_L0_ACCURACY_OVER_CHANCE` × chance and above the majority-code
    baseline. A path (real OpenVLA weights): the seed's token-accuracy bars for draft and main."""
    from rvq.policies import TokenPolicy

    ck = out_dir / "checkpoints"
    tokenizer = str(out_dir / "tok" / "tokenizer")
    _cli(["train-tokenizer", "--demos", str(demos), "--optim.steps", str(steps), "--out-dir", str(out_dir / "tok"),
          "--device", device, "--no-progress"])
    tiny = backbone is None
    if tiny:
        _cli(["make-tiny-backbone", "--out-dir", str(out_dir / "backbone")])
        backbone = str(out_dir / "backbone")
    remote = [] if tiny else ["--trust-remote-code"]  # OpenVLA ships its own model code
    _cli(["build-phase2-data", "--demos", str(demos), "--tokenizer", tokenizer, "--backbone", backbone,
          "--out", str(out_dir / "phase2.h5"), "--device", device, "--no-progress", *remote])
    reports = {}
    for kind in ("draft", "main"):
        _cli([f"train-{kind}", "--data", str(out_dir / "phase2.h5"), "--tokenizer", tokenizer,
              "--optim.steps", str(steps), "--out-dir", str(out_dir / kind), "--device", device, "--no-progress"])
        reports[kind] = json.loads((out_dir / kind / "report.json").read_text())["best"]
    _cli(["make-bundle", "--tokenizer", tokenizer, "--main", str(out_dir / "main" / "main"),
          "--draft", str(out_dir / "draft" / "draft"), "--backbone", backbone, "--out-dir", str(ck), *remote])
    if tiny:
        for kind, best in reports.items():
            l0, chance, majority = best["token_accuracy"][0], best["chance_accuracy"], best["majority_accuracy"][0]
            assert l0 >= criteria.TINY_BACKBONE_L0_ACCURACY_OVER_CHANCE * chance and l0 > majority, (kind, l0, majority)
    else:
        assert reports["draft"]["mean_token_accuracy"] >= criteria.OPENVLA_DRAFT_TOKEN_ACCURACY, reports["draft"]
        assert reports["main"]["mean_token_accuracy"] >= criteria.OPENVLA_MAIN_TOKEN_ACCURACY, reports["main"]
    policy = TokenPolicy.from_dir(ck, mode="rsd", device=device, trust_remote_code=bool(remote))  # loads for RSD
    assert policy.draft is not None and policy.main is not None
    return {"checkpoints": ck, **reports}


def rsd_eval(checkpoints: Path, out_dir: Path, suite: str, tasks: list[int], trials: int,
             min_success: float | None = None) -> dict[str, Any]:
    """The RSD policy end to end in LIBERO (standard protocol); no episode may error; with
    `min_success`, the suite's success rate must reach it."""
    from rvq.eval import EvalConfig, build_report, run_eval

    from rvq.policies.bundle import read_layout

    layout = read_layout(checkpoints, "rsd")  # OpenVLA (a hub id, or a folder whose config names code) ships code
    remote = layout.feature_kind == "hub" or (
        layout.feature_kind == "backbone" and "auto_map" in json.loads((Path(layout.feature_source) / "config.json").read_text()))
    path = run_eval(EvalConfig(suite=suite, tasks=tasks, trials=trials, policy="rsd", checkpoints=str(checkpoints),
                               out_dir=str(out_dir), workers=1, trust_remote_code=remote), progress=False)
    summary = build_report([path])["suites"][0]
    assert summary["errors"] == 0 and summary["episodes"] == len(tasks) * trials, summary
    if min_success is not None:
        assert summary["success_rate"] >= min_success, summary
    return summary


STUDY_CONFIGS = Path(__file__).parents[2] / "configs" / "study"


def learned_policy_study(device: str, out_dir: Path, suite: str, min_rsd_success: float | None,
                         **scale: Any) -> dict[str, Any]:
    """The learned-policy study's robust run (`configs/study/<suite>_robust.toml`) on `device`: demos from
    randomized resets → robust tokenizer → state-feature heads → main-only, exact and relaxed RSD on the official
    initial states, next to the expert. Asserts no episode errored, exact RSD acts exactly as main-only (same
    outcome per episode) and, when `min_rsd_success` is given, the RSD success rate. `scale` overrides config fields
    (tasks, demos_per_task, trials, ...) to check the logic on a CPU in minutes."""
    from rvq.eval.results import read_results
    from rvq.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig.from_file(STUDY_CONFIGS / f"{suite}_robust.toml", out_dir=str(out_dir), device=device,
                                   workers=eval_workers(), **scale)
    report = run_pipeline(cfg)
    rows = {r["policy"]: r for r in report["episodes"]["suites"]}
    assert all(r["errors"] == 0 for r in rows.values()), rows
    outcome = {name: {(r["task"], r["trial"]): (r["success"], r["steps"])
                      for r in read_results(out_dir / f"eval_{name}" / "results.jsonl")} for name in ("main", "rsd")}
    assert outcome["rsd"] == outcome["main"], "exact RSD must act exactly as main-only greedy decoding"
    if min_rsd_success is not None:
        assert rows["rsd"]["success_rate"] >= min_rsd_success, rows
    return report
