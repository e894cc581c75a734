"""Observation preprocessing shared by training-data building and evaluation (one code path).

LIBERO renders come out upside down: the OpenVLA/OFT protocol rotates them 180° and resizes to
224×224 before the VLA's own processor sees them. The prompt is OpenVLA's.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut:"
POLICY_IMAGE_SIZE = 224


def openvla_prompt(instruction: str) -> str:
    """The OpenVLA prompt for one instruction (lower-cased, stripped, as the OFT evaluation does)."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
    return PROMPT_TEMPLATE.format(instruction=instruction.strip().lower())


def prepare_image(image: np.ndarray, rotate_180: bool = True, size: int = POLICY_IMAGE_SIZE) -> Image.Image:
    """`[H, W, 3]` uint8 render → rotated (180°) and resized (Lanczos) `size×size` RGB image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape [H, W, 3], got {list(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB, got dtype {image.dtype}")
    if rotate_180:
        image = image[::-1, ::-1]
    pil = Image.fromarray(np.ascontiguousarray(image))
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.LANCZOS)
    return pil
