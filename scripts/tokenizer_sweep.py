"""Tokenizer recipe sweep on the embedded default's split (docs/RESULTS.md, issue 14).

    python scripts/tokenizer_sweep.py '{"mlp_dim": 256, "steps": 10000, "quantize_dropout": 0.35}' ...

Each argument is a JSON dict of `TrainTokenizerConfig` fields (normalization defaults to bounds_q99 here, so
rows compare with the earlier tables), plus an optional "train_seed": the seed of the initial weights and batches
(default: `seed`, which also draws the held-out episodes), and an optional "curve": true, which adds the held-out
k = 1 and k = L errors at every evaluation and the best model's held-out code perplexity per layer (pooled over the
latent's dims). Prints one JSON line per run: held-out MSE decoding the first k layers, the same model's
training-split MSE, per-dimension errors, raw errors, the best step and training seconds.
"""

from __future__ import annotations

import json
import sys

from rvq.config_cli import config_from
from rvq.rfsq import ActionRFSQAE
from rvq.training.common import seed_everything
from rvq.training.tokenizer import TrainTokenizerConfig, fit_tokenizer, prepare_tokenizer_data
from rvq.training.tokenizer_eval import evaluate_tokenizer


def sweep(runs: list[dict]) -> None:
    for run in runs:
        options = {key: value for key, value in run.items() if key not in ("train_seed", "curve")}
        cfg = config_from(TrainTokenizerConfig, device="cpu", progress=False,
                          **{"normalization": "bounds_q99", **options})
        data = prepare_tokenizer_data(cfg.demos, cfg.model.chunk_size, cfg.val_fraction, cfg.seed, cfg.normalization)
        seed_everything(run.get("train_seed", cfg.seed))
        result = fit_tokenizer(ActionRFSQAE.from_config(cfg.model_config()), data, cfg)
        train = evaluate_tokenizer(result.model, data.train, data.normalizer)
        best = result.best
        short = lambda values: [float(f"{v:.3e}") for v in values]  # noqa: E731
        line = {"run": run, "k": short(best["mse_by_layers"]), "val_mse": best["mse"],
                "train_mse": train["mse"], "val_per_dim": short(best["mse_per_dim"]),
                "train_per_dim": short(train["mse_per_dim"]), "val_raw": best["mse_raw"],
                "raw_clip_floor": best["mse_raw_clip_floor"], "step": best["step"], "seconds": round(result.seconds, 1)}
        if run.get("curve"):
            line["curve"] = [(h["step"], *short([h["val"]["mse_by_layers"][0], h["val"]["mse_by_layers"][-1]]))
                             for h in result.history]
            line["code_perplexity"] = [round(p, 2) for p in best["code_perplexity"]]
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    sweep([json.loads(arg) for arg in sys.argv[1:]])
