"""Cascade probe (docs/history/RESULTS.md, issue 14, seventh pass): layer 0 a one-layer FSQ autoencoder of its own (a naive
tokenizer with `num_layers=1`, trained for k = 1 alone), layers 1..L-1 a second tokenizer on the step's action-space
residual `x - decode(layer 0)` (normalized units, re-normalized by its own q99 statistics). Trained one after the
other. Not an rvq option: a measurement of whether decoupling layer 0 from the finer layers helps.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/tokenizer_cascade_probe.py '{"residual_model": {}, "unclipped": true}'

JSON keys: "demos" (default: the embedded default), "train_seed" (initial weights and batches of both stages; default:
the split's seed 0), "steps0" / "steps1" (each stage's steps, 10000), "residual_model"
(`TokenizerConfig` fields of the residual tokenizer, `num_layers` 7 unless given), "unclipped" (the residual's
normalizer keeps its q99 scale but clips only 10 ranges beyond the training residuals' min / max: held-out residuals
exceed the training ones where layer 0 generalizes worse), "layer0_cache" (a file to save / reuse layer 0's weights).
Prints one JSON line: held-out MSE (normalized actions) decoding k = 1..L layers, the per-dimension error at full depth,
the share of held-out residual values beyond the residual normalizer's guard, and each stage's training seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from rvq.config_cli import config_from
from rvq.data.chunks import ChunkSet
from rvq.data.normalize import ActionNormalizer
from rvq.rfsq import ActionRFSQAE
from rvq.training.common import seed_everything
from rvq.training.tokenizer import TokenizerData, TrainTokenizerConfig, fit_tokenizer, prepare_tokenizer_data
from rvq.training.tokenizer_eval import masked_mse


def train(cfg: TrainTokenizerConfig, data: TokenizerData, seed: int, cache: str | None = None
          ) -> tuple[ActionRFSQAE, float]:
    """The trained model (eval mode) and its training seconds (0 when read from `cache`)."""
    seed_everything(seed)
    model = ActionRFSQAE.from_config(cfg.model_config())
    if cache and Path(cache).exists():
        model.load_state_dict(torch.load(cache, weights_only=True))
        return model.eval(), 0.0
    result = fit_tokenizer(model, data, cfg)
    if cache:
        torch.save(result.model.state_dict(), cache)
    return result.model.eval(), result.seconds


def probe(args: dict) -> dict:
    common = {"device": "cpu", "progress": False, "normalization": "q99_guarded", "demos": args.get("demos", [])}
    cfg0 = config_from(TrainTokenizerConfig, steps=args.get("steps0", 10000),
                       model={"quantizer": "naive", "num_layers": 1, "coarse_decoder": False}, **common)
    data = prepare_tokenizer_data(cfg0.demos, cfg0.model.chunk_size, cfg0.val_fraction, cfg0.seed, cfg0.normalization)
    seed = args.get("train_seed", cfg0.seed)
    layer0, seconds0 = train(cfg0, data, seed, args.get("layer0_cache"))

    @torch.no_grad()
    def coarse(chunks: ChunkSet) -> tuple[torch.Tensor, torch.Tensor]:  # normalized x and layer 0's decode, [N, C, A]
        x = data.normalizer.normalize(torch.as_tensor(chunks.actions))
        return x, layer0.decode_from_indices(layer0.encode(x))

    (x_train, coarse_train), (x_val, coarse_val) = coarse(data.train), coarse(data.val)
    res_train, res_val = (x_train - coarse_train).numpy(), (x_val - coarse_val).numpy()
    norm = ActionNormalizer.fit(res_train[data.train.valid], gripper_dims=(), method="q99_guarded")
    if args.get("unclipped"):
        span = norm.clip_high - norm.clip_low
        norm = ActionNormalizer(norm.low, norm.high, norm.mask, norm.clip_low - 10 * span, norm.clip_high + 10 * span,
                                kind="q99_guarded")
    residual_data = TokenizerData(data.train_episodes, data.val_episodes, norm,
                                  ChunkSet(res_train, data.train.valid, data.train.episode),
                                  ChunkSet(res_val, data.val.valid, data.val.episode))
    cfg1 = config_from(TrainTokenizerConfig, steps=args.get("steps1", 10000),
                       model={"num_layers": 7, **args.get("residual_model", {})}, **common)
    residual, seconds1 = train(cfg1, residual_data, seed)

    valid = torch.as_tensor(data.val.valid)
    codes = residual.encode(norm.normalize(torch.as_tensor(res_val)))
    with torch.no_grad():
        recon = [coarse_val] + [coarse_val + norm.unnormalize(residual.decode_from_indices(codes[..., :k]))
                                for k in range(1, residual.num_layers + 1)]
    beyond = (res_val < norm.clip_low) | (res_val > norm.clip_high)
    return {"args": args, "k": [float(f"{float(masked_mse(r, x_val, valid).mean()):.3e}") for r in recon],
            "full_depth_per_dim": [float(f"{v:.2e}") for v in masked_mse(recon[-1], x_val, valid).tolist()],
            "val_residual_beyond_guard": float(np.mean(beyond[data.val.valid])),
            "seconds": [round(seconds0, 1), round(seconds1, 1)]}


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps(probe(json.loads(arg))), flush=True)
