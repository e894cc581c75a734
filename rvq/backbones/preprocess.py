"""Observation preprocessing shared by training-data building and evaluation (one code path).

LIBERO renders come out upside down: the OpenVLA/OFT protocol rotates them 180° and resizes to
224×224 before the VLA's own processor sees them. The prompt is OpenVLA's.

Image transforms (`IMAGE_TRANSFORMS`):
- `resize`: rotate, Lanczos resize (OpenVLA's evaluation).
- `oft`: what OpenVLA-OFT's LIBERO evaluation feeds models trained on its RLDS data: rotate, JPEG round trip
  (quality 95, TensorFlow's default; the training images were stored as JPEG), Lanczos resize, then the centre crop
  OFT models are trained with (90% of the area, `center_crop=True`) resized back. OFT does this with TensorFlow;
  here it is PIL (no TensorFlow dependency), so pixels can differ by a few levels from OFT's, not in kind.
"""

from __future__ import annotations

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


def prepare_image(image: np.ndarray, rotate_180: bool = True, size: int = POLICY_IMAGE_SIZE,
                  transform: str = "resize") -> Image.Image:
    """`[H, W, 3]` uint8 render → rotated (180°) and resized (Lanczos) `size×size` RGB image (`transform`: see the
    module docstring)."""
    if transform not in IMAGE_TRANSFORMS:
        raise ValueError(f"unknown image transform {transform!r}; choose one of {IMAGE_TRANSFORMS}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape [H, W, 3], got {list(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB, got dtype {image.dtype}")
    if rotate_180:
        image = image[::-1, ::-1]
    pil = Image.fromarray(np.ascontiguousarray(image))
    if transform == "oft":
        pil = _jpeg_round_trip(pil)
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.LANCZOS)
    if transform == "oft":
        side = size * OFT_CROP_AREA**0.5
        lo = (size - side) / 2
        pil = pil.resize((size, size), Image.Resampling.BILINEAR, box=(lo, lo, lo + side, lo + side))
    return pil


def _jpeg_round_trip(pil: Image.Image) -> Image.Image:
    import io

    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=OFT_JPEG_QUALITY)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
