"""Optional experiment logging for the training loop: TensorBoard or Weights & Biases, off by default.

`metrics.jsonl` (always written with `--out-dir`) stays the record; these mirror each evaluation's scalars
(`train/<loss>`, `val/<metric>`, per-layer lists as `val/<metric>/<layer>`) for the dashboards LeRobot and openpi
users already watch. Neither package is required: `log_to="none"` (the default) imports nothing, and asking for
one that is not installed fails before training with the extra to install (`pip install "rvq[log]"`). wandb runs
offline when `WANDB_MODE=offline` is set (its own switch), so nothing here needs a network.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Protocol

LOGGERS = ("none", "tensorboard", "wandb")


class MetricLogger(Protocol):
    def log(self, scalars: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def scalar_metrics(record: dict[str, Any], train_key: str) -> dict[str, float]:
    """One evaluation record of the loop → flat finite scalars: `train/<train_key>`, `lr`, `val/<name>` and
    `val/<name>/<i>` for list-valued metrics (per layer or per dim)."""
    out = {f"train/{train_key}": record[train_key], "lr": record["lr"]}
    for name, value in record["val"].items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[f"val/{name}"] = float(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            out.update({f"val/{name}/{i}": float(v) for i, v in enumerate(value)})
    return {k: float(v) for k, v in out.items() if math.isfinite(float(v))}


def _import(module: str, kind: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModuleNotFoundError(f"--log-to {kind} needs the {module.split('.')[0]!r} package: pip install \"rvq[log]\" "
                          f"(or pip install {module.split('.')[0]})") from exc


class TensorBoardLogger:
    """Event files under `<out_dir>/tensorboard` (`tensorboard --logdir <out_dir>`)."""

    def __init__(self, out_dir: Path) -> None:
        _import("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(out_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log(self, scalars: dict[str, float], step: int) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """One wandb run per training run: the run's config, then each evaluation's scalars at its step."""

    def __init__(self, out_dir: Path, project: str, name: str, config: dict[str, Any]) -> None:
        wandb = _import("wandb", "wandb")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, name=name, dir=str(out_dir), config=config)

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


def make_logger(kind: str, out_dir: Path | None, name: str, config: dict[str, Any],
                project: str = "rvq") -> MetricLogger | None:
    """The logger `kind` names (None for "none"); TensorBoard and wandb need an output folder."""
    if kind not in LOGGERS:
        raise ValueError(f"unknown logger {kind!r}; choose one of {LOGGERS}")
    if kind == "none":
        return None
    if out_dir is None:
        raise ValueError(f"--log-to {kind} needs an output folder (--out-dir)")
    if kind == "tensorboard":
        return TensorBoardLogger(out_dir)
    return WandbLogger(out_dir, project, name, config)
