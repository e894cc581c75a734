"""Processors: the steps a policy runs around its model, declared by its bundle (observation steps → feature source
→ heads → tokenizer → action steps)."""

from rvq.processors.action import (BinarizeGripper, Unnormalize, binarize_gripper, gripper_flip, gripper_split,
                                   libero_action_steps)
from rvq.processors.features import (ObservationFeatures, default_observation_steps,
                                     observation_features)
from rvq.processors.observation import ResizeImage, RotateImage180, image_method, libero_observation_steps
from rvq.processors.pipeline import STEP_TYPES, Pipeline, register_step

__all__ = ["STEP_TYPES", "BinarizeGripper", "ObservationFeatures", "Pipeline", "ResizeImage", "RotateImage180",
           "Unnormalize", "binarize_gripper", "default_observation_steps", "gripper_flip", "gripper_split", "image_method",
           "libero_action_steps", "libero_observation_steps", "observation_features", "register_step"]
