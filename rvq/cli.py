"""`rvq` command line: Phase 1 (`train-tokenizer`, `compare-tokenizers`), Phase 2 (`make-tiny-backbone`,
`build-phase2-data`, `train-draft`, `train-main`), policies (`make-bundle`), evaluation and the pipeline.

The training commands take their options from their config dataclasses (`rvq.config_cli`: tyro, defaults in
`--help`, `--config FILE`); the others are still declared here with argparse."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rvq.eval.temporal_ensemble import DEFAULT_ENSEMBLE_DECAY
from rvq.config_cli import parse_config
from rvq.training.tokenizer import TrainTokenizerConfig

HELP = {
    "out_dir": "output folder",
    "device": "auto, cpu, cuda, cuda:N",
    "image_transform": "VLA images, after the 180° turn: resize (Lanczos, OpenVLA) or oft (+ JPEG round trip and the "
                       "90%% centre crop OFT-trained models expect); an observation step, part of the features' "
                       "identity, so use the same value for build-phase2-data and make-bundle",
    "trust_remote_code": "run Python code shipped in the backbone folder or hub repo (OpenVLA/OFT need it); "
                         "off by default: a backbone that asks for it is refused",
}


def _train_tokenizer_config(command: str, argv: list[str]) -> TrainTokenizerConfig:
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




def cmd_make_tiny_backbone(args: argparse.Namespace) -> int:
    from rvq.backbones import build_backbone, save_backbone

    extractor = build_backbone("tiny", seed=args.seed)
    save_backbone(extractor, args.out_dir)
    print(json.dumps({"backbone": args.out_dir, "feature_dim": extractor.feature_dim, "identity": extractor.identity}))
    return 0


def cmd_build_phase2_data(args: argparse.Namespace) -> int:
    from rvq.backbones.source import load_feature_source
    from rvq.data.phase2 import build_phase2_data
    from rvq.tokenizer import ActionTokenizer

    tokenizer = ActionTokenizer.from_checkpoint(args.tokenizer, device=args.device)
    extractor = load_feature_source(args.backbone, args.device, args.trust_remote_code, args.image_transform)
    path = build_phase2_data(args.demos, tokenizer, extractor, args.out, image_key=args.image_key,
                             batch_size=args.batch_size, progress=args.progress)
    print(json.dumps({"data": str(path), "feature_identity": extractor.identity, "tokenizer_identity": tokenizer.identity}))
    return 0


def cmd_make_bundle(args: argparse.Namespace) -> int:
    from rvq.backbones.source import load_feature_source
    from rvq.backbones.state import StateFeatures
    from rvq.models import read_draft, read_main
    from rvq.policies import PolicyBundle
    from rvq.processors import libero_action_steps
    from rvq.tokenizer import ActionTokenizer

    features = load_feature_source(args.backbone, "cpu", args.trust_remote_code, args.image_transform)
    is_state = isinstance(features.source, StateFeatures)
    tokenizer = ActionTokenizer.from_checkpoint(args.tokenizer)
    ids = {"tokenizer_identity": tokenizer.identity, "feature_identity": features.identity}
    main = read_main(args.main, **ids)
    draft = read_draft(args.draft, **ids) if args.draft else None
    protocol = {"suite": args.suite, "execute_steps": args.execute_steps or None,
                "temporal_ensemble": args.temporal_ensemble}
    # a VLA named by hub id stays a reference (its weights and code come from the Hub); a local folder is copied in
    local = Path(args.backbone).is_dir()
    bundle = PolicyBundle(tokenizer, main, draft, features,
                          feature_hub_id=None if is_state or local else args.backbone,
                          backbone_folder=args.backbone if local and not is_state else None,
                          protocol={k: v for k, v in protocol.items() if v is not None},
                          action_steps=libero_action_steps(args.flip_gripper))
    bundle.save_pretrained(args.out)
    print(json.dumps({"bundle": args.out, "modes": list(bundle.modes), **ids}))
    return 0


def recorded_flags(argv: list[str], renamed: dict[str, str], pairs: dict[str, str], bare: dict[str, str],
                   zero_is_none: tuple[str, ...] = ()) -> list[str]:
    """Flags in the syntax commands had before they were parsed from their config dataclass, in the config CLI's
    spelling: `--tasks` ranges (`0-4`, `0,3,5`, `all`) as a list; `renamed` flags under their field's name; `pairs`
    (flag → separator) given as one word (`--shard 1/4`) as two; `bare` flags given without a value (flag → the value
    they meant); `zero_is_none` flags given 0 as None (`--episode-timeout 0`: no timeout). The rest passes through."""
    from rvq.envs.suites import expand_task_spec

    out, i = [], 0
    while i < len(argv):
        name, eq, inline = argv[i].partition("=")
        name = renamed.get(name, name)
        following = argv[i + 1] if i + 1 < len(argv) else None
        value = inline if eq else following
        has_value = value is not None and (bool(eq) or not value.startswith("--"))
        used = 1 + (has_value and not eq)
        if name == "--tasks" and has_value and ("-" in value or "," in value or value == "all"):
            tasks = expand_task_spec(value)
            out += ["--tasks", *map(str, tasks)] if tasks else []
        elif name in pairs and has_value and pairs[name] in value:
            out += [name, *value.split(pairs[name], 1)]
        elif name in zero_is_none and has_value and value in ("0", "0.0"):
            out += [name, "None"]
        elif name in bare and not has_value:
            out += [name, bare[name]]
        else:
            out.append(name + eq + inline)
            used = 1
        i += used
    return out


def eval_flags(argv: list[str]) -> list[str]:
    """`rvq eval`'s recorded syntax (`recorded_flags`): task ranges, `--shard i/n`, `--episode-timeout 0`, a bare
    `--temporal-ensemble` (ACT's decay) or `--flip-gripper`, and `--relaxed`, `--grasp-hold`, `--out`."""
    return recorded_flags(argv, {"--out": "--out-dir", "--grasp-hold": "--expert-grasp-hold", "--relaxed": "--no-exact"},
                          pairs={"--shard": "/"}, bare={"--temporal-ensemble": str(DEFAULT_ENSEMBLE_DECAY),
                                                        "--flip-gripper": "True"}, zero_is_none=("--episode-timeout",))


def collect_flags(argv: list[str]) -> list[str]:
    """`rvq collect-demos`' recorded syntax (`recorded_flags`): task ranges, `--takeover-steps LO-HI`, `--out`."""
    return recorded_flags(argv, {"--out": "--out-dir"}, pairs={"--takeover-steps": "-"}, bare={})


def cmd_eval(argv: list[str]) -> int:
    from rvq.eval import EvalConfig, run_eval, write_report

    cfg = parse_config(EvalConfig, eval_flags(argv), "rvq eval")
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


def cmd_eval_report(args: argparse.Namespace) -> int:
    from rvq.eval import write_report

    write_report(args.results, args.out)
    print((Path(args.out) / "eval_report.md").read_text())
    return 0


def cmd_setup_libero(args: argparse.Namespace) -> int:
    from rvq.envs.setup import setup_libero

    path = setup_libero(args.config_dir, install=args.install)
    print(f"wrote {path}; export LIBERO_CONFIG_PATH={path.parent} MUJOCO_GL=egl (osmesa as a fallback)")
    return 0


def cmd_collect_demos(argv: list[str]) -> int:
    from rvq.expert.collect import CollectConfig, collect_demos

    for summary in collect_demos(parse_config(CollectConfig, collect_flags(argv), "rvq collect-demos")):
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


# commands whose options are their config dataclass (rvq.config_cli: tyro, `--config FILE`); argv after the name
CONFIG_COMMANDS = {
    "train-tokenizer": cmd_train_tokenizer,
    "compare-tokenizers": cmd_compare_tokenizers,
    "train-draft": lambda argv: _train_head("draft", argv),
    "train-main": lambda argv: _train_head("main", argv),
    "pipeline": cmd_pipeline,
    "eval": cmd_eval,
    "collect-demos": cmd_collect_demos,
}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in --help, unless it is unset (None), an off switch, or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    defaults_shown = {"formatter_class": DefaultsHelpFormatter}
    # listed here for `rvq --help`; `main` hands their arguments to their config dataclass (CONFIG_COMMANDS)
    sub.add_parser("train-tokenizer", help="train an RFSQ action tokenizer (default: robust, embedded demos)")
    sub.add_parser("compare-tokenizers", help="naive / LayerNorm / robust RFSQ, ResidualFSQ, bins, DCT")

    tiny = sub.add_parser("make-tiny-backbone", **defaults_shown, help="save a randomly initialized tiny LLaVA backbone (tests, demos)")
    tiny.add_argument("--out-dir", default="runs/tiny-backbone", help=HELP["out_dir"])
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=cmd_make_tiny_backbone)

    build = sub.add_parser("build-phase2-data", **defaults_shown, help="demos → cached features (VLA or state) + token labels (HDF5)")
    build.add_argument("--demos", nargs="+", required=True, help="LIBERO-layout HDF5 files or folders (one task per file)")
    build.add_argument("--tokenizer", required=True, help="Phase 1 tokenizer checkpoint (labels the actions)")
    build.add_argument("--backbone", required=True,
                       help="hub id or local folder of the VLA (or a tiny backbone), or state:SUITE for state features "
                            "(options: +gripper the gripper history, +goal the objects of interest, e.g. "
                            "state:SUITE+gripper+goal; demos from `rvq collect-demos`; give the same source to "
                            "`rvq make-bundle`)")
    build.add_argument("--out", required=True, help="output .h5 file")
    build.add_argument("--image-key", default="agentview_rgb", help="observation key of the camera image")
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--device", default="auto", help=HELP["device"])
    build.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    build.add_argument("--trust-remote-code", action="store_true", help=HELP["trust_remote_code"])
    build.add_argument("--image-transform", default="resize", choices=("resize", "oft"), help=HELP["image_transform"])
    build.set_defaults(func=cmd_build_phase2_data)

    make = sub.add_parser("make-bundle", **defaults_shown, help="tokenizer + heads + feature source → a policy bundle (what eval runs)")
    make.add_argument("--tokenizer", required=True, help="Phase 1 tokenizer checkpoint")
    make.add_argument("--main", required=True, help="main head checkpoint (rvq train-main)")
    make.add_argument("--draft", default=None, help="draft head checkpoint (rvq train-draft); without it: main-only")
    make.add_argument("--backbone", required=True,
                      help="the heads' feature source, as given to build-phase2-data: a VLA hub id (recorded, not "
                           "copied) or local folder (copied in), state:SUITE[+gripper][+goal], or a features.json")
    make.add_argument("--out-dir", "--out", dest="out", required=True, help="the bundle folder (new or empty)")
    make.add_argument("--suite", default=None, help="protocol: the suite the heads were trained for")
    make.add_argument("--execute-steps", type=int, default=None, metavar="K",
                      help="protocol: actions of each chunk executed before acting again (default: the whole chunk)")
    make.add_argument("--temporal-ensemble", type=float, default=None, metavar="M",
                      help="protocol: act every step with the chunks ensembled, decay M")
    make.add_argument("--image-transform", default="resize", choices=("resize", "oft"), help=HELP["image_transform"])
    make.add_argument("--flip-gripper", action="store_true",
                      help="the heads emit the OpenVLA-family gripper ([0, 1], 1 = open): the bundle's gripper step "
                           "flips it")
    make.add_argument("--trust-remote-code", action="store_true", help=HELP["trust_remote_code"])
    make.set_defaults(func=cmd_make_bundle)

    setup = sub.add_parser("setup-libero", **defaults_shown, help="write LIBERO's config.yaml and link its assets (non-interactive)")
    setup.add_argument("--config-dir", default=None, help="default: $LIBERO_CONFIG_PATH or ~/.cache/rvq/libero")
    setup.add_argument("--install", action="store_true", help="first pip-install hf-libero without its training deps")
    setup.set_defaults(func=cmd_setup_libero)

    sub.add_parser("eval", help="evaluate a policy on a LIBERO suite (OpenVLA/OFT protocol; options: the fields of "
                                 "rvq.eval.EvalConfig, --config FILE)")

    sub.add_parser("collect-demos", help="scripted expert → LIBERO-layout HDF5 demos, one file per task (options: the "
                                          "fields of rvq.expert.collect.CollectConfig, --config FILE)")

    sub.add_parser("pipeline", help="collect → tokenizer → Phase 2 → draft/main → eval → report, one run folder "
                                     "(options: the fields of rvq.pipeline.PipelineConfig, --config FILE.toml, --plan)")

    rep = sub.add_parser("eval-report", **defaults_shown, help="merge eval result files (shards) into success rates with 95%% CIs")
    rep.add_argument("results", nargs="+", help="results*.jsonl files or eval output folders")
    rep.add_argument("--out-dir", "--out", dest="out", default="runs/eval-report", help="output folder")
    rep.set_defaults(func=cmd_eval_report)

    for kind in ("draft", "main"):
        sub.add_parser(f"train-{kind}", help=f"train the {kind} token predictor on Phase 2 data")
    return parser


def main(argv: list[str] | None = None) -> int:
    from rvq.eval.results import RunInUse
    from rvq.rfsq.residual import NotDecodableError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in CONFIG_COMMANDS:
        command, run = argv[0], lambda: CONFIG_COMMANDS[argv[0]](argv[1:])
    else:
        args = build_parser().parse_args(argv)
        command, run = args.command, lambda: args.func(args)
    try:
        return run()
    except (ValueError, OSError, KeyError, ModuleNotFoundError, NotDecodableError, RunInUse) as exc:
        print(f"rvq {command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
