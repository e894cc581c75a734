"""Early exit against full greedy decoding on a pipeline run's held-out Phase 2 rows (docs/history/RESULTS.md, "Decoding"):
per rule, the mean depth (main passes per chunk at batch 1), the certified bound, the measured departure of the
executed action from full greedy's, and the milliseconds per chunk of each decoder, side by side in one run (CPU,
one thread, batch 1: features → codes → normalized actions).

    PYTHONPATH=. python scripts/early_exit_probe.py runs/pipeline --tolerances 0.01 0.03 0.1 --depths 1 2 3

Reads `RUN/policy/bundle`, `RUN/phase2` and the run's seed (`RUN/pipeline_config.json`), holding out the episodes the
heads were validated on (the split `rvq train-main` makes with that seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from rvq.data.feature_store import as_tensor
from rvq.data.phase2 import load_phase2_data
from rvq.policies.bundle import load_bundle
from rvq.processors import gripper_flip
from rvq.rsd import ExitRule, decode_at_depths, early_exit_decode, greedy_decode
from rvq.rsd.early_exit import exit_departure, probe_rules
from rvq.training.heads import TrainHeadConfig


def per_chunk_ms(decoders: dict[str, Callable[[torch.Tensor], torch.Tensor]], features: torch.Tensor,
                 rows: int) -> dict[str, float]:
    """Median ms of each `decode(features[i:i+1])` over the first `rows` rows, the decoders interleaved row by row
    (so a slow spell of the machine falls on all of them; after 5 warm-up rounds)."""
    times: dict[str, list[float]] = {name: [] for name in decoders}
    for i in range(rows + 5):
        for name, decode in decoders.items():
            start = time.perf_counter()
            decode(features[i:i + 1])
            if i >= 5:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--tolerances", type=float, nargs="*", default=[0.01, 0.03, 0.1])
    parser.add_argument("--depths", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--timed-rows", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seed = json.loads((args.run / "pipeline_config.json").read_text())["seed"]
    bundle = load_bundle(args.run / "policy" / "bundle", "main", device="cpu")
    data = sorted((args.run / "phase2").glob("*.h5")) + sorted((args.run / "phase2").glob("*.hdf5"))
    if len(data) != 1:
        raise SystemExit(f"{args.run / 'phase2'}: expected one Phase 2 file, found {[p.name for p in data]}")
    _, val = load_phase2_data(data[0]).split_by_episode(TrainHeadConfig.val_fraction, seed)
    features = as_tensor(val.features)
    flip = gripper_flip(bundle.actions)
    main_head, tokenizer = bundle.main, bundle.tokenizer
    rules = probe_rules(tokenizer, args.tolerances, args.depths, flip)
    rows = min(args.timed_rows, len(features) - 5)

    def greedy(x: torch.Tensor) -> torch.Tensor:
        return tokenizer.decode_normalized(greedy_decode(main_head, x))

    def early(rule: ExitRule) -> Callable[[torch.Tensor], torch.Tensor]:
        def decode(x: torch.Tensor) -> torch.Tensor:
            codes, stats = early_exit_decode(main_head, x, rule)
            return decode_at_depths(tokenizer, codes, stats)
        return decode

    ms = per_chunk_ms({"full greedy": greedy, **{name: early(rule) for name, rule in rules.items()}}, features, rows)
    full_ms = ms["full greedy"]
    print(f"{len(features)} held-out rows; full greedy (8 one-layer passes + decode): {full_ms:.2f} ms per chunk "
          f"(median of {rows} rows, decoders interleaved)")
    print("| rule | mean depth | depth counts | certified bound mean / max | measured departure mean / max | "
          "action MSE vs full | gripper flips | ms per chunk (vs full greedy) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rule in rules.items():
        d = exit_departure(main_head, tokenizer, features, val.valid, rule, flip)
        print(f"| {name} | {d['mean_depth']:.2f} | {d['depth_counts']} | {d['mean_bound']:.3g} / {d['max_bound']:.3g} "
              f"| {d['mean_departure_raw']:.3g} / {d['max_departure_raw']:.3g} | {d['action_mse_vs_full_raw']:.2g} | "
              f"{d['gripper_flips']} | {ms[name]:.2f} ({full_ms / ms[name]:.2f}x) |")


if __name__ == "__main__":
    main()
