"""Device selection: `auto` means CUDA when available, else CPU."""

from __future__ import annotations

import re

import torch


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(name: str) -> str:
    """`name` if it names a device rvq runs on (auto, cpu, cuda, cuda:N), else a ValueError naming it. Whether the
    device is present is checked when a job starts (`resolve_device`), so a run can be planned on another machine."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def available_devices() -> list[str]:
    """Devices to measure side by side: CPU, plus CUDA when present."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
