"""Tokenizer probes on the embedded default's split (docs/RESULTS.md, issue 14, third pass): ideas tried by patching
a default `ActionRFSQAE` after construction, before any became an option. None is an rvq option.

    PYTHONPATH=. python scripts/tokenizer_probe.py '{"steps": 4000, "patch": ["compand"]}'

JSON: `TrainTokenizerConfig` fields plus "patch", a list of:
  notanh      the encoder's tanh removed (the robust quantizer's layer 0 still calibrates on the latent's range)
  softclamp   4 * tanh(x / 4) in place of tanh (input_bound 4)
  compand     normalized actions beyond +-1 (the 1st/99th percentiles) compressed to sign(u) (1 + log|u|) before the
              encoder and expanded after the decoder
  q0<q>       layer 0 calibrated on the latent's q and 1 - q quantiles instead of its min/max (e.g. q00.01)
Prints one JSON line: held-out and training MSE decoding the first k = 1, 2, 3, 8 layers, each split into steps whose
normalized action stays within +-1 ("in") and steps beyond ("rare"), the best step and the validation curve.
"""

from __future__ import annotations

import json
import sys
import types

import torch
from torch import nn

from rvq.config_cli import config_from
from rvq.rfsq import ActionRFSQAE
from rvq.training.common import seed_everything
from rvq.training.tokenizer import TrainTokenizerConfig, fit_tokenizer, prepare_tokenizer_data


class SoftClamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 4 * torch.tanh(x / 4)


def compress(u: torch.Tensor) -> torch.Tensor:
    a = u.abs()
    return torch.where(a <= 1, u, u.sign() * (1 + torch.log(a.clamp_min(1))))


def expand(y: torch.Tensor) -> torch.Tensor:
    a = y.abs()
    return torch.where(a <= 1, y, y.sign() * torch.exp((a - 1).clamp_max(20)))


def apply_patches(model: ActionRFSQAE, patch: list[str]) -> None:
    if "notanh" in patch:
        model.encoder[-1] = nn.Identity()
        model.quantizer.input_bound = 0.0
    if "softclamp" in patch:
        model.encoder[-1] = SoftClamp()
        model.quantizer.input_bound = 4.0
    if "compand" in patch:
        decode = model.decode_latent

        def encode_latent(self, x):
            self._check_actions(x)
            xc = compress(x)
            return self.encoder[-1](self.encoder[:-1](xc) + self.encoder_skip(xc))

        model.encode_latent = types.MethodType(encode_latent, model)
        model.decode_latent = lambda z, num_layers=None: expand(decode(z, num_layers))
    for q in [float(p[2:]) for p in patch if p.startswith("q0")]:
        quantizer, calibrate = model.quantizer, model.quantizer.calibrate_layer

        @torch.no_grad()
        def calibrate_layer(self, layer, residual, q=q, calibrate=calibrate):
            if layer > 0:
                return calibrate(layer, residual)
            batch_lo, batch_hi = torch.quantile(residual, q, dim=0), torch.quantile(residual, 1 - q, dim=0)
            if int(self.calibration_steps) == 0:
                lo, hi = batch_lo, batch_hi
            else:
                half = self._coverage(self.scale[0]) / self.range_margin
                lo = torch.lerp(self.center - half, batch_lo, self.momentum)
                hi = torch.lerp(self.center + half, batch_hi, self.momentum)
            self.center.copy_((lo + hi) / 2)
            self.scale[0].copy_((hi - lo) / 2 * self.range_margin / self._coverage(torch.ones_like(lo)))

        quantizer.calibrate_layer = types.MethodType(calibrate_layer, quantizer)


def probe(run: dict) -> dict:
    patch = run.pop("patch", [])
    cfg = config_from(TrainTokenizerConfig, device="cpu", progress=False, **run)
    data = prepare_tokenizer_data(cfg.demos, cfg.model.chunk_size, cfg.val_fraction, cfg.seed, cfg.normalization)
    seed_everything(cfg.seed)
    model = ActionRFSQAE.from_config(cfg.model)
    apply_patches(model, patch)
    result = fit_tokenizer(model, data, cfg)
    model = result.model.eval()
    out = {"run": run, "patch": patch, "best_step": result.best["step"], "sec": round(result.seconds)}
    for name, chunks in (("train", data.train), ("val", data.val)):
        x = data.normalizer.normalize(torch.as_tensor(chunks.actions))
        valid = torch.as_tensor(chunks.valid)
        rare = (x.abs().amax(-1) > 1.0)[valid]
        with torch.no_grad():
            codes = model.encode(x)
            for k in (1, 2, 3, 8):
                err = ((model.decode_from_indices(codes[..., :k]) - x) ** 2).mean(-1)[valid]
                out[f"{name}_k{k}"] = f"{err.mean():.2e} (in {err[~rare].mean():.2e} rare {err[rare].mean():.2e})"
    out["curve"] = [(h["step"], f"{h['val']['mse']:.2e}", f"{h['val']['mse_by_layers'][0]:.2e}")
                    for h in result.history]
    return out


if __name__ == "__main__":
    torch.set_num_threads(2)
    print(json.dumps(probe(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})), flush=True)
