"""Image and prompt preparation for a VLA, in the OpenVLA/OFT protocol. The steps that apply it to observations
(turning LIBERO's upside-down renders, resizing) are processor steps (`rvq.processors.observation`), declared by a
policy's bundle and covered by its feature identity; the extractor only reads what they give it.

Image methods (`IMAGE_TRANSFORMS`), applied after the 180° turn:
- `resize`: Lanczos resize to 224×224 (OpenVLA's evaluation).
- `oft`: what OpenVLA-OFT's LIBERO evaluation feeds models trained on its RLDS data: JPEG round trip (quality 95,
  TensorFlow's default; the training images were stored as JPEG), Lanczos resize, then the centre crop OFT models
  are trained with (90% of the area, `center_crop=True`) resized back. OFT does this with TensorFlow; here it is PIL
  (no TensorFlow dependency), so pixels can differ by a few levels from OFT's, not in kind.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut:"
POLICY_IMAGE_SIZE = 224
IMAGE_TRANSFORMS = ("resize", "oft")
OFT_JPEG_QUALITY = 95
OFT_CROP_AREA = 0.9


def openvla_prompt(instruction: str) -> str:
    """The OpenVLA prompt for one instruction (lower-cased, stripped, as the OFT evaluation does)."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
    return PROMPT_TEMPLATE.format(instruction=instruction.strip().lower())


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """`image` as an `[H, W, 3]` uint8 array, or an error naming what is wrong."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{what} must have shape [H, W, 3], got {list(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 RGB, got dtype {image.dtype}")
    return image


def resize_image(image: np.ndarray, size: int = POLICY_IMAGE_SIZE, method: str = "resize") -> np.ndarray:
    """`[H, W, 3]` uint8 → `[size, size, 3]` uint8 by `method` (see the module docstring); no rotation here."""
    if method not in IMAGE_TRANSFORMS:
        raise ValueError(f"unknown image transform {method!r}; choose one of {IMAGE_TRANSFORMS}")
    pil = Image.fromarray(np.ascontiguousarray(check_image(image)))
    if method == "oft":
        pil = _jpeg_round_trip(pil)
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.LANCZOS)
    if method == "oft":
        side = size * OFT_CROP_AREA**0.5
        lo = (size - side) / 2
        pil = pil.resize((size, size), Image.Resampling.BILINEAR, box=(lo, lo, lo + side, lo + side))
    return np.asarray(pil)


def _jpeg_round_trip(pil: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=OFT_JPEG_QUALITY)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
