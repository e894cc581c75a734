"""The training loop both trainers share (tokenizer, draft/main heads).

AdamW with decay on matrices only and the warm-up/cosine schedule (rvq.training.optim), seeded batch sampling,
gradient clipping, evaluation every `eval_every` steps, the best model by one validation metric (lower is better),
JSONL metrics and a resumable `last.pt`.
`stop_at` ends a run early with the schedule unchanged (a preempted job; resume later).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from rvq.training.common import append_jsonl, load_train_state, save_train_state, seed_everything
from rvq.training.loggers import make_logger, scalar_metrics
from rvq.training.optim import OptimConfig, configure_optimizer


class LoopConfig(Protocol):
    """What the loop reads from a run's config (`TrainTokenizerConfig`, `TrainHeadConfig`)."""

    optim: OptimConfig
    seed: int
    resume: str | None
    progress: bool
    log_to: str
    wandb_project: str


@dataclass
class LoopResult:
    """best: validation metrics of the best evaluation (plus its `step`); the model holds its weights."""

    best: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float
    samples: int  # training samples drawn in this run (not counting steps before a resume)


def train_loop(
    model: torch.nn.Module,
    cfg: LoopConfig,
    device: torch.device,
    num_rows: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    evaluate: Callable[[], dict[str, Any]],
    metric: str,
    train_key: str,
    state_format: str,
    desc: str,
    postfix: Callable[[dict[str, Any]], dict[str, str]],
    save_best: Callable[[dict[str, Any], dict[str, torch.Tensor]], None] | None = None,
    out_dir: Path | None = None,
    stop_at: int | None = None,
    inputs: dict[str, Any] | None = None,
) -> LoopResult:
    """Train `model` with `batch_loss(row indices on device)`; keep the weights with the lowest
    `evaluate()[metric]`. `cfg`: the optimization (`cfg.optim`), seed, resume, progress and log_to / wandb_project
    (optional TensorBoard or wandb). With `out_dir`: `save_best(best, state)` on improvement,
    `metrics.jsonl` and `last.pt` after every evaluation. `inputs` describes the training data (names and a
    content hash); resuming refuses a run whose config or inputs differ from the saved state's."""
    generator = seed_everything(cfg.seed)
    model.to(device)
    optim = cfg.optim
    optimizer, scheduler = configure_optimizer(model, optim.lr, optim.weight_decay, optim.steps, optim.warmup_steps)
    step, best, history = 0, {metric: float("inf")}, []
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if cfg.resume:
        state = load_train_state(cfg.resume, state_format, model.config.to_dict(), model, optimizer, scheduler, generator,
                                 run_config=asdict(cfg), inputs=inputs)
        step, best, history, best_state = state["step"], state["best"], state["history"], state["best_model"]
        if "torch_rng" in state:  # dropout and quantize dropout draw from the global RNG
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
    logger = make_logger(cfg.log_to, out_dir, desc, asdict(cfg), cfg.wandb_project)
    try:
        start, running, samples = time.perf_counter(), [], 0
        bar = tqdm(total=optim.steps, initial=step, disable=not cfg.progress, desc=desc)
        while step < min(optim.steps, stop_at or optim.steps):
            model.train()
            idx = torch.randint(0, num_rows, (optim.batch_size,), generator=generator).to(device)
            loss = batch_loss(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            samples += optim.batch_size
            running.append(loss.detach().item())
            bar.update(1)
            if step % optim.eval_every == 0 or step == optim.steps:
                metrics = evaluate()
                record = {"step": step, train_key: float(np.mean(running)), "lr": scheduler.get_last_lr()[0],
                          "val": metrics}
                running = []
                history.append(record)
                if logger is not None:
                    logger.log(scalar_metrics(record, train_key), step)
                bar.set_postfix(**postfix(metrics))
                improved = metrics[metric] < best[metric]
                if cfg.progress:  # a line per evaluation: what a log file keeps (a bar redraws one line)
                    shown = ", ".join(f"{k} {v}" for k, v in postfix(metrics).items())
                    tqdm.write(f"{desc} step {step}/{optim.steps}: train {record[train_key]:.4g}, held-out {shown}"
                               f"{' (best so far, saved)' if improved and out_dir else ''}, "
                               f"{time.perf_counter() - start:.0f} s")
                if improved:
                    best = {**metrics, "step": step}
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    if out_dir and save_best:
                        save_best(best, best_state)
                if out_dir:
                    append_jsonl(out_dir / "metrics.jsonl", record)
                    save_train_state(out_dir / "last.pt", state_format, model.config.to_dict(), model=model,
                                     optimizer=optimizer, scheduler=scheduler, generator=generator, step=step,
                                     config=asdict(cfg), best_model=best_state, best=best, history=history,
                                     inputs=inputs, torch_rng=torch.get_rng_state(),
                                     **({"cuda_rng": torch.cuda.get_rng_state(device)}
                                        if device.type == "cuda" else {}))
    finally:
        if logger is not None:
            logger.close()
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return LoopResult(best, history, time.perf_counter() - start, samples)
