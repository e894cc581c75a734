"""Phase 2 training: the draft and main token predictors (`rvq train-draft`, `rvq train-main`).

Cross-entropy on cached features and token labels; the main model is teacher-forced on the
ground-truth earlier layers (layer-causal, so it never sees the layer it predicts). Training runs
through the shared `rvq.training.loop.train_loop` (validation on held-out episodes, best checkpoint
by validation loss, resumable `last.pt`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from tyro.conf import Suppress

from rvq.config_cli import save_run_config
from rvq.data.feature_store import LazyFeatures
from rvq.data.phase2 import Phase2Data, load_phase2_data
from rvq.device import resolve_device
from rvq.models import DraftConfig, DraftModel, MainConfig, MainModel, TokenSpace, save_head
from rvq.models.standardize import FeatureStandardizer
from rvq.rsd.decode import greedy_decode
from rvq.tokenizer import ActionTokenizer
from rvq.training.common import fingerprint, seed_everything
from rvq.training.loop import train_loop
from rvq.training.optim import OptimConfig

KINDS = ("draft", "main")


@dataclass
class HeadModelConfig:
    """The draft or main head's shape (`--model.width`, or `width` in a `[model]` table)."""

    width: int = 512  # hidden width (the draft's MLP, the main transformer's model dimension)
    depth: int | None = None  # draft: MLP layers (None: 2); main: transformer blocks (None: 4)
    heads: int = 8  # main: attention heads
    dropout: float = 0.1  # dropout in training
    num_draft_layers: int = 3  # draft: the coarse layers it predicts
    # standardize inputs with the training rows' statistics (docs/history/RESULTS.md: better held-out accuracy everywhere,
    # 62% vs 40% success on the 10-task study with lr 1e-3, but 2-3/10 vs 10/10 on a single task with 20 demos;
    # off by default until it is understood)
    standardize_features: bool = False


@dataclass
class TrainHeadConfig:
    """A draft or main training run (`rvq train-draft`, `rvq train-main`; `--config FILE` gives defaults)."""

    kind: Suppress[str] = "main"  # set by the command (train-draft / train-main), not a flag
    data: list[str] = field(default_factory=list)  # Phase 2 data files (from `rvq build-phase2-data`)
    tokenizer: str = ""  # the tokenizer checkpoint that labelled the Phase 2 data
    out_dir: str = "runs/head"  # output folder
    seed: int = 0  # initial weights, batch order and the held-out split
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    val_fraction: float = 0.2  # held-out episodes
    resume: str | None = None  # resume from a run's last.pt
    progress: bool = True  # show the progress bar
    log_to: str = "none"  # also log each evaluation to "tensorboard" or "wandb" (rvq.training.loggers)
    wandb_project: str = "rvq"  # wandb: the project the run logs to (with --log-to wandb)
    model: HeadModelConfig = field(default_factory=HeadModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    def model_config(self, feature_dim: int, tokens: TokenSpace) -> DraftConfig | MainConfig:
        m = self.model
        if self.kind == "draft":
            return DraftConfig(feature_dim, tokens, m.num_draft_layers, m.width, m.depth or 2, m.dropout,
                               m.standardize_features)
        return MainConfig(feature_dim, tokens, m.width, m.depth or 4, m.heads, m.dropout, m.standardize_features)


def build_head(config: DraftConfig | MainConfig) -> DraftModel | MainModel:
    return DraftModel(config) if isinstance(config, DraftConfig) else MainModel(config)


def head_logits(model: DraftModel | MainModel, features: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Training-time logits `[B, layers, P, levels]`; the main model is teacher-forced on `codes [B, C, H, L]`."""
    if isinstance(model, DraftModel):
        return model(features)
    return model(features, model.config.tokens.chunk_to_positions(codes))


def head_loss(logits: torch.Tensor, codes: torch.Tensor, tokens: TokenSpace) -> torch.Tensor:
    """Mean cross-entropy of logits `[B, k, P, V]` against the first k layers of codes `[B, C, H, L]`."""
    target = tokens.chunk_to_rows(codes[..., : logits.shape[1]])  # [B, k, P]
    return F.cross_entropy(rearrange(logits, "b k p v -> (b k p) v"), target.reshape(-1))


def _masked_action_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float:
    err = ((pred - target) ** 2).mean(-1)
    return float((err * valid).sum() / valid.sum().clamp(min=1))


def action_mse_by_position_dim(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> list[list[float]]:
    """Where an action error sits: MSE of actions `[N, C, A]` against `target` over the valid steps `[N, C]`, per
    chunk position and action dimension (`[C][A]`)."""
    weight = valid.float()[..., None]
    return (((pred - target) ** 2 * weight).sum(0) / weight.sum(0).clamp(min=1)).tolist()


def gripper_sign_accuracy(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float:
    """Fraction of valid steps `[N, C]` whose gripper command (the last action dim) has the target's sign."""
    return float(((pred[..., -1] > 0) == (target[..., -1] > 0)).float()[valid.bool()].mean())


@torch.no_grad()
def evaluate_head(
    model: DraftModel | MainModel,
    data: Phase2Data,
    tokenizer: ActionTokenizer,
    device: torch.device,
    batch_size: int = 512,
) -> dict[str, Any]:
    """Validation metrics.

    loss: teacher-forced cross-entropy. token_accuracy / layer_exact_match: per layer, of the
    tokens the model would emit (draft: its argmax; main: greedy decoding, layer by layer);
    layer_exact_match is the fraction of chunks whose whole layer is right (what speculative
    acceptance depends on). main also reports teacher_forced_accuracy. action_mse_raw: MSE in raw
    env units (valid steps only) of the actions decoded from the emitted tokens, next to
    tokenizer_mse_raw, the same for the ground-truth tokens (the floor); action_mse_by_position_dim, the same per
    chunk position and action dim `[C][7]`; gripper_sign_accuracy, of the decoded gripper command. Baselines per layer:
    chance_accuracy (1 / levels) and majority_accuracy (the most frequent validation code at each
    chunk step and action dim, an optimistic constant predictor).
    """
    model.eval()
    losses, emitted, forced = [], [], []
    for start in range(0, len(data), batch_size):
        feats = data.features[start : start + batch_size].to(device)
        codes = data.codes[start : start + batch_size].to(device)
        logits = head_logits(model, feats, codes)
        losses.append(float(head_loss(logits, codes, model.config.tokens)) * len(feats))
        if isinstance(model, DraftModel):
            emitted.append(model.config.tokens.rows_to_chunk(logits.argmax(-1)).cpu())
        else:
            emitted.append(greedy_decode(model, feats).cpu())
            forced.append(model.config.tokens.rows_to_chunk(logits.argmax(-1)).cpu())
    pred = torch.cat(emitted)
    layers = pred.shape[-1]
    truth = data.codes[..., :layers]
    correct = pred == truth  # [N, C, H, k]
    metrics: dict[str, Any] = {
        "loss": sum(losses) / len(data),
        "token_accuracy": correct.float().mean(dim=(0, 1, 2)).tolist(),
        "layer_exact_match": correct.flatten(1, 2).all(dim=1).float().mean(dim=0).tolist(),
    }
    metrics["mean_token_accuracy"] = float(correct.float().mean())
    if forced:
        metrics["teacher_forced_accuracy"] = (torch.cat(forced) == truth).float().mean(dim=(0, 1, 2)).tolist()
    actions = tokenizer.decode(pred)
    metrics["action_mse_raw"] = _masked_action_mse(actions, data.actions, data.valid)
    metrics["action_mse_by_position_dim"] = action_mse_by_position_dim(actions, data.actions, data.valid)
    metrics["gripper_sign_accuracy"] = gripper_sign_accuracy(actions, data.actions, data.valid)
    metrics["tokenizer_mse_raw"] = _masked_action_mse(tokenizer.decode(truth), data.actions, data.valid)
    metrics["chance_accuracy"] = 1.0 / tokenizer.tokens.num_levels
    # a constant predictor that knows the validation set's most frequent code at each (step, dim, layer)
    majority = truth.mode(dim=0).values  # [C, H, k]
    metrics["majority_accuracy"] = (truth == majority).float().mean(dim=(0, 1, 2)).tolist()
    return metrics


@dataclass
class HeadFitResult:
    model: DraftModel | MainModel
    best: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float
    samples_per_second: float


def fit_head(
    model: DraftModel | MainModel,
    train: Phase2Data,
    val: Phase2Data,
    tokenizer: ActionTokenizer,
    cfg: TrainHeadConfig,
    out_dir: Path | None = None,
    stop_at: int | None = None,
) -> HeadFitResult:
    """Train on `train`, keep the best model by validation loss; `stop_at` ends early (a preempted job)."""
    device = resolve_device(cfg.device)
    if isinstance(model.standardize, FeatureStandardizer):
        model.standardize.fit(train.features)  # before the loop: a resumed run then loads the same statistics
    codes = train.codes.to(device)
    if isinstance(train.features, LazyFeatures):  # read from disk a batch at a time
        def batch_features(idx: torch.Tensor) -> torch.Tensor:
            return train.features[idx.cpu()].to(device)
    else:
        features = train.features.to(device)

        def batch_features(idx: torch.Tensor) -> torch.Tensor:
            return features[idx]

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        return head_loss(head_logits(model, batch_features(idx), codes[idx]), codes[idx], model.config.tokens)

    loop = train_loop(
        model, cfg, device, len(train), batch_loss,
        evaluate=lambda: evaluate_head(model, val, tokenizer, device),
        metric="loss", train_key="train_loss", state_format=f"rvq.{cfg.kind}-train-state", desc=f"train-{cfg.kind}",
        postfix=lambda m: {"val_loss": f"{m['loss']:.3f}", "acc": f"{m['mean_token_accuracy']:.3f}"},
        save_best=lambda best, state: _save_best(out_dir, model, state, train, best, cfg), out_dir=out_dir,
        stop_at=stop_at, inputs=_inputs(train, val),
    )
    return HeadFitResult(model, loop.best, loop.history, loop.seconds, loop.samples / max(loop.seconds, 1e-9))


def _inputs(train: Phase2Data, val: Phase2Data) -> dict[str, Any]:
    """What a resumed run must train on: identities, episodes and a hash of the labels and row ids."""
    return {"tokenizer_identity": train.tokenizer_identity, "feature_identity": train.feature_identity,
            "episodes": train.episodes, "train_rows": len(train), "val_rows": len(val),
            "sha256": fingerprint(train.codes, train.episode, train.step, val.codes, val.episode, val.step)}


def _save_best(out_dir: Path, model, best_state, data: Phase2Data, best: dict[str, Any], cfg: TrainHeadConfig) -> None:
    copy = build_head(model.config)
    copy.load_state_dict(best_state)
    save_head(out_dir / cfg.kind, copy, data.tokenizer_identity, data.feature_identity,
              metrics={"val": best, "config": asdict(cfg)}, feature_info=data.feature_info)


def train_head(cfg: TrainHeadConfig) -> dict[str, Any]:
    """The `rvq train-draft` / `rvq train-main` job: Phase 2 files → `{kind}/` (a hub-style part) + `report.json`/`report.md`."""
    if not cfg.data:
        raise ValueError("no Phase 2 data files given (build them with `rvq build-phase2-data`)")
    if not cfg.tokenizer:
        raise ValueError("the tokenizer checkpoint that labelled the data is required (--tokenizer)")
    device = resolve_device(cfg.device)
    tokenizer = ActionTokenizer.from_checkpoint(cfg.tokenizer, device=device)
    data = load_phase2_data(cfg.data)
    if data.tokenizer_identity != tokenizer.identity:
        raise ValueError(
            f"{cfg.tokenizer} is not the tokenizer that labelled the data (identity {tokenizer.identity[:12]}…, "
            f"data made with {data.tokenizer_identity[:12]}…)"
        )
    train, val = data.split_by_episode(cfg.val_fraction, cfg.seed)
    out_dir = Path(cfg.out_dir)
    save_run_config(cfg, out_dir)
    seed_everything(cfg.seed)
    model = build_head(cfg.model_config(data.feature_dim, tokenizer.tokens))
    result = fit_head(model, train, val, tokenizer, cfg, out_dir)
    report = {
        "kind": cfg.kind, "config": asdict(cfg), "device": str(device), "seconds": result.seconds,
        "train_samples_per_second": result.samples_per_second,
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {"train_rows": len(train), "val_rows": len(val), "feature_dim": data.feature_dim,
                 "feature_info": data.feature_info},
        "best": result.best, "checkpoint": str(out_dir / cfg.kind),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(render_head_report(report))
    return report


def render_head_report(report: dict[str, Any]) -> str:
    best = report["best"]
    fmt = lambda xs: " | ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    layers = len(best["token_accuracy"])
    lines = [
        f"# {report['kind']} model",
        "",
        f"- rows: {report['data']['train_rows']} train / {report['data']['val_rows']} val (split by episode)",
        f"- best step {best['step']}, validation loss {best['loss']:.4f}, chance accuracy {best['chance_accuracy']:.3f}",
        f"- action MSE (raw units) from emitted tokens {best['action_mse_raw']:.4g}; tokenizer floor {best['tokenizer_mse_raw']:.4g}",
        f"- training throughput {report['train_samples_per_second']:.0f} samples/s on {report['device']}",
        "",
        "| metric | " + " | ".join(f"L{i}" for i in range(layers)) + " |",
        "|---|" + "---|" * layers,
        f"| token accuracy | {fmt(best['token_accuracy'])} |",
        f"| majority-code baseline | {fmt(best['majority_accuracy'])} |",
        f"| whole-layer exact match | {fmt(best['layer_exact_match'])} |",
    ]
    if "teacher_forced_accuracy" in best:
        lines.append(f"| teacher-forced accuracy | {fmt(best['teacher_forced_accuracy'])} |")
    return "\n".join(lines) + "\n"
