"""Held-out evaluation of an action tokenizer: errors (normalized and raw, per dim, per k layers)
and quantizer diagnostics. Padded steps of tail chunks are excluded everywhere.
"""

from __future__ import annotations

from typing import Any

import torch

from rvq.data.chunks import ChunkSet
from rvq.data.normalize import ActionNormalizer
from rvq.rfsq import ActionRFSQAE
from rvq.rfsq.layernorm import LayerNormRFSQ
from rvq.rfsq.metrics import residual_diagnostics


def masked_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared error per action dim over valid steps: `[A]`. `valid: [N, C]` bool."""
    weight = valid.to(pred.dtype)[..., None]
    return ((pred - target).pow(2) * weight).sum(dim=(0, 1)) / weight.sum().clamp_min(1.0)


@torch.no_grad()
def evaluate_tokenizer(
    model: ActionRFSQAE, chunks: ChunkSet, normalizer: ActionNormalizer, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Metrics on `chunks` (raw actions). The reconstruction is the one a robot would execute:
    decoded from codes (eval mode), except for the LayerNorm variant, whose forward error and
    codes-only error are both reported."""
    was_training = model.training
    model.eval()
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
    else:
        recon = forward_recon.cpu()
        assert isinstance(model.quantizer, LayerNormRFSQ)
        codes_only = model.decode_latent(model.quantizer.decode_without_statistics(codes)).cpu()
        out["mse_codes_only"] = float(masked_mse(codes_only, x.cpu(), valid).mean())
    per_dim = masked_mse(recon, x.cpu(), valid)
    raw_per_dim = masked_mse(normalizer.unnormalize(recon), raw, valid)
    clip_floor = masked_mse(normalizer.unnormalize(x.cpu()), raw, valid)  # BOUNDS_Q99 clipping alone
    out.update(
        mse_raw_clip_floor=float(clip_floor.mean()),
        mse=float(per_dim.mean()),
        mse_per_dim=per_dim.tolist(),
        mse_raw=float(raw_per_dim.mean()),
        mse_raw_per_dim=raw_per_dim.tolist(),
    )
    latent = model.encode_latent(x)
    out["mse_unquantized"] = float(masked_mse(model.decode_latent(latent).cpu(), x.cpu(), valid).mean())  # the AE floor
    z = latent[valid.to(x.device)]  # [valid steps, H]
    out.update(residual_diagnostics(model.quantizer, z))
    model.train(was_training)
    return out
