"""Mock checkpoints for the Phase 3 pipeline, built from the real classes and saved in the real formats.

    python mocks/generate_mock_checkpoints.py --output-dir DIR [--seed S]

writes `tokenizer.pt` (a robust RFSQ tokenizer trained briefly on smooth synthetic actions, with
BOUNDS_Q99 statistics), `backbone/` (the tiny LLaVA backbone), `draft.pt` and `main.pt` (small heads,
random weights) whose identities name that tokenizer and that backbone. Loadable with
`rvq.rfsq.load_tokenizer`, `rvq.models.load_draft` / `load_main`, and `TokenPolicy.from_dir(DIR)`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mocks.libero_files import smooth_trajectory  # noqa: E402
from rvq.backbones import build_backbone, save_backbone  # noqa: E402
from rvq.data import ActionNormalizer  # noqa: E402
from rvq.models import DraftConfig, DraftModel, MainConfig, MainModel, TokenSpace, save_head  # noqa: E402
from rvq.rfsq import ActionRFSQAE, TokenizerConfig, save_tokenizer, tokenizer_identity  # noqa: E402
from rvq.data.chunks import chunk_episode  # noqa: E402


def generate(output_dir: str | Path, seed: int = 0, tokenizer_steps: int = 100) -> dict[str, str]:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    actions = [smooth_trajectory(80, rng) for _ in range(12)]
    normalizer = ActionNormalizer.fit(np.concatenate(actions))
    chunks = torch.as_tensor(np.concatenate([chunk_episode(a, 8)[0] for a in actions]), dtype=torch.float32)
    x = normalizer.normalize(chunks)
    config = TokenizerConfig()
    tokenizer = ActionRFSQAE.from_config(config)
    optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=2e-3)
    tokenizer.train()
    for _ in range(tokenizer_steps):
        batch = x[torch.randint(0, len(x), (128,))]
        recon, _ = tokenizer(batch)
        loss = ((recon - batch) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tokenizer.eval()
    save_tokenizer(out / "tokenizer.pt", tokenizer, action_stats=normalizer.to_dict(), metrics={"mock": True})
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
