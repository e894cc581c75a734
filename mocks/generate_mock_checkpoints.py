"""Mock checkpoints for the Phase 3 pipeline, built from the real classes and saved in the real formats.

    python mocks/generate_mock_checkpoints.py --output-dir DIR [--seed S]

writes `tokenizer.pt` (a robust RFSQ tokenizer trained briefly by `rvq.training.train_tokenizer` on
synthetic LIBERO-layout demo files, with BOUNDS_Q99 statistics), `backbone/` (the tiny LLaVA backbone), `draft.pt` and `main.pt` (small heads,
random weights) whose identities name that tokenizer and that backbone. Loadable with
`rvq.rfsq.load_tokenizer`, `rvq.models.load_draft` / `load_main`, and `TokenPolicy.from_dir(DIR)`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mocks.libero_files import write_libero_file  # noqa: E402
from rvq.backbones import build_backbone, save_backbone  # noqa: E402
from rvq.models import DraftConfig, DraftModel, MainConfig, MainModel, TokenSpace, save_head  # noqa: E402
from rvq.rfsq import load_tokenizer, tokenizer_identity  # noqa: E402
from rvq.training.tokenizer import TrainTokenizerConfig, train_tokenizer  # noqa: E402


def generate(output_dir: str | Path, seed: int = 0, tokenizer_steps: int = 100) -> dict[str, str]:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:  # the real Phase 1 training path, on synthetic demo files
        for i, instruction in enumerate(["reach the target", "move to the left"]):
            write_libero_file(Path(tmp) / "demos" / f"task{i}_demo.hdf5", instruction, num_demos=6, steps=80,
                              seed=2 * seed + i, images=False)
        train_tokenizer(TrainTokenizerConfig(demos=[str(Path(tmp) / "demos")], out_dir=str(Path(tmp) / "run"),
                                             steps=tokenizer_steps, eval_every=tokenizer_steps, seed=seed,
                                             device="cpu", progress=False))
        shutil.copy(Path(tmp) / "run" / "tokenizer.pt", out / "tokenizer.pt")
    config = load_tokenizer(out / "tokenizer.pt").config
    extractor = build_backbone("tiny", seed=seed)
    save_backbone(extractor, out / "backbone")
    tokens = TokenSpace.from_tokenizer(config)
    ids = {"tokenizer_identity": tokenizer_identity(out / "tokenizer.pt"), "feature_identity": extractor.identity}
    torch.manual_seed(seed + 1)
    save_head(out / "draft.pt", DraftModel(DraftConfig(extractor.feature_dim, tokens, width=64)).eval(), **ids,
              metrics={"mock": True})
    save_head(out / "main.pt", MainModel(MainConfig(extractor.feature_dim, tokens, width=64, depth=2, heads=4)).eval(),
              **ids, metrics={"mock": True})
    return {**ids, "output_dir": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(generate(args.output_dir, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
