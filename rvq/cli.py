"""`rvq` command line: `rvq train-tokenizer`, `rvq compare-tokenizers`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from dataclasses import fields

from rvq.training.tokenizer import TrainTokenizerConfig

HELP = {
    "quantizer": "robust (default), naive or layernorm",
    "demos": "HDF5 demo files or folders of them (LIBERO: one file per task); default: robosuite's bundled demos",
    "out_dir": "output folder",
    "resume": "resume from a run's last.pt",
    "device": "auto, cpu, cuda, cuda:N",
}


def _add_train_options(parser: argparse.ArgumentParser, out_dir: str) -> None:
    for f in fields(TrainTokenizerConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "demos":
            parser.add_argument(flag, nargs="+", default=[], help=HELP["demos"])
        elif f.name == "progress":
            parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
        elif f.name == "out_dir":
            parser.add_argument(flag, default=out_dir, help=HELP["out_dir"])
        else:
            kind = {int: int, float: float}.get(type(f.default), str)
            parser.add_argument(flag, type=kind, default=f.default, help=HELP.get(f.name, f"default {f.default}"))


def _config(args: argparse.Namespace) -> TrainTokenizerConfig:
    return TrainTokenizerConfig(**{f.name: getattr(args, f.name) for f in fields(TrainTokenizerConfig)})


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from rvq.training.tokenizer import train_tokenizer

    report = train_tokenizer(_config(args))
    print((Path(args.out_dir) / "report.md").read_text())
    print(json.dumps({"checkpoint": report["checkpoint"], "val_mse": report["best"]["mse"]}))
    return 0


def cmd_compare_tokenizers(args: argparse.Namespace) -> int:
    from rvq.compare import compare_tokenizers

    compare_tokenizers(_config(args), args.out_dir)
    print((Path(args.out_dir) / "comparison.md").read_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train-tokenizer", help="train an RFSQ action tokenizer (default: robust, embedded demos)")
    _add_train_options(train, "runs/tokenizer")
    train.set_defaults(func=cmd_train_tokenizer)
    compare = sub.add_parser("compare-tokenizers", help="naive / LayerNorm / robust RFSQ, ResidualFSQ, bins, DCT")
    _add_train_options(compare, "runs/compare")
    compare.set_defaults(func=cmd_compare_tokenizers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"rvq {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
