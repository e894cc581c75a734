"""RSD head-decode latency: main-only greedy vs speculative decoding with drafts forced to 0%, 50% and
100% acceptance, batch 1 and 8, measured interleaved in one run and printed as ratios; and the
end-to-end policy step (feature extraction + decoding + tokenizer decode) with its time shares.

CPU: small heads (512-d features). GPU (when present): 4096-d features, and for the policy step the
7B-shape random LLaVA backbone in bf16 (weights do not change latency).

50% acceptance: half of the chunks are fully accepted (3 of 3 layers), half fully rejected. A batch
is as slow as its slowest chunk, so at batch 8 a mixed batch pays for the rejected chunks.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from rvq.device import available_devices
from rvq.models import DraftConfig, DraftModel, MainConfig, MainModel, TokenSpace
from rvq.rsd import ScriptedDraft, forced_proposal, greedy_decode, speculative_decode

ACCEPTANCE = (0.0, 0.5, 1.0)
BATCHES = (1, 8)


@dataclass(frozen=True)
class Sizes:
    feature_dim: int
    main_width: int
    main_depth: int
    draft_width: int


SIZES = {"cpu": Sizes(512, 256, 4, 256), "cuda": Sizes(4096, 1024, 4, 1024)}
DEVICES = available_devices()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_heads(device: torch.device) -> tuple[DraftModel, MainModel]:
    sizes = SIZES[device.type]
    torch.manual_seed(0)
    tokens = TokenSpace()
    main = MainModel(MainConfig(sizes.feature_dim, tokens, sizes.main_width, sizes.main_depth, 8, 0.0))
    draft = DraftModel(DraftConfig(sizes.feature_dim, tokens, 3, sizes.draft_width, 2, 0.0))
    return draft.to(device).eval(), main.to(device).eval()


def _accept_mask(batch: int, rate: float, call: int) -> torch.Tensor:
    """Which chunks the forced draft gets right; 50% alternates chunks (and calls at batch 1)."""
    if rate in (0.0, 1.0):
        return torch.full((batch,), rate == 1.0)
    return (torch.arange(batch) + call) % 2 == 0


def head_latency(device: torch.device, repeats: int = 40) -> dict[int, dict[str, float]]:
    """Median ms per call, per batch size: `greedy` and `spec@<rate>`; plus acceptance checks."""
    draft, main = build_heads(device)
    out: dict[int, dict[str, float]] = {}
    for batch in BATCHES:
        features = torch.randn(batch, main.feature_dim, device=device)
        greedy_codes = greedy_decode(main, features)
        scripted = ScriptedDraft(draft)
        proposals = {
            (rate, call): forced_proposal(greedy_codes, _accept_mask(batch, rate, call), 7)
            for rate in ACCEPTANCE for call in (0, 1)
        }
        times: dict[str, list[float]] = {"greedy": [], **{f"spec@{r:.0%}": [] for r in ACCEPTANCE}}
        accepted: dict[str, list[float]] = {f"spec@{r:.0%}": [] for r in ACCEPTANCE}
        for i in range(repeats + 3):  # 3 warm-up rounds
            _sync(device)
            start = time.perf_counter()
            greedy_decode(main, features)
            _sync(device)
            if i >= 3:
                times["greedy"].append((time.perf_counter() - start) * 1e3)
            for rate in ACCEPTANCE:
                scripted.set_codes(proposals[(rate, i % 2)])
                _sync(device)
                start = time.perf_counter()
                codes, stats = speculative_decode(scripted, main, features)
                _sync(device)
                if i >= 3:
                    times[f"spec@{rate:.0%}"].append((time.perf_counter() - start) * 1e3)
                    accepted[f"spec@{rate:.0%}"].append(float(stats.accepted.float().mean() / 3))
                assert torch.equal(codes, greedy_codes)  # exact mode, whatever the draft
        out[batch] = {name: statistics.median(ts) for name, ts in times.items()}
        out[batch].update({f"{name}_acceptance": float(np.mean(a)) for name, a in accepted.items()})
    return out


def head_report(results: dict[int, dict[str, float]], device: torch.device) -> str:
    sizes = SIZES[device.type]
    lines = [f"head decode latency on {device} (features {sizes.feature_dim}-d, main {sizes.main_width}x"
             f"{sizes.main_depth} blocks, draft {sizes.draft_width}; median ms per call):",
             "  batch | main-only | " + " | ".join(f"RSD {r:.0%} acc (speed-up)" for r in ACCEPTANCE)]
    for batch, r in results.items():
        cells = [f"{r[f'spec@{a:.0%}']:.3f} ({r['greedy'] / r[f'spec@{a:.0%}']:.2f}x, measured acc "
                 f"{r[f'spec@{a:.0%}_acceptance']:.2f})" for a in ACCEPTANCE]
        lines.append(f"  {batch:5d} | {r['greedy']:.3f} | " + " | ".join(cells))
    return "\n".join(lines)


@pytest.mark.parametrize("device", DEVICES)
def test_head_decode_latency_side_by_side(benchmark, device: str) -> None:
    dev = torch.device(device)
    results = head_latency(dev)
    print("\n" + head_report(results, dev))
    for batch, r in results.items():
        assert r["spec@100%_acceptance"] == 1.0 and r["spec@0%_acceptance"] == 0.0
        benchmark.extra_info.update({f"b{batch}_{k}": v for k, v in r.items()})
    draft, main = build_heads(dev)
    features = torch.randn(1, main.feature_dim, device=dev)
    scripted = ScriptedDraft(draft, greedy_decode(main, features))
    benchmark(speculative_decode, scripted, main, features)


def policy_step(device: torch.device, size: str, repeats: int = 10) -> dict[str, float]:
    """Median ms of one policy step's parts: features (LIBERO's observation steps included), RSD decode (100% and
    0% acceptance), main-only decode, tokenizer decode (untrained tokenizer: its cost does not depend on the
    weights)."""
    from rvq.backbones import build_backbone
    from rvq.processors import observation_features
    from rvq.data import ActionNormalizer
    from rvq.rfsq import ActionRFSQAE
    from rvq.tokenizer import ActionTokenizer

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    extractor = observation_features(build_backbone(size, device=device, dtype=dtype))
    sizes = SIZES[device.type]
    torch.manual_seed(0)
    tokens = TokenSpace()
    main = MainModel(MainConfig(extractor.feature_dim, tokens, sizes.main_width, sizes.main_depth, 8, 0.0)).to(device).eval()
    draft = DraftModel(DraftConfig(extractor.feature_dim, tokens, 3, sizes.draft_width, 2, 0.0)).to(device).eval()
    tokenizer = ActionTokenizer(ActionRFSQAE().to(device), ActionNormalizer.fit(np.random.default_rng(0).uniform(-1, 1, (64, 7))))
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    observations = [{"agentview": image, "instruction": "put the black bowl on the plate"}]
    features = extractor.features(observations)
    greedy_codes = greedy_decode(main, features)
    scripted = ScriptedDraft(draft)
    parts: dict[str, list[float]] = {"features": [], "rsd_100": [], "rsd_0": [], "main_only": [], "tokenizer": []}
    for i in range(repeats + 2):
        def timed(name, fn, *args):
            _sync(device)
            start = time.perf_counter()
            result = fn(*args)
            _sync(device)
            if i >= 2:
                parts[name].append((time.perf_counter() - start) * 1e3)
            return result

        features = timed("features", extractor.features, observations)
        scripted.set_codes(greedy_codes)
        codes, _ = timed("rsd_100", speculative_decode, scripted, main, features)
        scripted.set_codes(forced_proposal(greedy_codes, torch.tensor([False]), 7))
        timed("rsd_0", speculative_decode, scripted, main, features)
        timed("main_only", greedy_decode, main, features)
        timed("tokenizer", tokenizer.decode, codes)
    return {name: statistics.median(ts) for name, ts in parts.items()}


def policy_report(parts: dict[str, float], device: torch.device, size: str) -> str:
    total_main = parts["features"] + parts["main_only"] + parts["tokenizer"]
    total_rsd = parts["features"] + parts["rsd_100"] + parts["tokenizer"]
    return "\n".join([
        f"policy step on {device} with the {size} backbone (median ms, batch 1):",
        f"  features {parts['features']:.2f} | main-only decode {parts['main_only']:.2f} | RSD decode at 100% "
        f"{parts['rsd_100']:.2f}, at 0% {parts['rsd_0']:.2f} | tokenizer decode {parts['tokenizer']:.2f}",
        f"  step with main-only {total_main:.2f} ms, with RSD at 100% {total_rsd:.2f} ms "
        f"({total_main / total_rsd:.2f}x); head decode share of the main-only step "
        f"{parts['main_only'] / total_main:.0%}",
    ])


@pytest.mark.parametrize("device", DEVICES)
def test_policy_step_shares(benchmark, device: str) -> None:
    dev = torch.device(device)
    size = "7b" if dev.type == "cuda" else "tiny"
    parts = policy_step(dev, size)
    print("\n" + policy_report(parts, dev, size))
    benchmark.extra_info.update(parts)
    assert all(v > 0 for v in parts.values())
    benchmark.pedantic(lambda: None, rounds=1)


if __name__ == "__main__":
    for dev in DEVICES:
        d = torch.device(dev)
        print(head_report(head_latency(d), d))
        size = "7b" if d.type == "cuda" else "tiny"
        print(policy_report(policy_step(d, size), d, size))
