"""Head-decode latency, side by side in one run and printed as ratios: the full-pass greedy decode this project ran
before its layer cache (`full_pass_greedy`: every pass recomputes all L layers), greedy with the cache (L one-layer
passes), early exit at fixed depths 1-3 with the certified bound computed after every layer (`ExitRule`), and
speculative decoding with drafts forced to 0%, 50% and 100% acceptance; batch 1 and 8, one thread on CPU. Each
decode includes the tokenizer's decode of its codes (what a policy step runs). And the end-to-end policy step
(features + decode + tokenizer) with its time shares.

CPU: the study's head sizes (features 200-d as libero_object's state layout, main 256 wide, 2 blocks, 4 heads). GPU
(when present): 4096-d features, and for the policy step the 7B-shape random LLaVA backbone in bf16 (weights do not
change latency).

50% acceptance: half of the chunks are fully accepted (3 of 3 layers), half fully rejected. A batch is as slow as its
slowest chunk, so at batch 8 a mixed batch pays for the rejected chunks.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from rvq.data import ActionNormalizer
from rvq.device import available_devices
from rvq.models import DraftConfig, DraftModel, MainConfig, MainModel, TokenSpace
from rvq.rfsq import TokenizerConfig, build_tokenizer_model
from rvq.rsd import (ExitRule, ScriptedDraft, decode_at_depths, early_exit_decode, forced_proposal, greedy_decode,
                     speculative_decode)
from rvq.tokenizer import ActionTokenizer

ACCEPTANCE = (0.0, 0.5, 1.0)
DEPTHS = (1, 2, 3)
BATCHES = (1, 8)


@dataclass(frozen=True)
class Sizes:
    feature_dim: int
    main_width: int
    main_depth: int
    main_heads: int
    draft_width: int


SIZES = {"cpu": Sizes(200, 256, 2, 4, 256), "cuda": Sizes(4096, 1024, 4, 8, 1024)}
DEVICES = available_devices()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_heads(device: torch.device, feature_dim: int | None = None) -> tuple[DraftModel, MainModel]:
    sizes = SIZES[device.type]
    dim = feature_dim or sizes.feature_dim
    torch.manual_seed(0)
    tokens = TokenSpace()
    main = MainModel(MainConfig(dim, tokens, sizes.main_width, sizes.main_depth, sizes.main_heads, 0.0))
    draft = DraftModel(DraftConfig(dim, tokens, 3, sizes.draft_width, 2, 0.0))
    return draft.to(device).eval(), main.to(device).eval()


def build_tokenizer(device: torch.device) -> ActionTokenizer:
    """The default tokenizer (robust cascade), calibrated on random actions (its cost does not depend on weights)."""
    torch.manual_seed(0)
    model = build_tokenizer_model(TokenizerConfig())
    model.train()
    with torch.no_grad():
        model(torch.rand(256, 8, 7) * 2 - 1)
    raw = np.random.default_rng(0).uniform(-1, 1, (64, 7))
    return ActionTokenizer(model.eval().to(device), ActionNormalizer.fit(raw))


@torch.inference_mode()
def full_pass_greedy(main: MainModel, features: torch.Tensor) -> torch.Tensor:
    """Greedy decoding as it ran before the layer cache: L passes, each over all L layers (`logits_from_context`)."""
    tokens = main.config.tokens
    context = main.encode_features(features)
    codes = torch.zeros(features.shape[0], tokens.positions, tokens.num_layers, dtype=torch.long,
                        device=features.device)
    for layer in range(tokens.num_layers):
        codes[..., layer] = main.logits_from_context(context, codes)[:, layer].argmax(-1)
    return tokens.positions_to_chunk(codes)


def _accept_mask(batch: int, rate: float, call: int) -> torch.Tensor:
    """Which chunks the forced draft gets right; 50% alternates chunks (and calls at batch 1)."""
    if rate in (0.0, 1.0):
        return torch.full((batch,), rate == 1.0)
    return (torch.arange(batch) + call) % 2 == 0


def head_latency(device: torch.device, repeats: int = 40) -> dict[int, dict[str, float]]:
    """Median ms per call (decode + tokenizer decode), per batch size; plus acceptance and depth checks."""
    draft, main = build_heads(device)
    tokenizer = build_tokenizer(device)
    rules = {depth: ExitRule(tokenizer, depth=depth) for depth in DEPTHS}
    out: dict[int, dict[str, float]] = {}
    for batch in BATCHES:
        features = torch.randn(batch, main.feature_dim, device=device)
        greedy_codes = greedy_decode(main, features)
        assert torch.equal(full_pass_greedy(main, features), greedy_codes)
        scripted = ScriptedDraft(draft)
        proposals = {(rate, call): forced_proposal(greedy_codes, _accept_mask(batch, rate, call), 7)
                     for rate in ACCEPTANCE for call in (0, 1)}
        names = ["before", "greedy", *(f"exit@{d}" for d in DEPTHS), *(f"spec@{r:.0%}" for r in ACCEPTANCE)]
        times: dict[str, list[float]] = {name: [] for name in names}
        accepted: dict[str, list[float]] = {f"spec@{r:.0%}": [] for r in ACCEPTANCE}

        def timed(name: str, fn, i: int):
            _sync(device)
            start = time.perf_counter()
            result = fn()
            _sync(device)
            if i >= 3:  # 3 warm-up rounds
                times[name].append((time.perf_counter() - start) * 1e3)
            return result

        for i in range(repeats + 3):
            timed("before", lambda: tokenizer.decode(full_pass_greedy(main, features)), i)
            timed("greedy", lambda: tokenizer.decode(greedy_decode(main, features)), i)
            for depth, rule in rules.items():
                def exit_decode(rule=rule):
                    codes, stats = early_exit_decode(main, features, rule)
                    return decode_at_depths(tokenizer, codes, stats), stats
                _, stats = timed(f"exit@{depth}", exit_decode, i)
                assert stats.main_passes == depth
            for rate in ACCEPTANCE:
                scripted.set_codes(proposals[(rate, i % 2)])

                def spec():
                    codes, stats = speculative_decode(scripted, main, features)
                    return tokenizer.decode(codes), codes, stats
                _, codes, stats = timed(f"spec@{rate:.0%}", spec, i)
                if i >= 3:
                    accepted[f"spec@{rate:.0%}"].append(float(stats.accepted.float().mean() / 3))
                assert torch.equal(codes, greedy_codes)  # exact mode, whatever the draft
        out[batch] = {name: statistics.median(ts) for name, ts in times.items()}
        out[batch].update({f"{name}_acceptance": float(np.mean(a)) for name, a in accepted.items()})
    return out


def head_report(results: dict[int, dict[str, float]], device: torch.device) -> str:
    sizes = SIZES[device.type]
    threads = torch.get_num_threads() if device.type == "cpu" else None
    lines = [f"head decode + tokenizer decode on {device}{f' ({threads} thread)' if threads else ''} (features "
             f"{sizes.feature_dim}-d, main {sizes.main_width} wide x {sizes.main_depth} blocks, draft "
             f"{sizes.draft_width}; median ms per call; speed-up against the full-pass greedy decode 'before'):"]
    for batch, r in results.items():
        before = r["before"]
        cells = [f"before {before:.3f}", f"greedy (cache) {r['greedy']:.3f} ({before / r['greedy']:.2f}x)"]
        cells += [f"exit at depth {d} {r[f'exit@{d}']:.3f} ({before / r[f'exit@{d}']:.2f}x)" for d in DEPTHS]
        cells += [f"RSD {a:.0%} acc {r[f'spec@{a:.0%}']:.3f} ({before / r[f'spec@{a:.0%}']:.2f}x)" for a in ACCEPTANCE]
        lines.append(f"  batch {batch}: " + " | ".join(cells))
    return "\n".join(lines)


@pytest.mark.parametrize("device", DEVICES)
def test_head_decode_latency_side_by_side(benchmark, device: str) -> None:
    dev = torch.device(device)
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        results = head_latency(dev)
    finally:
        torch.set_num_threads(threads)
    print("\n" + head_report(results, dev))
    for batch, r in results.items():
        assert r["spec@100%_acceptance"] == 1.0 and r["spec@0%_acceptance"] == 0.0
        benchmark.extra_info.update({f"b{batch}_{k}": v for k, v in r.items()})
    _, main = build_heads(dev)
    features = torch.randn(1, main.feature_dim, device=dev)
    benchmark(greedy_decode, main, features)


def policy_step(device: torch.device, size: str, repeats: int = 10) -> dict[str, float]:
    """Median ms of one policy step's parts: features (LIBERO's observation steps included), RSD decode (100% and
    0% acceptance), main-only decode, tokenizer decode (untrained tokenizer: its cost does not depend on the
    weights)."""
    from rvq.backbones import build_backbone
    from rvq.processors import observation_features

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    extractor = observation_features(build_backbone(size, device=device, dtype=dtype))
    draft, main = build_heads(device, extractor.feature_dim)
    tokenizer = build_tokenizer(device)
    rule = ExitRule(tokenizer, depth=2)
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    observations = [{"agentview": image, "instruction": "put the black bowl on the plate"}]
    features = extractor.features(observations)
    greedy_codes = greedy_decode(main, features)
    scripted = ScriptedDraft(draft)
    parts: dict[str, list[float]] = {"features": [], "rsd_100": [], "rsd_0": [], "main_only": [], "exit_2": [],
                                     "tokenizer": []}
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
        timed("exit_2", early_exit_decode, main, features, rule)
        timed("tokenizer", tokenizer.decode, codes)
    return {name: statistics.median(ts) for name, ts in parts.items()}


def policy_report(parts: dict[str, float], device: torch.device, size: str) -> str:
    total_main = parts["features"] + parts["main_only"] + parts["tokenizer"]
    total_rsd = parts["features"] + parts["rsd_100"] + parts["tokenizer"]
    total_exit = parts["features"] + parts["exit_2"] + parts["tokenizer"]
    return "\n".join([
        f"policy step on {device} with the {size} backbone (median ms, batch 1):",
        f"  features {parts['features']:.2f} | main-only decode {parts['main_only']:.2f} | early exit at depth 2 "
        f"{parts['exit_2']:.2f} | RSD decode at 100% {parts['rsd_100']:.2f}, at 0% {parts['rsd_0']:.2f} | "
        f"tokenizer decode {parts['tokenizer']:.2f}",
        f"  step with main-only {total_main:.2f} ms, with RSD at 100% {total_rsd:.2f} ms "
        f"({total_main / total_rsd:.2f}x), with early exit at depth 2 {total_exit:.2f} ms "
        f"({total_main / total_exit:.2f}x)"
        f"; heads + tokenizer share of the step: main-only "
        f"{(parts['main_only'] + parts['tokenizer']) / total_main:.0%}, early exit "
        f"{(parts['exit_2'] + parts['tokenizer']) / total_exit:.0%}",
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
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the head comparison runs on one thread, as in the pytest benchmark
        print(head_report(head_latency(d), d))
        torch.set_num_threads(threads)
        size = "7b" if d.type == "cuda" else "tiny"
        print(policy_report(policy_step(d, size), d, size))
