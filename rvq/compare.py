"""`rvq compare-tokenizers`: every tokenizer on the same split of real demos, side by side.

RFSQ family (same encoder/decoder, same training): naive, the seed's per-token LayerNorm,
robust (its default recipe: a cascade, `TokenizerConfig.cascade`), robust as one autoencoder (the default before
issue 14's eleventh pass), robust with the seed's architecture, and vector-quantize-pytorch's ResidualFSQ.
Fixed-rate baselines: OpenVLA's uniform bins and a FAST-style DCT (no BPE). Errors are held-out MSE
over valid (non-padded) steps in normalized action units; bits are per chunk of `chunk_size` 7-d actions.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from rvq.baselines.binning import UniformBinning
from rvq.baselines.dct import DCTTokenizer
from rvq.baselines.residual_fsq import ResidualFSQAE
from rvq.config_cli import save_run_config, updated
from rvq.plots import plot_prefix_error, plot_residual_std
from rvq.rfsq import TokenizerModel, build_tokenizer_model
from rvq.training.common import seed_everything
from rvq.training.tokenizer import TrainTokenizerConfig, TokenizerData, fit_tokenizer, prepare_tokenizer_data
from rvq.training.tokenizer_eval import masked_mse

RFSQ_METHODS = ("naive", "layernorm", "robust", "robust_single", "residual_fsq", "robust_seed_arch")
LABELS = {
    "naive": "naive RFSQ",
    "layernorm": "seed LayerNorm RFSQ",
    "robust": "robust RFSQ (rvq)",
    "robust_single": "robust RFSQ, one autoencoder",
    "residual_fsq": "ResidualFSQ (vector-quantize-pytorch)",
    "robust_seed_arch": "robust RFSQ, seed architecture",
    "openvla_bins": "OpenVLA uniform bins",
    "dct": "DCT (FAST-style), entropy-coded bits",
}
CURVE_METHODS = ("naive", "robust", "robust_single", "residual_fsq", "robust_seed_arch")
BIN_COUNTS = (16, 64, 256, 1024)
DCT_SCALES = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def _fixed_rate_rows(data: TokenizerData) -> list[dict[str, Any]]:
    raw = torch.as_tensor(data.val.actions)
    valid = torch.as_tensor(data.val.valid)
    x = data.normalizer.normalize(raw)
    chunk, dim = x.shape[1], x.shape[2]
    rows = []
    for bins in BIN_COUNTS:
        tok = UniformBinning(bins)
        recon = tok.decode(tok.encode(x))
        rows.append(_row(f"uniform bins ({bins})", "openvla_bins", tok.bits_per_chunk(chunk, dim), recon, x, raw,
                         valid, data, note="OpenVLA" if bins == 256 else ""))
    for scale in DCT_SCALES:
        tok = DCTTokenizer(chunk, scale)
        tokens = tok.encode(x)
        rows.append(_row(f"DCT (scale {scale:g})", "dct", tok.entropy_bits_per_chunk(tokens), tok.decode(tokens), x,
                         raw, valid, data, note="entropy-coded bits"))
    return rows


def _row(name, family, bits, recon, x, raw, valid, data, note="", **extra) -> dict[str, Any]:
    return {
        "method": name, "family": family, "bits_per_chunk": float(bits),
        "mse": float(masked_mse(recon, x, valid).mean()),
        "mse_raw": float(masked_mse(data.normalizer.unnormalize(recon), raw, valid).mean()),
        "note": note, **extra,
    }


def _method_config(method: str, cfg: TrainTokenizerConfig) -> TrainTokenizerConfig:
    """The training config of one compared method: same data, schedule and sizes, each quantizer's recipe where `cfg`
    leaves it unset (robust: a cascade); `robust_single` is robust as one autoencoder (its recipe until issue 14's
    eleventh pass) and `robust_seed_arch` the seed's exact autoencoder (no linear paths, no prefix training) with the
    robust quantizer."""
    if method == "residual_fsq":  # the library drops layers itself: rvq's prefix options do not apply
        return updated(cfg, quantizer="naive", coarse_decoder=False, layer0_warmup=0, layer0_warmup_ratio=0.0)
    if method == "robust_seed_arch":
        return updated(cfg, quantizer="robust", cascade=False, linear_skip=False, quantize_dropout=0.0, mlp_dim=64, coarse_decoder=False, layer0_warmup=0, layer0_warmup_ratio=0.0)
    if method == "robust_single":
        return updated(cfg, quantizer="robust", cascade=False)
    return updated(cfg, quantizer=method)


def _build(method: str, cfg: TrainTokenizerConfig) -> TokenizerModel:
    config = _method_config(method, cfg).model_config()
    return ResidualFSQAE(config) if method == "residual_fsq" else build_tokenizer_model(config)


def compare_tokenizers(cfg: TrainTokenizerConfig, out_dir: str | Path) -> dict[str, Any]:
    """Train each RFSQ variant with `cfg` on one split, evaluate baselines; write table, JSON, plots."""
    if cfg.log_to != "none":
        raise ValueError("compare-tokenizers does not log to TensorBoard or wandb (its record is comparison.json); "
                         "drop --log-to, or train one tokenizer with `rvq train-tokenizer --log-to ...`")
    out_dir = Path(out_dir)
    save_run_config(replace(cfg, out_dir=str(out_dir)), out_dir)
    model = cfg.model
    data = prepare_tokenizer_data(cfg.demos, model.chunk_size, cfg.val_fraction, cfg.seed, cfg.normalization)
    per_layer_bits = model.chunk_size * model.hidden_dim * math.log2(model.num_levels)
    trained: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for method in RFSQ_METHODS:
        seed_everything(cfg.seed)  # same initial weights for every variant
        result = fit_tokenizer(_build(method, cfg), data, _method_config(method, cfg))
        best = result.best
        trained[method] = {k: best[k] for k in best if k not in ("mse_per_dim", "mse_raw_per_dim")}
        trained[method]["train_seconds"] = result.seconds
        note = {"naive": "dead layers", "layernorm": "forward pass only: NOT decodable from codes",
                "robust": "layer 0 a one-layer tokenizer; layers 1+ robust, linear, on its action residual",
                "robust_single": "calibrated per-layer normalization, prefix training, linear paths",
                "residual_fsq": "its own quantize_dropout" if model.quantize_dropout > 0 else "no quantize_dropout",
                "robust_seed_arch": "seed's MLPs, no prefix training"}[method]
        rows.append({"method": f"{LABELS[method]} ({model.num_layers} layers)", "family": method,
                     "bits_per_chunk": best["bits_per_chunk"], "mse": best["mse"], "mse_raw": best["mse_raw"],
                     "effective_layers": best["num_effective_layers"], "note": note})
        if method == "layernorm":
            rows.append({"method": "layernorm RFSQ decoded from codes", "family": "layernorm_codes",
                         "bits_per_chunk": best["bits_per_chunk"], "mse": best["mse_codes_only"],
                         "mse_raw": float("nan"), "note": "what the seed's decode_from_indices returned"})
    rows += _fixed_rate_rows(data)
    curves = {m: [(per_layer_bits * (k + 1), v) for k, v in enumerate(trained[m]["mse_by_layers"])]
              for m in CURVE_METHODS}
    ratio = [r / f for (_, r), (_, f) in zip(curves["robust"], curves["residual_fsq"])]
    report = {"config": asdict(cfg), "data": data.describe(), "rows": rows,
              "trained": trained, "curves": curves, "robust_over_residual_fsq_by_layers": ratio,
              "robust_vs_naive_reduction": 1 - trained["robust"]["mse"] / trained["naive"]["mse"]}
    (out_dir / "comparison.json").write_text(json.dumps(report, indent=2, default=float))
    (out_dir / "comparison.md").write_text(render_comparison(report))
    plot_comparison(report, out_dir)
    return report


def render_comparison(report: dict[str, Any]) -> str:
    lines = ["| method | bits / chunk | held-out MSE (normalized) | held-out MSE (raw) | effective layers | note |",
             "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        eff = r.get("effective_layers", "")
        raw = "–" if math.isnan(r["mse_raw"]) else f"{r['mse_raw']:.3e}"  # not decodable: no raw actions
        lines.append(f"| {r['method']} | {r['bits_per_chunk']:.0f} | {r['mse']:.3e} | {raw} | {eff} | "
                     f"{r['note']} |")
    c = report["curves"]
    lines += ["", "Held-out MSE decoding the first k layers (every prefix is a token policy's possible output):", "",
              "| k | bits | " + " | ".join(LABELS[m] for m in c) + " | robust / ResidualFSQ |",
              "|---|---|" + "---|" * (len(c) + 1)]
    for k, ratio in enumerate(report["robust_over_residual_fsq_by_layers"]):
        cells = " | ".join(f"{c[m][k][1]:.3e}" for m in c)
        lines.append(f"| {k + 1} | {c['robust'][k][0]:.0f} | {cells} | {ratio:.2g} |")  # 2 digits, however small
    times = report["trained"]["naive"]["mse"] / report["trained"]["robust"]["mse"]
    lines += ["", f"Robust vs naive held-out MSE: {times:.3g}x lower (naive / robust)."]
    return "\n".join(lines) + "\n"


def plot_comparison(report: dict[str, Any], out_dir: Path) -> None:
    """`residual_std.png` (per-layer residual std) and `error_vs_bits.png` (error of every prefix and of the
    fixed-rate baselines, against bits)."""
    plot_residual_std({LABELS[m]: report["trained"][m]["residual_std"] for m in ("naive", "robust", "residual_fsq")},
                      out_dir / "residual_std.png")
    curves = {f"{LABELS[m]}: first k = 1..{len(c)} layers": c for m, c in report["curves"].items()}
    baselines = {LABELS[f]: [(r["bits_per_chunk"], r["mse"]) for r in report["rows"] if r["family"] == f]
                 for f in ("openvla_bins", "dct")}
    plot_prefix_error({**curves, **baselines}, out_dir / "error_vs_bits.png", comparison_title(report),
                      "bits per chunk (DCT: entropy-coded, a lower bound on its token cost)", frozenset(baselines))


def comparison_title(report: dict[str, Any]) -> str:
    """The finding in one line: robust vs naive at full depth, and robust vs ResidualFSQ at k = 1 and k = L."""
    c = report["curves"]
    full = len(c["robust"])
    return (f"Robust RFSQ: {c['naive'][-1][1] / c['robust'][-1][1]:.0f}x lower error than naive at {full} layers;\n"
            f"vs ResidualFSQ {c['robust'][0][1] / c['residual_fsq'][0][1]:.2g}x at k=1, "
            f"{c['robust'][-1][1] / c['residual_fsq'][-1][1]:.2g}x at k={full}")
