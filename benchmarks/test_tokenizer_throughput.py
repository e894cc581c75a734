"""Encode+decode throughput (chunks/s): robust RFSQ (arithmetic rounding) vs the seed's argmin
formulation vs vector-quantize-pytorch's ResidualFSQ, same encoder/decoder, levels and layers; and robust's default
model, the cascade (two autoencoders in series: `robust_cascade`).

Measured side by side, interleaved in one run, and printed as ratios; pytest-benchmark also
times the robust tokenizer alone.
"""

from __future__ import annotations

import time

import pytest
import torch

from rvq.baselines.residual_fsq import ResidualFSQAE
from rvq.device import available_devices
from rvq.rfsq import ActionRFSQAE, TokenizerConfig, build_tokenizer_model

BATCH = 256  # chunks of 8 x 7-d actions


def argmin_codes(u: torch.Tensor, num_levels: int) -> torch.Tensor:
    """The seed's formulation: distance to every grid level, then argmin."""
    grid = torch.linspace(-1.0, 1.0, num_levels, device=u.device)
    return (u.clamp(-1, 1)[..., None] - grid).abs().argmin(dim=-1)


def _models(device: torch.device) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    robust = ActionRFSQAE(quantizer="robust").eval()
    seed = ActionRFSQAE(quantizer="robust").eval()
    seed.load_state_dict(robust.state_dict())
    seed.quantizer.to_codes = argmin_codes
    rfsq = ResidualFSQAE(TokenizerConfig(coarse_decoder=False)).eval()  # the library drops layers itself
    cascade = build_tokenizer_model(TokenizerConfig()).eval()  # robust's default recipe
    models = {"robust": robust, "seed_argmin": seed, "residual_fsq": rfsq, "robust_cascade": cascade}
    return {name: m.to(device) for name, m in models.items()}


def _roundtrip(model: ActionRFSQAE, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out = model.decode_from_indices(model.encode(x))
    if x.is_cuda:
        torch.cuda.synchronize()
    return out


def side_by_side(device: torch.device, repeats: int = 30) -> dict[str, float]:
    """Median chunks/s of each model, measured interleaved."""
    models = _models(device)
    x = torch.rand(BATCH, 8, 7, device=device) * 2 - 1
    robust, seed = models["robust"].encode(x), models["seed_argmin"].encode(x)
    # the same codes, but where a residual lies exactly between two grid points (round half to even vs argmin's first
    # index; the later layers of that latent then code a different residual)
    first = (robust != seed).int().argmax(dim=-1)  # each latent's first differing layer (0 where none differs)
    ties = (robust != seed).any(dim=-1)

    def picked(codes: torch.Tensor) -> torch.Tensor:  # each differing latent's code at its first differing layer
        return codes.gather(-1, first[..., None])[..., 0][ties]

    assert float(ties.float().mean()) < 1e-3 and bool(((picked(robust) - picked(seed)).abs() == 1).all())
    times: dict[str, list[float]] = {name: [] for name in models}
    for name, model in models.items():
        _roundtrip(model, x)  # warm-up
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            _roundtrip(model, x)
            times[name].append(time.perf_counter() - start)
    return {name: BATCH / sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def report(rates: dict[str, float], device: torch.device) -> str:
    base = rates["robust"]
    lines = [f"encode+decode throughput on {device} (batch {BATCH} chunks, median):"]
    for name, rate in rates.items():
        lines.append(f"  {name:13s} {rate:12.0f} chunks/s   robust / {name} = {base / rate:.2f}x")
    return "\n".join(lines)


@pytest.mark.parametrize("device", available_devices())
def test_throughput_side_by_side(benchmark, device: str) -> None:
    dev = torch.device(device)
    rates = side_by_side(dev)
    print("\n" + report(rates, dev))
    model = _models(dev)["robust"]
    x = torch.rand(BATCH, 8, 7, device=dev) * 2 - 1
    benchmark.extra_info.update({f"{k}_chunks_per_s": v for k, v in rates.items()})
    benchmark(_roundtrip, model, x)
    assert rates["robust"] > 0 and all(r > 0 for r in rates.values())


if __name__ == "__main__":
    for dev in available_devices():
        print(report(side_by_side(torch.device(dev)), torch.device(dev)))
