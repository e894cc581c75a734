"""Is it the tokens or the inputs? A continuous baseline on the same Phase 2 rows as the token heads.

An MLP maps the same features `[B, D]` to the chunk's actions `[B, C, 7]` directly (L1 regression on actions
standardized per dimension, as OpenVLA-OFT trains its continuous head), with the same held-out episodes as the
heads (`Phase2Data.split_by_episode`, same seed). It reports the held-out action MSE in raw units (the token heads
report the same number for the actions decoded from their emitted tokens) and, with `--trials`, runs the policy
in the real simulator on the official initial states through the harness's `run_episode` (physics only; state
features only, which the data must have been built with).

    python scripts/continuous_baseline.py PHASE2.h5 --suite libero_object --out DIR --steps 6000 --trials 10

If this policy succeeds far more often than the token heads on the same rows, the token head is what limits them;
if not, the inputs or the demonstrations are. A diagnostic, not a policy kind of `rvq eval`: it writes
`DIR/results.jsonl` (the harness's records) and `DIR/report.json`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rvq.backbones.state import StateFeatures
from rvq.data.phase2 import Phase2Data, load_phase2_data
from rvq.envs.libero_env import LiberoEnv
from rvq.eval.config import EvalConfig
from rvq.eval.results import append_record, episode_key, read_results
from rvq.eval.runner import run_episode
from rvq.models.standardize import FeatureStandardizer
from rvq.policies.base import binarize_gripper
from rvq.training.heads import action_mse_by_position_dim, gripper_sign_accuracy
from rvq.training.loop import train_loop


@dataclass
class RegressionConfig:
    """What `train_loop` reads, plus the MLP's size."""

    steps: int = 6000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    eval_every: int = 1000
    seed: int = 0
    width: int = 512
    depth: int = 3
    dropout: float = 0.1
    loss: str = "l1"
    resume: str | None = None
    progress: bool = False
    log_to: str = "none"
    wandb_project: str = "rvq"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChunkRegressor(nn.Module):
    """features `[B, D]` → actions `[B, C, 7]` in raw env units (standardized inside, as the token heads do)."""

    def __init__(self, feature_dim: int, chunk: int, action_dim: int, cfg: RegressionConfig) -> None:
        super().__init__()
        self.config = cfg
        self.chunk, self.action_dim = chunk, action_dim
        self.standardize = FeatureStandardizer(feature_dim)
        layers: list[nn.Module] = [nn.Linear(feature_dim, cfg.width)]
        for _ in range(cfg.depth - 1):
            layers += [nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.width, cfg.width)]
        layers += [nn.GELU(), nn.Linear(cfg.width, chunk * action_dim)]
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))

    def fit_stats(self, data: Phase2Data) -> None:
        self.standardize.fit(data.features)
        steps = data.actions[data.valid]  # [N_valid, 7]
        self.action_mean.copy_(steps.mean(0))
        self.action_std.copy_(steps.std(0).clamp(min=1e-3))

    def normalized(self, features: torch.Tensor) -> torch.Tensor:
        """features `[B, D]` → standardized actions `[B, C, 7]`."""
        return self.mlp(self.standardize(features)).view(-1, self.chunk, self.action_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.normalized(features) * self.action_std + self.action_mean


def regression_loss(model: ChunkRegressor, features: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor,
                    kind: str) -> torch.Tensor:
    """Mean L1 (or MSE) over the valid steps of standardized actions."""
    pred = model.normalized(features)
    target = (actions - model.action_mean) / model.action_std
    err = (pred - target).abs() if kind == "l1" else (pred - target) ** 2
    return (err.mean(-1) * valid).sum() / valid.sum().clamp(min=1)


@torch.no_grad()
def held_out_mse(model: ChunkRegressor, data: Phase2Data, kind: str) -> dict[str, float]:
    model.eval()
    pred = model(data.features)
    err = ((pred - data.actions) ** 2).mean(-1)  # [N, C]
    valid = data.valid.float()
    return {"loss": float(regression_loss(model, data.features, data.actions, valid, kind)),
            "action_mse_raw": float((err * valid).sum() / valid.sum()),
            "action_mse_by_position_dim": action_mse_by_position_dim(pred, data.actions, data.valid),
            "gripper_sign_accuracy": gripper_sign_accuracy(pred, data.actions, data.valid)}


class RegressionPolicy:
    """The harness's `Policy`: state features → the regressor's chunk, gripper binarized as the token policy does."""

    name = "continuous"

    def __init__(self, features: StateFeatures, model: ChunkRegressor) -> None:
        self.features, self.model = features, model.eval()

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        pass

    @torch.inference_mode()
    def act(self, obs: dict[str, Any]) -> np.ndarray:
        chunk = self.model(self.features.features([obs]))[0].double().numpy()
        return binarize_gripper(chunk)

    def episode_stats(self) -> dict[str, Any]:
        return {}


def evaluate_in_sim(policy: Any, suite: str, tasks: list[int], trials: int, out: Path, execute_steps: int | None,
                    label: str = "continuous-mlp") -> list[dict[str, Any]]:
    """Run (or resume) a `Policy`'s episodes inline, physics only; one harness record per episode in
    `out/results.jsonl` (an errored episode stops the run: a diagnostic reports no partial table)."""
    # `run_episode` reads the protocol (max steps, chunk execution) from an EvalConfig; policy "noop" only passes
    # its validation, the records name the real policy below
    cfg = EvalConfig(suite=suite, tasks=tasks, trials=trials, policy="noop", render=False, out_dir=str(out),
                     label=label, execute_steps=execute_steps)
    path = out / "results.jsonl"
    done = {episode_key(r) for r in read_results(path)} if path.exists() else set()
    for task in tasks:
        env = LiberoEnv(suite, task, render=False)
        try:
            for trial in range(trials):
                if (suite, task, trial) in done:
                    continue
                record = run_episode(env, policy, cfg, task, trial, None)
                record["policy"] = policy.name
                if record["error"]:
                    raise RuntimeError(record["error"])
                append_record(path, record)
                print(f"task {task} trial {trial}: {'success' if record['success'] else 'failure'} "
                      f"({record['steps']} steps)", flush=True)
        finally:
            env.close()
    return read_results(path)


def first_episodes_per_task(data: Phase2Data, count: int) -> Phase2Data:
    """The rows of the first `count` episodes (by episode index) of each task."""
    keep: list[int] = []
    for task in data.task.unique().tolist():
        episodes = data.episode[data.task == task].unique().sort().values  # unique() need not sort on every device
        if len(episodes) < count:
            raise SystemExit(f"task {task} has fewer than {count} training episodes ({len(episodes)})")
        keep += episodes[:count].tolist()
    return data.subset(torch.from_numpy(np.isin(data.episode.numpy(), keep)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="Phase 2 files built with state features")
    parser.add_argument("--suite", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tasks", default="0-9")
    parser.add_argument("--trials", type=int, default=0, help="official initial states per task to run (0: none)")
    parser.add_argument("--execute-steps", type=int, default=None)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--train-demos-per-task", type=int, default=None,
                        help="train on the first N training episodes of each task only (a demo-count curve)")
    for name, value in asdict(RegressionConfig()).items():
        if name not in ("resume", "progress", "log_to", "wandb_project"):
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    cfg = RegressionConfig(**{k: getattr(args, k) for k in asdict(RegressionConfig()) if hasattr(args, k)})
    if cfg.loss not in ("l1", "mse"):
        raise SystemExit(f"--loss must be l1 or mse, got {cfg.loss!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    features = StateFeatures.for_suite(args.suite)
    data = load_phase2_data(args.data)
    if data.feature_identity != features.identity:
        raise SystemExit(f"the data's features ({data.feature_identity[:12]}…) are not {args.suite}'s state features "
                         f"({features.identity[:12]}…): pass the Phase 2 files built with --backbone state:{args.suite}")
    train, val = data.split_by_episode(args.val_fraction, cfg.seed)
    if args.train_demos_per_task is not None:
        train = first_episodes_per_task(train, args.train_demos_per_task)
    chunk, action_dim = data.actions.shape[1:]
    model = ChunkRegressor(data.feature_dim, chunk, action_dim, cfg)
    model.fit_stats(train)
    valid = train.valid.float()

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        return regression_loss(model, train.features[idx], train.actions[idx], valid[idx], cfg.loss)

    result = train_loop(model, cfg, torch.device("cpu"), len(train), batch_loss,
                        evaluate=lambda: held_out_mse(model, val, cfg.loss), metric="loss", train_key="train_loss",
                        state_format="rvq.continuous-baseline-state", desc="continuous",
                        postfix=lambda m: {"val_mse": f"{m['action_mse_raw']:.3g}"}, out_dir=out)
    report: dict[str, Any] = {"config": cfg.to_dict(), "data": [str(p) for p in args.data], "train_rows": len(train),
                              "train_episodes": len(train.episode.unique()),
                              "val_rows": len(val), "best": result.best, "seconds": result.seconds,
                              "parameters": sum(p.numel() for p in model.parameters())}
    print(json.dumps(report["best"], indent=2))
    if args.trials:
        first, _, last = args.tasks.partition("-")
        tasks = list(range(int(first), int(last or first) + 1))
        torch.set_num_threads(1)
        records = evaluate_in_sim(RegressionPolicy(features, model), args.suite, tasks, args.trials, out,
                                  args.execute_steps)
        per_task = [sum(r["success"] for r in records if r["task"] == t) for t in tasks]
        report["success"] = {"episodes": len(records), "successes": sum(per_task), "per_task": per_task}
        print(f"success {sum(per_task)}/{len(records)}; per task {per_task}")
    (out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
