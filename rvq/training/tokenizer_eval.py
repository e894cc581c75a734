"""Held-out evaluation of an action tokenizer: errors (normalized and raw, per dim, per k layers)
and quantizer diagnostics. Padded steps of tail chunks are excluded everywhere.
"""

from __future__ import annotations

from typing import Any

import torch

from rvq.data.chunks import ChunkSet
from rvq.data.normalize import ActionNormalizer
from rvq.module_mode import eval_mode
from rvq.rfsq import CascadeRFSQAE, TokenizerModel
from rvq.rfsq.layernorm import LayerNormRFSQ
from rvq.rfsq.metrics import residual_diagnostics


def masked_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared error per action dim over valid steps: `[A]`. `valid: [N, C]` bool."""
    weight = valid.to(pred.dtype)[..., None]
    return ((pred - target).pow(2) * weight).sum(dim=(0, 1)) / weight.sum().clamp_min(1.0)


def rare_action_reach(recon: torch.Tensor, raw: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
    """How much of a rare large action survives: over the elements of normalized dims (`mask [A]`) that lie
    beyond their dimension's 1st/99th percentile of these valid raw actions, `recon / raw` (1: the commanded
    magnitude is executed; < 1: cut short). Raw units, `recon`, `raw: [N, C, A]`, `valid: [N, C]`."""
    steps_raw, steps_recon = raw[valid], recon[valid]  # [T, A]
    q01, q99 = torch.quantile(steps_raw, 0.01, dim=0), torch.quantile(steps_raw, 0.99, dim=0)
    beyond = mask & ((steps_raw > q99.clamp_min(0)) | (steps_raw < q01.clamp_max(0))) & (steps_raw != 0)
    ratio = steps_recon[beyond] / steps_raw[beyond]
    if ratio.numel() == 0:
        return {"rare_fraction": 0.0, "rare_reach_median": None, "rare_reach_p05": None, "rare_reach_min": None}
    return {"rare_fraction": float(beyond.float().mean()), "rare_reach_median": float(ratio.median()),
            "rare_reach_p05": float(torch.quantile(ratio, 0.05)), "rare_reach_min": float(ratio.min())}


@torch.no_grad()
def evaluate_tokenizer(
    model: TokenizerModel, chunks: ChunkSet, normalizer: ActionNormalizer, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Metrics on `chunks` (raw actions). The reconstruction is the one a robot would execute:
    decoded from codes (eval mode), except for the LayerNorm variant, whose forward error and
    codes-only error are both reported."""
    with eval_mode(model):
        raw = torch.as_tensor(chunks.actions)
        valid = torch.as_tensor(chunks.valid)
        x = normalizer.normalize(raw).to(device)
        forward_recon, codes = model(x)
        out: dict[str, Any] = {"bits_per_chunk": model.config.bits_per_chunk, "num_chunks": len(chunks),
                               "num_valid_steps": int(valid.sum())}
        if model.decodable:
            recon = model.decode_from_indices(codes).cpu()
            out["decode_matches_forward"] = bool(torch.allclose(recon, forward_recon.cpu(), atol=1e-5))
            out["mse_by_layers"] = [
                float(masked_mse(model.decode_from_indices(codes[..., :k]).cpu(), x.cpu(), valid).mean())
                for k in range(1, model.num_layers + 1)
            ]
            # the error of a prefix length drawn uniformly: what a policy executing any prefix can expect
            out["mse_prefix_mean"] = sum(out["mse_by_layers"]) / model.num_layers
        else:
            recon = forward_recon.cpu()
            assert isinstance(model.quantizer, LayerNormRFSQ)
            codes_only = model.decode_latent(model.quantizer.decode_without_statistics(codes)).cpu()
            out["mse_codes_only"] = float(masked_mse(codes_only, x.cpu(), valid).mean())
        per_dim = masked_mse(recon, x.cpu(), valid)
        recon_raw = normalizer.unnormalize(recon)
        raw_per_dim = masked_mse(recon_raw, raw, valid)
        clip_floor = masked_mse(normalizer.unnormalize(x.cpu()), raw, valid)  # BOUNDS_Q99 clipping alone
        out.update(rare_action_reach(recon_raw, raw, valid, torch.as_tensor(normalizer.mask)))
        out.update(
            mse_raw_clip_floor=float(clip_floor.mean()),
            mse=float(per_dim.mean()),
            mse_per_dim=per_dim.tolist(),
            mse_raw=float(raw_per_dim.mean()),
            mse_raw_per_dim=raw_per_dim.tolist(),
        )
        if isinstance(model, CascadeRFSQAE):  # two latents: layer 0's stage's and the residual stage's
            floor, diagnostics = model.diagnostics(x, valid.to(x.device))
        else:
            latent = model.encode_latent(x)
            floor = model.decode_latent(latent)
            diagnostics = residual_diagnostics(model.quantizer, latent[valid.to(x.device)])  # z: [valid steps, H]
        out["mse_unquantized"] = float(masked_mse(floor.cpu(), x.cpu(), valid).mean())  # the autoencoder's floor
        out.update(diagnostics)
    return out
