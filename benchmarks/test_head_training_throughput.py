"""Phase 2 training throughput (samples/s) of the draft and main models at the full-size backbone's
feature dimension (4096, OpenVLA-7B) with default head sizes, on random features and codes."""

from __future__ import annotations

import time

import pytest
import torch

from rvq.config_cli import config_from
from rvq.device import available_devices
from rvq.models import TokenSpace
from rvq.training.optim import configure_optimizer
from rvq.training.heads import TrainHeadConfig, build_head, head_logits, head_loss

FEATURE_DIM = 4096
DEVICES = available_devices()


def samples_per_second(kind: str, device: torch.device, batch: int = 128, steps: int = 10) -> float:
    torch.manual_seed(0)
    model = build_head(config_from(TrainHeadConfig, kind=kind).model_config(FEATURE_DIM, TokenSpace())).to(device).train()
    optimizer, _ = configure_optimizer(model, 3e-4, 0.01, 100, 0)
    features = torch.randn(batch, FEATURE_DIM, device=device)
    codes = torch.randint(0, 7, (batch, 8, 16, 8), device=device)

    def step() -> None:
        loss = head_loss(head_logits(model, features, codes), codes, model.config.tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


@pytest.mark.parametrize("device", DEVICES)
def test_head_training_throughput(benchmark, device: str) -> None:
    dev = torch.device(device)
    rates = {kind: samples_per_second(kind, dev) for kind in ("draft", "main")}
    print(f"\nhead training on {dev}, {FEATURE_DIM}-d features, batch 128: "
          + ", ".join(f"{k} {v:.0f} samples/s" for k, v in rates.items()))
    benchmark.extra_info.update(rates)
    assert all(v > 0 for v in rates.values())
    benchmark.pedantic(lambda: None, rounds=1)


if __name__ == "__main__":
    for dev in DEVICES:
        d = torch.device(dev)
        print(dev, {kind: round(samples_per_second(kind, d)) for kind in ("draft", "main")})
