"""One way to name a feature source, for every command: a VLA (hub id or folder), or state features
(`state:<suite>` for a suite's layout, or the path of a `features.json` layout file)."""

from __future__ import annotations

from pathlib import Path

from rvq.backbones.extractor import FeatureExtractor
from rvq.backbones.state import FEATURES_FILE, StateFeatures
from rvq.processors import ObservationFeatures, Pipeline, default_observation_steps

STATE_PREFIX = "state:"


def load_source(source: str, device: str = "auto", trust_remote_code: bool = False) -> FeatureExtractor | StateFeatures:
    """`state:<suite>` or a `features.json` → `StateFeatures`; anything else → `FeatureExtractor.from_pretrained`.
    The bare source: it reads observations as they are given (no observation steps)."""
    if source.startswith(STATE_PREFIX):
        return StateFeatures.for_suite(source[len(STATE_PREFIX):])
    if Path(source).name == FEATURES_FILE:
        if not Path(source).is_file():
            raise FileNotFoundError(f"state-feature layout not found: {source}")
        return StateFeatures.load(source)
    return FeatureExtractor.from_pretrained(source, device=device, trust_remote_code=trust_remote_code)


def load_feature_source(source: str, device: str = "auto", trust_remote_code: bool = False,
                        image_transform: str = "resize", steps: Pipeline | None = None) -> ObservationFeatures:
    """The source as heads read it: `steps` (default: LIBERO's 180° turn and resize by `image_transform`,
    `rvq.backbones.preprocess.IMAGE_TRANSFORMS`, for a VLA; none for state features, which read no images) →
    the source (`load_source`)."""
    bare = load_source(source, device, trust_remote_code)
    if isinstance(bare, StateFeatures) and image_transform != "resize":
        raise ValueError(f"{source}: state features read no images; image transform {image_transform!r} applies to VLAs")
    return ObservationFeatures(bare, default_observation_steps(bare, image_transform) if steps is None else steps)
