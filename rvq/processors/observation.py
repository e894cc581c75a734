"""Observation steps: what a policy does to an observation before its feature source reads it. Each takes and
returns an observation dict (the env contract, `rvq.envs.observation`) and never changes its input.

LIBERO's renders come out upside down; the OpenVLA/OFT protocol turns them 180° and resizes them to 224×224
(`libero_observation_steps`). State features read no images and run no observation step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rvq.backbones.preprocess import IMAGE_TRANSFORMS, POLICY_IMAGE_SIZE, check_image, resize_image
from rvq.processors.pipeline import DataclassStep, Pipeline, register_step

IMAGE_KEYS = ("agentview",)


def _images(obs: dict[str, Any], keys: tuple[str, ...], step: str) -> dict[str, np.ndarray]:
    missing = [k for k in keys if k not in obs]
    if missing:
        raise KeyError(f"{step}: the observation has no {missing} image (keys: {sorted(obs)})")
    return {k: check_image(obs[k], f"{step}: observation {k!r}") for k in keys}


@register_step("rotate_180")
@dataclass(frozen=True)
class RotateImage180(DataclassStep):
    """Turn the images under `keys` by 180° (LIBERO renders upside down)."""

    keys: tuple[str, ...] = IMAGE_KEYS

    def __call__(self, obs: dict[str, Any]) -> dict[str, Any]:
        turned = {k: np.ascontiguousarray(image[::-1, ::-1]) for k, image in _images(obs, self.keys, "rotate_180").items()}
        return {**obs, **turned}


@register_step("resize_image")
@dataclass(frozen=True)
class ResizeImage(DataclassStep):
    """Resize the images under `keys` to `[size, size, 3]` by `method` (`rvq.backbones.preprocess`: resize, oft)."""

    size: int = POLICY_IMAGE_SIZE
    method: str = "resize"
    keys: tuple[str, ...] = IMAGE_KEYS

    def __post_init__(self) -> None:
        if self.method not in IMAGE_TRANSFORMS:
            raise ValueError(f"unknown image transform {self.method!r}; choose one of {IMAGE_TRANSFORMS}")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"resize_image: size must be a positive integer, got {self.size!r}")

    def __call__(self, obs: dict[str, Any]) -> dict[str, Any]:
        images = _images(obs, self.keys, "resize_image")
        return {**obs, **{k: resize_image(image, self.size, self.method) for k, image in images.items()}}


def libero_observation_steps(image_transform: str = "resize") -> Pipeline:
    """LIBERO renders for a VLA: turned 180°, then resized to 224×224 by `image_transform` (resize or oft)."""
    return Pipeline([RotateImage180(), ResizeImage(POLICY_IMAGE_SIZE, image_transform)])


def image_method(steps: Pipeline) -> str | None:
    """The resize method the steps declare (None: they resize no image)."""
    methods = {step.method for step in steps.find(ResizeImage)}
    if len(methods) > 1:
        raise ValueError(f"observation steps resize with more than one method: {sorted(methods)}")
    return methods.pop() if methods else None
