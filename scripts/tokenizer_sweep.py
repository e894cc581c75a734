"""Tokenizer recipe sweep on the embedded default's split (docs/history/RESULTS.md, issue 14).

    python scripts/tokenizer_sweep.py '{"mlp_dim": 256, "steps": 10000, "quantize_dropout": 0.35}' ...

Each argument is a JSON dict of `TrainTokenizerConfig` fields (normalization defaults to bounds_q99 here, so
rows compare with the earlier tables), plus an optional "train_seed": the seed of the initial weights and batches
(default: `seed`, which also draws the held-out episodes), and an optional "curve": true, which adds the held-out
k = 1, 2, 3 and L errors at every evaluation (k = 1 and L only before issue 14's tenth pass) and the best model's
held-out code perplexity per layer (pooled over the latent's dims). Prints one JSON line per run: held-out MSE
decoding the first k layers, the same model's training-split MSE, per-dimension errors, raw errors, the best step and
training seconds.

A probe, not an rvq option (issue 14's eighth pass): "encoder_after_warmup": "freeze" stops the encoder's training once
the layer-0 warm-up ends (it then learned from k = 1 alone), "layer0_only" lets only the chunks drawn at k = 1 train it
after the warm-up.
"""

from __future__ import annotations

import json
import sys
import types

import torch

from rvq.config_cli import config_from
from rvq.rfsq import ActionRFSQAE, build_tokenizer_model
from rvq.training.common import seed_everything
from rvq.training.tokenizer import TrainTokenizerConfig, fit_tokenizer, prepare_tokenizer_data
from rvq.training.tokenizer_eval import evaluate_tokenizer


def encoder_after_warmup(model: ActionRFSQAE, mode: str) -> None:
    """Patch `model`'s training forward: after `layer0_warmup` forwards the latent of chunks other than k = 1 ones
    ("layer0_only") or of every chunk ("freeze") is detached, so those chunks no longer train the encoder."""
    if mode not in ("freeze", "layer0_only"):
        raise ValueError(f"encoder_after_warmup must be 'freeze' or 'layer0_only', got {mode!r}")

    def forward(self: ActionRFSQAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode_latent(x)
        keep = self._prefix_lengths(z.shape[0], z.device) if self.training else None
        if self.training and int(self.quantizer.calibration_steps) >= self.config.layer0_warmup:
            if keep is None or mode == "freeze":  # no gradient at all, so the optimizer leaves the encoder as it is
                z = z.detach()
            else:
                z = torch.where((keep == 1).reshape(-1, 1, 1), z, z.detach())
        z_hat, codes = self.quantizer(z, keep_layers=keep)
        return self.decode_latent(z_hat, keep), codes

    model.forward = types.MethodType(forward, model)


def sweep(runs: list[dict]) -> None:
    for run in runs:
        probes = ("train_seed", "curve", "encoder_after_warmup")
        options = {key: value for key, value in run.items() if key not in probes}
        cfg = config_from(TrainTokenizerConfig, device="cpu", progress=False,
                          **{"normalization": "bounds_q99", **options})
        data = prepare_tokenizer_data(cfg.demos, cfg.model.chunk_size, cfg.val_fraction, cfg.seed, cfg.normalization)
        seed_everything(run.get("train_seed", cfg.seed))
        model = build_tokenizer_model(cfg.model_config())
        if "encoder_after_warmup" in run:
            encoder_after_warmup(model, run["encoder_after_warmup"])
        result = fit_tokenizer(model, data, cfg)
        train = evaluate_tokenizer(result.model, data.train, data.normalizer)
        best = result.best
        short = lambda values: [float(f"{v:.3e}") for v in values]  # noqa: E731
        line = {"run": run, "k": short(best["mse_by_layers"]), "val_mse": best["mse"],
                "train_mse": train["mse"], "val_per_dim": short(best["mse_per_dim"]),
                "train_per_dim": short(train["mse_per_dim"]), "val_raw": best["mse_raw"],
                "raw_clip_floor": best["mse_raw_clip_floor"], "step": best["step"], "seconds": round(result.seconds, 1)}
        if run.get("curve"):
            line["curve"] = [(h["step"], *short([h["val"]["mse_by_layers"][k] for k in (0, 1, 2, -1)]))
                             for h in result.history]
            line["code_perplexity"] = [round(p, 2) for p in best["code_perplexity"]]
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    sweep([json.loads(arg) for arg in sys.argv[1:]])
