"""One way to name a feature source, for every command: a VLA (hub id or folder), or state features
(`state:<suite>` for a suite's layout, `state:<suite>+gripper` with the gripper-history block, or the path of a
`features.json` layout file)."""

from __future__ import annotations

from pathlib import Path

from rvq.backbones.extractor import FeatureExtractor
from rvq.backbones.state import FEATURES_FILE, StateFeatures

STATE_PREFIX = "state:"
GRIPPER_SUFFIX = "+gripper"


def load_feature_source(source: str, device: str = "auto", trust_remote_code: bool = False,
                        image_transform: str = "resize") -> FeatureExtractor | StateFeatures:
    """`state:<suite>` or a `features.json` → `StateFeatures`; anything else → `FeatureExtractor.from_pretrained`
    (`image_transform`: `rvq.backbones.preprocess.IMAGE_TRANSFORMS`; state features have no images)."""
    if source.startswith(STATE_PREFIX):
        suite = source[len(STATE_PREFIX):]
        gripper = suite.endswith(GRIPPER_SUFFIX)
        return StateFeatures.for_suite(suite[: -len(GRIPPER_SUFFIX)] if gripper else suite, gripper_phase=gripper)
    if Path(source).name == FEATURES_FILE:
        if not Path(source).is_file():
            raise FileNotFoundError(f"state-feature layout not found: {source}")
        return StateFeatures.load(source)
    return FeatureExtractor.from_pretrained(source, device=device, trust_remote_code=trust_remote_code,
                                            image_transform=image_transform)
