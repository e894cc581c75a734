"""`rvq` command line: Phase 1 (`train-tokenizer`, `compare-tokenizers`), Phase 2 (`make-tiny-backbone`,
`build-phase2-data`, `train-draft`, `train-main`), policies (`make-bundle`), evaluation and the pipeline.

Every command takes its options from its config dataclass (`rvq.config_cli`: tyro, defaults and field comments in
`rvq COMMAND --help`, `--config FILE`, dotted flags for nested groups); argparse only lists the commands.

The commands import their modules when they run (function-level imports): `rvq --help` and `rvq --version` then
answer without importing torch (seconds)."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rvq import __version__
from rvq.config_cli import parse_config

if TYPE_CHECKING:
    from rvq.training.tokenizer import TrainTokenizerConfig


def _train_tokenizer_config(command: str, argv: list[str]) -> TrainTokenizerConfig:
    from rvq.training.tokenizer import TrainTokenizerConfig

    return parse_config(TrainTokenizerConfig, argv, f"rvq {command}",
                        defaults={"out_dir": "runs/compare" if command == "compare-tokenizers" else "runs/tokenizer"})


def cmd_train_tokenizer(argv: list[str]) -> int:
    from rvq.training.tokenizer import train_tokenizer

    cfg = _train_tokenizer_config("train-tokenizer", argv)
    report = train_tokenizer(cfg)
    print((Path(cfg.out_dir) / "report.md").read_text())
    print(json.dumps({"checkpoint": report["checkpoint"], "val_mse": report["best"]["mse"]}))
    return 0


def cmd_compare_tokenizers(argv: list[str]) -> int:
    from rvq.compare import compare_tokenizers

    cfg = _train_tokenizer_config("compare-tokenizers", argv)
    compare_tokenizers(cfg, cfg.out_dir)
    print((Path(cfg.out_dir) / "comparison.md").read_text())
    return 0


def _train_head(kind: str, argv: list[str]) -> int:
    from rvq.training.heads import TrainHeadConfig, train_head

    cfg = parse_config(TrainHeadConfig, argv, f"rvq train-{kind}", fixed={"kind": kind},
                       defaults={"out_dir": f"runs/{kind}"})
    report = train_head(cfg)
    print((Path(cfg.out_dir) / "report.md").read_text())
    print(json.dumps({"checkpoint": report["checkpoint"], "val_loss": report["best"]["loss"],
                      "mean_token_accuracy": report["best"]["mean_token_accuracy"]}))
    return 0


def cmd_make_tiny_backbone(argv: list[str]) -> int:
    from rvq.backbones import build_backbone, save_backbone
    from rvq.backbones.tiny import TinyBackboneConfig

    cfg = parse_config(TinyBackboneConfig, argv, "rvq make-tiny-backbone")
    extractor = build_backbone("tiny", seed=cfg.seed)
    save_backbone(extractor, cfg.out_dir)
    print(json.dumps({"backbone": cfg.out_dir, "feature_dim": extractor.feature_dim, "identity": extractor.identity}))
    return 0


def cmd_build_phase2_data(argv: list[str]) -> int:
    from dataclasses import asdict

    from rvq.backbones.source import load_feature_source
    from rvq.data.phase2 import Phase2DataConfig, build_phase2_data
    from rvq.tokenizer import ActionTokenizer

    cfg = parse_config(Phase2DataConfig, argv, "rvq build-phase2-data")
    tokenizer = ActionTokenizer.from_checkpoint(cfg.tokenizer, device=cfg.device)
    extractor = load_feature_source(cfg.backbone, cfg.device, cfg.trust_remote_code, cfg.image_transform)
    path = build_phase2_data(cfg.demos, tokenizer, extractor, cfg.out, image_key=cfg.image_key,
                             batch_size=cfg.batch_size, progress=cfg.progress, run_config=asdict(cfg))
    print(json.dumps({"data": str(path), "feature_identity": extractor.identity, "tokenizer_identity": tokenizer.identity}))
    return 0


def cmd_make_bundle(argv: list[str]) -> int:
    from rvq.policies.assemble import MakeBundleConfig, make_bundle

    cfg = parse_config(MakeBundleConfig, argv, "rvq make-bundle")
    bundle = make_bundle(cfg)
    print(json.dumps({"bundle": cfg.out_dir, "modes": list(bundle.modes),
                      "tokenizer_identity": bundle.tokenizer.identity, "feature_identity": bundle.features.identity}))
    return 0


def cmd_eval(argv: list[str]) -> int:
    from rvq.eval import EvalConfig, run_eval, write_report

    cfg = parse_config(EvalConfig, argv, "rvq eval")
    out = cfg.out_dir
    path = run_eval(cfg, progress=cfg.progress)
    report = write_report([path], out)
    print((Path(out) / "eval_report.md").read_text())
    print(json.dumps({"results": str(path), "suites": report["suites"]}, default=float))
    errors = sum(row["errors"] for row in report["suites"])
    if errors:
        print(f"error: {errors} episode(s) ended in an error (counted as failures; tracebacks in {path}); "
              f"rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


def cmd_eval_report(argv: list[str]) -> int:
    from rvq.eval import write_report
    from rvq.eval.report import EvalReportConfig, incomplete_rows

    cfg = parse_config(EvalReportConfig, argv, "rvq eval-report")
    report = write_report(cfg.results, cfg.out_dir, cfg.paired_against)
    print((Path(cfg.out_dir) / "eval_report.md").read_text())
    for line in incomplete_rows(report):
        print(f"rvq eval-report: warning: {line}", file=sys.stderr)
    return 0


def cmd_setup_libero(argv: list[str]) -> int:
    from rvq.envs.setup import SetupLiberoConfig, setup_libero

    cfg = parse_config(SetupLiberoConfig, argv, "rvq setup-libero")
    path = setup_libero(cfg.config_dir, install=cfg.install)
    print(f"wrote {path}; export LIBERO_CONFIG_PATH={path.parent} MUJOCO_GL=egl (osmesa as a fallback)")
    return 0


def cmd_collect_demos(argv: list[str]) -> int:
    from rvq.expert.collect import CollectConfig, collect_demos

    for summary in collect_demos(parse_config(CollectConfig, argv, "rvq collect-demos")):
        print(json.dumps(summary))
    return 0


def cmd_pipeline(argv: list[str]) -> int:
    from rvq.pipeline import PipelineConfig, run_pipeline

    plan = "--plan" in argv  # a way of running, not a setting of the run
    cfg = parse_config(PipelineConfig, [a for a in argv if a != "--plan"], "rvq pipeline")
    if plan:
        run_pipeline(cfg, plan=True)
        return 0
    run_pipeline(cfg)
    print((Path(cfg.out_dir) / "report.md").read_text())
    return 0


# every command: its handler (given the arguments after its name, which it parses from its config dataclass with
# rvq.config_cli: tyro, defaults in --help, `--config FILE`) and its line in `rvq --help`
COMMANDS = {
    "train-tokenizer": (cmd_train_tokenizer, "train an RFSQ action tokenizer (default: robust, embedded demos)"),
    "compare-tokenizers": (cmd_compare_tokenizers, "naive / LayerNorm / robust RFSQ, ResidualFSQ, bins, DCT"),
    "make-tiny-backbone": (cmd_make_tiny_backbone, "save a randomly initialized tiny LLaVA backbone (tests, demos)"),
    "build-phase2-data": (cmd_build_phase2_data, "demos → cached features (VLA or state) + token labels (HDF5)"),
    "train-draft": (lambda argv: _train_head("draft", argv), "train the draft token predictor on Phase 2 data"),
    "train-main": (lambda argv: _train_head("main", argv), "train the main token predictor on Phase 2 data"),
    "make-bundle": (cmd_make_bundle, "tokenizer + heads + feature source → a policy bundle (what eval runs)"),
    "setup-libero": (cmd_setup_libero, "write LIBERO's config.yaml and link its assets (non-interactive)"),
    "eval": (cmd_eval, "evaluate a policy on a LIBERO suite (OpenVLA/OFT protocol)"),
    "eval-report": (cmd_eval_report, "merge eval result files (shards) into success rates with 95% CIs"),
    "collect-demos": (cmd_collect_demos, "scripted expert → LIBERO-layout HDF5 demos, one file per task"),
    "pipeline": (cmd_pipeline, "collect → tokenizer → Phase 2 → draft/main → eval → report, one run folder (--plan: "
                               "say what a rerun would do)"),
}


# every command's config dataclass ("module:class", imported when needed): its options (docs/cli.md is generated from
# these by rvq.cli_reference)
CONFIGS = {
    "train-tokenizer": "rvq.training.tokenizer:TrainTokenizerConfig",
    "compare-tokenizers": "rvq.training.tokenizer:TrainTokenizerConfig",
    "make-tiny-backbone": "rvq.backbones.tiny:TinyBackboneConfig",
    "build-phase2-data": "rvq.data.phase2:Phase2DataConfig",
    "train-draft": "rvq.training.heads:TrainHeadConfig",
    "train-main": "rvq.training.heads:TrainHeadConfig",
    "make-bundle": "rvq.policies.assemble:MakeBundleConfig",
    "setup-libero": "rvq.envs.setup:SetupLiberoConfig",
    "eval": "rvq.eval.config:EvalConfig",
    "eval-report": "rvq.eval.report:EvalReportConfig",
    "collect-demos": "rvq.expert.collect:CollectConfig",
    "pipeline": "rvq.pipeline:PipelineConfig",
}


def build_parser() -> argparse.ArgumentParser:
    """`rvq --help`: the commands (each parses its own options: `rvq COMMAND --help`)."""
    parser = argparse.ArgumentParser(prog="rvq", description=__doc__.split("\n\n")[0],
                                     epilog="rvq COMMAND --help lists a command's options")
    parser.add_argument("--version", action="version", version=f"rvq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text.replace("%", "%%"), add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints the usage or the version (exit 0 for --help, 2 otherwise)
    from PIL.Image import DecompressionBombError

    from rvq.eval.results import EvalStopped, RunInUse  # (imports torch: after --help)
    from rvq.rfsq.residual import NotDecodableError

    command = argv[0]
    # what a user's input or environment can cause: one line naming it (RVQ_DEBUG=1 shows the traceback); anything
    # else is a bug of rvq's and keeps its traceback
    user_errors = (ValueError, OSError, KeyError, ModuleNotFoundError, NotDecodableError, RunInUse, EvalStopped,
                   pickle.UnpicklingError, DecompressionBombError)
    try:
        return COMMANDS[command][0](argv[1:])
    except user_errors as exc:
        if os.environ.get("RVQ_DEBUG"):
            if getattr(exc, "detail", ""):  # another process's traceback
                print(exc.detail, file=sys.stderr)
            raise
        message = str(exc).strip() or type(exc).__name__
        print(f"rvq {command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
