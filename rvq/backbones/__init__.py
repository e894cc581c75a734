"""Feature sources: a VLA's features from prepared images and the prompt, or the simulator state's. The observation
steps that prepare images are `rvq.processors`; `rvq.processors.ObservationFeatures` runs both, for training data
and evaluation alike."""

from rvq.backbones.extractor import FeatureExtractor
from rvq.backbones.preprocess import PROMPT_TEMPLATE, openvla_prompt, resize_image
from rvq.backbones.tiny import build_backbone, count_parameters, save_backbone

__all__ = [
    "FeatureExtractor",
    "PROMPT_TEMPLATE",
    "build_backbone",
    "count_parameters",
    "openvla_prompt",
    "resize_image",
    "save_backbone",
]
