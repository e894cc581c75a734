"""Phase 1 training: the action tokenizer on demonstration chunks (`rvq train-tokenizer`).

Masked reconstruction MSE (padding excluded), evaluated on held-out episodes, through the shared
`rvq.training.loop.train_loop` (AdamW + cosine, JSONL metrics, best checkpoint by validation MSE, resume).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvq.config_cli import save_run_config
from rvq.data import ActionNormalizer, ChunkSet, Episode, embedded_demo_files, make_chunks, read_demos, split_by_episode
from rvq.device import resolve_device
from rvq.plots import plot_prefix_error, plot_residual_std
from rvq.rfsq import TokenizerConfig, TokenizerModel, build_tokenizer_model, save_tokenizer
from rvq.training.common import fingerprint, seed_everything
from rvq.training.loop import train_loop
from rvq.training.optim import OptimConfig
from rvq.training.tokenizer_eval import evaluate_tokenizer, masked_mse

TRAIN_STATE_FORMAT = "rvq.tokenizer-train-state"
SELECTION_METRICS = {"full_depth": "mse", "prefix_mean": "mse_prefix_mean"}  # select_by → evaluate_tokenizer's key


@dataclass
class TrainTokenizerConfig:
    """Everything a tokenizer training run depends on (`rvq train-tokenizer`; `--config FILE` gives defaults).
    `model` is the tokenizer's own config (`rvq.rfsq.TokenizerConfig`: `--model.hidden-dim`)."""

    # HDF5 demo files, folders of them (LIBERO: one file per task) or LeRobot dataset folders; empty: robosuite's
    # bundled demos
    demos: list[str] = field(default_factory=list)
    out_dir: str = "runs/tokenizer"  # output folder
    seed: int = 0  # the held-out split, initial weights and batch order
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    val_fraction: float = 0.2  # held-out episodes
    # q99_guarded: 1st/99th percentiles to [-1, 1], rarer values kept up to the training extremes; or bounds_q99
    # (OpenVLA's, clips beyond the percentiles)
    normalization: str = "q99_guarded"
    resume: str | None = None  # resume from a run's last.pt
    progress: bool = True  # show the progress bar
    log_to: str = "none"  # also log each evaluation to "tensorboard" or "wandb" (rvq.training.loggers)
    wandb_project: str = "rvq"  # wandb: the project the run logs to (with --log-to wandb)
    # the first share of the training steps reconstructs every chunk from layer 0 alone: sets `model.layer0_warmup`
    # to round(ratio × optim.steps); a count given as `model.layer0_warmup` overrides it (as `warmup_steps` overrides
    # `warmup_ratio` in transformers' Trainer); 0: off. None: 0 for a cascade whose layer 0 trains on a share of every
    # batch (robust's default), else 0.2
    layer0_warmup_ratio: float | None = None
    # which held-out error picks the best checkpoint: "full_depth" (all L layers decoded) or "prefix_mean" (the mean
    # over k = 1..L of the error decoding the first k layers: every prefix counts, so a model whose full depth is
    # exact from the start, such as a cascade with a linear residual stage, is not kept before its prefixes train).
    # None: prefix_mean for a cascade (robust's default), else full_depth
    select_by: str | None = None
    # the tokenizer (rvq.rfsq.TokenizerConfig); its unset recipe fields take the quantizer's recipe
    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        steps=10000, batch_size=256, lr=2e-3, weight_decay=1e-4, warmup_steps=100, grad_clip=1.0, eval_every=500))

    def __post_init__(self) -> None:
        if self.layer0_warmup_ratio is None or self.select_by is None:
            self.resolved()  # checks the values the run will have
            return
        if not 0.0 <= self.layer0_warmup_ratio < 1.0:
            raise ValueError(f"layer0_warmup_ratio must be in [0, 1), got {self.layer0_warmup_ratio}")
        if self.select_by not in SELECTION_METRICS:
            raise ValueError(f"select_by must be one of {sorted(SELECTION_METRICS)}, got {self.select_by!r}")
        if self.select_by == "prefix_mean" and self.model.quantizer == "layernorm":
            raise ValueError("select_by='prefix_mean' decodes prefixes from codes: quantizer 'layernorm' cannot "
                             "(select_by='full_depth')")

    def resolved(self) -> "TrainTokenizerConfig":
        """This config with the model's recipe resolved (`TokenizerConfig.resolved`) and, where unset, the warm-up
        ratio and the selection rule that go with it: a cascade whose layer 0 trains on a share of every batch needs
        no warm-up, and its linear residual stage's full depth is exact from the start, so every prefix chooses."""
        model = self.model.resolved()
        ratio = (0.0 if model.cascade and model.layer0_share else 0.2) if self.layer0_warmup_ratio is None \
            else self.layer0_warmup_ratio
        select_by = ("prefix_mean" if model.cascade else "full_depth") if self.select_by is None else self.select_by
        return replace(self, model=model, layer0_warmup_ratio=ratio, select_by=select_by)

    def model_config(self) -> TokenizerConfig:
        """The model this run trains: `model` resolved, with `layer0_warmup` from `layer0_warmup_ratio` unless it
        gives one."""
        cfg = self.resolved()
        if not cfg.layer0_warmup_ratio or cfg.model.layer0_warmup:
            return cfg.model
        return replace(cfg.model, layer0_warmup=round(cfg.layer0_warmup_ratio * cfg.optim.steps))


@dataclass
class TokenizerData:
    """The split, the normalizer fitted on the training split, and chunks of both sides."""

    train_episodes: list[Episode]
    val_episodes: list[Episode]
    normalizer: ActionNormalizer
    train: ChunkSet
    val: ChunkSet

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must train on: episode names and a hash of the chunks and statistics."""
        return {"train_episodes": [e.name for e in self.train_episodes],
                "val_episodes": [e.name for e in self.val_episodes],
                "sha256": fingerprint(self.train.actions, self.train.valid, self.val.actions, self.val.valid,
                                      self.normalizer.low, self.normalizer.high)}

    def describe(self) -> dict[str, Any]:
        return {
            "train_episodes": [e.name for e in self.train_episodes],
            "val_episodes": [e.name for e in self.val_episodes],
            "train_steps": int(sum(len(e) for e in self.train_episodes)),
            "val_steps": int(sum(len(e) for e in self.val_episodes)),
        }


def prepare_tokenizer_data(
    demos: list[str], chunk_size: int, val_fraction: float, seed: int, normalization: str = "q99_guarded"
) -> TokenizerData:
    """Read demos (or the embedded default), split by episode, fit the normalization on train, chunk."""
    paths = list(demos) if demos else [str(p) for p in embedded_demo_files()]
    episodes = read_demos(paths)
    longest = max((len(e) for e in episodes), default=0)
    if longest < chunk_size:  # every chunk would be mostly padding: no full chunk to learn or measure on
        raise ValueError(f"demos {paths}: the longest of {len(episodes)} episode(s) has {longest} steps, fewer than "
                         f"one chunk of {chunk_size}; a tokenizer needs episodes of at least chunk_size steps")
    train_eps, val_eps = split_by_episode(episodes, val_fraction, seed)
    normalizer = ActionNormalizer.fit(np.concatenate([e.actions for e in train_eps]), method=normalization)
    return TokenizerData(
        train_eps, val_eps, normalizer, make_chunks(train_eps, chunk_size), make_chunks(val_eps, chunk_size)
    )


@dataclass
class FitResult:
    model: TokenizerModel
    best: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float


def fit_tokenizer(
    model: TokenizerModel,
    data: TokenizerData,
    cfg: TrainTokenizerConfig,
    out_dir: Path | None = None,
    stop_at: int | None = None,
) -> FitResult:
    """Train `model` on `data.train`, evaluating on `data.val`; returns the best model (by `cfg.select_by`'s
    held-out error).

    With `out_dir`, writes `metrics.jsonl`, `tokenizer/` (the best, a hub-style part: `config.json` +
    `model.safetensors`) and `last.pt` (resumable state).
    `stop_at` ends the run early at that step, schedule unchanged (a preempted job; resume later).
    """
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    x_train = data.normalizer.normalize(torch.as_tensor(data.train.actions)).to(device)
    valid_train = torch.as_tensor(data.train.valid).to(device)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        recon, _ = model(x_train[idx])
        return masked_mse(recon, x_train[idx], valid_train[idx]).mean()

    def save_best(best: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        save_tokenizer(out_dir / "tokenizer", _with_state(model, state), action_stats=data.normalizer.to_dict(),
                       metrics={"val": best, "config": asdict(cfg)})

    loop = train_loop(
        model, cfg, device, x_train.shape[0], batch_loss,
        evaluate=lambda: evaluate_tokenizer(model, data.val, data.normalizer, device),
        metric=SELECTION_METRICS[cfg.select_by], train_key="train_mse", state_format=TRAIN_STATE_FORMAT,
        desc=f"tokenizer[{getattr(model, 'name', model.config.quantizer)}]",
        postfix=lambda m: {"val_mse": f"{m['mse']:.2e}"}, save_best=save_best, out_dir=out_dir, stop_at=stop_at,
        inputs=data.fingerprint(),
    )
    return FitResult(model, loop.best, loop.history, loop.seconds)


def _with_state(model: TokenizerModel, state: dict[str, torch.Tensor]) -> TokenizerModel:
    copy = build_tokenizer_model(model.config)
    copy.load_state_dict(state)
    return copy


def train_tokenizer(cfg: TrainTokenizerConfig) -> dict[str, Any]:
    """The `rvq train-tokenizer` job: data → training → `tokenizer/` + `report.md`/`report.json`."""
    cfg = cfg.resolved()  # the run's files name the recipe it trained with
    out_dir = Path(cfg.out_dir)
    save_run_config(cfg, out_dir)
    data = prepare_tokenizer_data(cfg.demos, cfg.model.chunk_size, cfg.val_fraction, cfg.seed, cfg.normalization)
    seed_everything(cfg.seed)  # the initial weights depend on the seed too
    model = build_tokenizer_model(cfg.model_config())
    result = fit_tokenizer(model, data, cfg, out_dir)
    report = {"config": asdict(cfg), "data": data.describe(), "best": result.best, "seconds": result.seconds,
              "device": str(resolve_device(cfg.device)), "checkpoint": str(out_dir / "tokenizer"),
              "figures": plot_run(result.best, cfg.model.quantizer, out_dir)}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(render_report(report))
    return report


def plot_run(best: dict[str, Any], quantizer: str, out_dir: Path) -> list[str]:
    """The best checkpoint's figures, from the numbers `report.md` tabulates: `residual_std.png` (held-out residual
    std per layer) and `error_by_prefix.png` (held-out MSE decoding the first k layers)."""
    figures = [plot_residual_std({quantizer: best["residual_std"]}, out_dir / "residual_std.png")]
    if "mse_by_layers" in best:
        errors = best["mse_by_layers"]
        title = (f"{quantizer}: held-out MSE {errors[0]:.3g} from layer 0 alone, {errors[-1]:.3g} from all "
                 f"{len(errors)} layers")
        figures.append(plot_prefix_error({quantizer: list(zip(range(1, len(errors) + 1), errors))},
                                         out_dir / "error_by_prefix.png", title, "layers decoded (k)"))
    return [path.name for path in figures]


def rare_reach_line(metrics: dict[str, Any]) -> str:
    """One line on rare large actions (beyond the held-out 1st/99th percentiles): what fraction of the
    commanded magnitude the decoded action reaches."""
    if metrics.get("rare_reach_median") is None:
        return "- rare large actions: none in the held-out split"
    return (f"- rare large actions ({100 * metrics['rare_fraction']:.1f}% of held-out values, beyond the 1st/99th "
            f"percentiles): decoded / commanded median {metrics['rare_reach_median']:.3f}, 5th percentile "
            f"{metrics['rare_reach_p05']:.3f}, min {metrics['rare_reach_min']:.3f}")


def render_report(report: dict[str, Any]) -> str:
    """Short markdown summary of a tokenizer run."""
    best, data = report["best"], report["data"]
    model = report["config"]["model"]
    cascade = (" (cascade: layer 0 a one-layer tokenizer, layers 1+ on its action residual)"
               if model.get("cascade") else "")
    lines = [
        f"# Tokenizer run: {model['quantizer']} RFSQ{cascade}",
        "",
        f"- checkpoint: `{report['checkpoint']}` (best at step {best['step']}, device {report['device']}, "
        f"{report['seconds']:.1f} s)",
        f"- data: {len(data['train_episodes'])} train / {len(data['val_episodes'])} held-out episodes "
        f"({data['train_steps']} / {data['val_steps']} steps)",
        f"- held-out MSE (normalized): {best['mse']:.3e}; raw units: {best['mse_raw']:.3e}",
        rare_reach_line(best),
        f"- bits per chunk: {best['bits_per_chunk']:.0f}; effective layers: {best['num_effective_layers']}"
        f"/{len(best['energy_ratio'])}",
        "",
        "| layer | residual std before | energy kept | code perplexity |",
        "|---|---|---|---|",
    ]
    for i, (std, ratio, ppl) in enumerate(zip(best["residual_std"], best["energy_ratio"], best["code_perplexity"])):
        lines.append(f"| {i} | {std:.3e} | {ratio:.3f} | {ppl:.2f} |")
    if cascade:
        lines += ["", "(Layer 0's residual is in its own stage's latent units; layers 1+ in the residual stage's.)"]
    if "mse_by_layers" in best:
        lines += ["", "Held-out MSE decoding the first k layers: "
                  + ", ".join(f"k={k + 1}: {v:.2e}" for k, v in enumerate(best["mse_by_layers"]))]
    if report.get("figures"):
        lines += ["", "Figures (the numbers above): " + ", ".join(f"`{name}`" for name in report["figures"])]
    return "\n".join(lines) + "\n"

