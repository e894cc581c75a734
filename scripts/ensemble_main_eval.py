"""Does averaging main heads help in closed loop? Main-only greedy decoding with an ensemble of main heads trained on
the same rows with different seeds: at each layer the members' log-probabilities are averaged, then the argmax is
taken, layer by layer as `rvq.rsd.decode.greedy_decode` does. Runs the official initial states in the real simulator
(physics only) through the harness's `run_episode` and writes the records to `OUT/results.jsonl`.

    python scripts/ensemble_main_eval.py POLICY_DIR POLICY_DIR [...] --suite libero_object --trials 10 --out OUT

The folders must share the tokenizer and the feature source (checked: each loads as a `TokenPolicy`, and the
members must name the same tokenizer and feature identities). A diagnostic, not a policy kind of `rvq eval`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rvq.models.main import MainModel
from rvq.policies.token_policy import TokenPolicy

sys.path.insert(0, str(Path(__file__).parent))
from continuous_baseline import evaluate_in_sim  # noqa: E402  (the scripts share one episode loop)


class MainEnsemble(nn.Module):
    """Main heads → one `MainModel`-shaped decoder: the context is the members' contexts side by side `[B, E*W]`,
    the logits the mean of their log-probabilities `[B, L, P, levels]`."""

    def __init__(self, members: list[MainModel]) -> None:
        super().__init__()
        if len({m.config.tokens for m in members}) != 1 or len({m.feature_dim for m in members}) != 1:
            raise ValueError("ensemble members must share the token space and the feature size")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    @property
    def feature_dim(self) -> int:
        return self.members[0].feature_dim

    @property
    def num_layers(self) -> int:
        return self.members[0].num_layers

    def encode_features(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.encode_features(features) for m in self.members], dim=-1)

    def logits_from_context(self, context: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        parts = context.chunk(len(self.members), dim=-1)
        return torch.stack([F.log_softmax(m.logits_from_context(c, codes), dim=-1)
                            for m, c in zip(self.members, parts)]).mean(0)

    def start_cache(self, context: torch.Tensor) -> "EnsembleCache":
        """One layer cache per member (the decoders' incremental passes, `MainModel.extend`)."""
        return EnsembleCache([m.start_cache(c) for m, c in zip(self.members, context.chunk(len(self.members), -1))])

    def extend(self, cache: "EnsembleCache", codes: torch.Tensor | None, rows: int = 1) -> torch.Tensor:
        return torch.stack([F.log_softmax(m.extend(c, codes, rows), dim=-1)
                            for m, c in zip(self.members, cache.members)]).mean(0)


class EnsembleCache:
    """The members' layer caches, filled and truncated together."""

    def __init__(self, members: list) -> None:
        self.members = members

    @property
    def filled(self) -> int:
        return self.members[0].filled

    def truncate(self, filled: int) -> None:
        for cache in self.members:
            cache.truncate(filled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policies", nargs="+")
    parser.add_argument("--suite", required=True)
    parser.add_argument("--tasks", default="0-9")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if len(args.policies) < 2:
        raise SystemExit("an ensemble needs at least two policy folders")
    policies = [TokenPolicy.from_dir(p, mode="main", device="cpu") for p in args.policies]
    for name in ("tokenizer_identity", "feature_identity"):
        if len({getattr(p.main, name) for p in policies}) != 1:
            raise SystemExit(f"the folders' main heads differ in {name}")
    policy = policies[0]
    policy.main = MainEnsemble([p.main for p in policies])
    torch.set_num_threads(1)
    first, _, last = args.tasks.partition("-")
    tasks = list(range(int(first), int(last or first) + 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = evaluate_in_sim(policy, args.suite, tasks, args.trials, out, None, label="ensemble-main")
    per_task = [sum(r["success"] for r in records if r["task"] == t) for t in tasks]
    print(f"success {sum(per_task)}/{len(records)}; per task {per_task}")


if __name__ == "__main__":
    main()
