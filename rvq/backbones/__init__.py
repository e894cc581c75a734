"""VLA feature extraction: one code path (preprocessing included) for training data and evaluation."""

from rvq.backbones.extractor import FeatureExtractor
from rvq.backbones.preprocess import PROMPT_TEMPLATE, openvla_prompt, prepare_image
from rvq.backbones.tiny import build_backbone, count_parameters, save_backbone

__all__ = [
    "FeatureExtractor",
    "PROMPT_TEMPLATE",
    "build_backbone",
    "count_parameters",
    "openvla_prompt",
    "prepare_image",
    "save_backbone",
]
