"""Mock checkpoints for the Phase 3 pipeline, built from the real classes and saved through the real policy bundle.

    python mocks/generate_mock_checkpoints.py --out-dir DIR [--seed S]

writes a policy bundle (`rvq.policies.bundle`) into DIR: the manifest `config.json`, `tokenizer/` (a robust RFSQ
tokenizer trained briefly by `rvq.training.train_tokenizer` on synthetic LIBERO-layout demo files, with BOUNDS_Q99
statistics), `backbone/` (the tiny LLaVA backbone), `draft/` and `main/` (small heads, random weights) whose
identities name that tokenizer and that backbone. Loadable with `PolicyBundle.from_pretrained(DIR)` and
`TokenPolicy.from_dir(DIR)`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mocks.libero_files import write_libero_file  # noqa: E402
from rvq.config_cli import config_from  # noqa: E402
from rvq.backbones import build_backbone  # noqa: E402
from rvq.processors import observation_features  # noqa: E402
from rvq.models import DraftConfig, DraftModel, HeadCheckpoint, MainConfig, MainModel  # noqa: E402
from rvq.policies.bundle import PolicyBundle  # noqa: E402
from rvq.tokenizer import ActionTokenizer  # noqa: E402
from rvq.training.tokenizer import TrainTokenizerConfig, train_tokenizer  # noqa: E402


def generate(output_dir: str | Path, seed: int = 0, tokenizer_steps: int = 100) -> dict[str, str]:
    out = Path(output_dir)
    with tempfile.TemporaryDirectory() as tmp:  # the real Phase 1 training path, on synthetic demo files
        for i, instruction in enumerate(["reach the target", "move to the left"]):
            write_libero_file(Path(tmp) / "demos" / f"task{i}_demo.hdf5", instruction, num_demos=6, steps=80,
                              seed=2 * seed + i, images=False)
        train_tokenizer(config_from(TrainTokenizerConfig, demos=[str(Path(tmp) / "demos")], out_dir=str(Path(tmp) / "run"),
                                             steps=tokenizer_steps, eval_every=tokenizer_steps, seed=seed,
                                             device="cpu", progress=False))
        tokenizer = ActionTokenizer.from_checkpoint(Path(tmp) / "run" / "tokenizer")
    extractor = observation_features(build_backbone("tiny", seed=seed))  # with LIBERO's observation steps
    ids = {"tokenizer_identity": tokenizer.identity, "feature_identity": extractor.identity}
    torch.manual_seed(seed + 1)
    draft = DraftModel(DraftConfig(extractor.feature_dim, tokenizer.tokens, width=64)).eval()
    main = MainModel(MainConfig(extractor.feature_dim, tokenizer.tokens, width=64, depth=2, heads=4)).eval()
    PolicyBundle(tokenizer, HeadCheckpoint(main, **ids, metrics={"mock": True}),
                 HeadCheckpoint(draft, **ids, metrics={"mock": True}), extractor).save_pretrained(out)
    return {**ids, "output_dir": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", "--output-dir", dest="output_dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(generate(args.output_dir, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
