"""Tokenizer probes on the embedded default's split (docs/history/RESULTS.md, issue 14, third pass): ideas tried by patching
a default `ActionRFSQAE` after construction, before any became an option. None is an rvq option.

    PYTHONPATH=. python scripts/tokenizer_probe.py '{"steps": 4000, "patch": ["compand"]}'

JSON: `TrainTokenizerConfig` fields plus "patch", a list of:
  notanh      the encoder's tanh removed (the robust quantizer's layer 0 still calibrates on the latent's range)
  softclamp   4 * tanh(x / 4) in place of tanh (input_bound 4)
  compand     normalized actions beyond +-1 (the 1st/99th percentiles) compressed to sign(u) (1 + log|u|) before the
              encoder and expanded after the decoder
  q0<q>       layer 0 calibrated on the latent's q and 1 - q quantiles instead of its min/max (e.g. q00.01)
  noise<s>    Gaussian noise of std s on the encoder's input in training mode (the target stays clean; e.g. noise0.05)
  k1first<N>  the first N training forwards reconstruct every chunk from layer 0 alone, then the model's own prefix
              training (a curriculum: the coarse layout first)
  coarse      a second decoder (a copy of the first at initialization) that decodes layer-0-only codes (k = 1),
              trained jointly: truncated chunks with k = 1 go through it
(`k1first<N>` and `coarse` became the model options `layer0_warmup=N` and `coarse_decoder`; together, with quantize
dropout 0.2, the options reproduce the patches' numbers to the digit, docs/history/RESULTS.md)
and "own_k1_decoder": true, which after training freezes the encoder and fits a copy of the decoder on layer-0 codes
alone (4000 steps, best held-out error kept): how much of the k = 1 error is the shared decoder's; and "train_seed":
the seed of the initial weights and batches (default: `seed`, which also draws the held-out episodes).
Prints one JSON line: held-out and training MSE decoding the first k = 1, 2, 3, 8 layers, each split into steps whose
normalized action stays within +-1 ("in") and steps beyond ("rare"), the best step and the validation curve.
"""

from __future__ import annotations

import copy
import json
import sys
import types

import torch
from torch import nn

from rvq.config_cli import config_from
from rvq.rfsq import ActionRFSQAE
from rvq.training.common import seed_everything
from rvq.training.tokenizer import TrainTokenizerConfig, fit_tokenizer, prepare_tokenizer_data
from rvq.training.tokenizer_eval import masked_mse


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
    for p in patch:
        if p.startswith("noise"):
            sigma, encode = float(p[5:]), model.encode_latent
            model.encode_latent = lambda x, encode=encode, sigma=sigma: encode(
                x + sigma * torch.randn_like(x) if model.training else x)
        if p.startswith("k1first"):
            limit, calls, prefix_lengths = int(p[7:]), [0], model._prefix_lengths

            def first_layer_only(batch, device, prefix_lengths=prefix_lengths, limit=limit, calls=calls):
                calls[0] += 1
                return torch.ones(batch, dtype=torch.long, device=device) if calls[0] <= limit \
                    else prefix_lengths(batch, device)

            model._prefix_lengths = first_layer_only
    if "coarse" in patch:
        model.coarse_decoder = copy.deepcopy(model.decoder)
        model.coarse_skip = copy.deepcopy(model.decoder_skip)
        decode = model.decode_latent

        def decode_latent(z_hat, num_layers=None, decode=decode):
            coarse = model.coarse_decoder(z_hat) + model.coarse_skip(z_hat)
            if num_layers is None:
                return decode(z_hat, num_layers)
            if isinstance(num_layers, int):
                return coarse if num_layers == 1 else decode(z_hat, num_layers)
            return torch.where((num_layers == 1)[:, None, None], coarse, decode(z_hat, num_layers))

        model.decode_latent = decode_latent
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


def own_k1_decoder(model: ActionRFSQAE, data, steps: int = 4000) -> tuple[float, int]:
    """A copy of the decoder trained on the frozen encoder's layer-0 codes alone: (best held-out MSE, its step)."""
    def layer0(chunks):
        x = data.normalizer.normalize(torch.as_tensor(chunks.actions))
        with torch.no_grad():
            return x, torch.as_tensor(chunks.valid), model.quantizer.decode(model.encode(x)[..., :1])

    (xt, vt, zt), (xv, vv, zv) = layer0(data.train), layer0(data.val)
    decoder = copy.deepcopy(model).train()
    params = [p for name, p in decoder.named_parameters() if name.startswith(("decoder", "prefix_embedding"))]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    best = (float("inf"), 0)
    for step in range(1, steps + 1):
        idx = torch.randint(0, xt.shape[0], (256,))
        loss = masked_mse(decoder.decode_latent(zt[idx], 1), xt[idx], vt[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0:
            with torch.no_grad():
                best = min(best, (masked_mse(decoder.decode_latent(zv, 1), xv, vv).mean().item(), step))
    return best


def probe(run: dict) -> dict:
    patch = run.pop("patch", [])
    with_own_decoder = run.pop("own_k1_decoder", False)
    train_seed = run.pop("train_seed", None)  # the weights' and batches' seed; the split stays `seed`'s
    cfg = config_from(TrainTokenizerConfig, device="cpu", progress=False, **run)
    data = prepare_tokenizer_data(cfg.demos, cfg.model.chunk_size, cfg.val_fraction, cfg.seed, cfg.normalization)
    seed_everything(cfg.seed if train_seed is None else train_seed)
    model = ActionRFSQAE.from_config(cfg.model_config())
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
    if with_own_decoder:
        error, step = own_k1_decoder(model, data)
        out["val_k1_own_decoder"] = f"{error:.2e} (step {step})"
    return out


if __name__ == "__main__":
    torch.set_num_threads(2)
    print(json.dumps(probe(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})), flush=True)
