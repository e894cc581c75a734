"""What a token policy's heads read: observation steps, then a feature source (a VLA `FeatureExtractor` or
`StateFeatures`), giving `[B, D]`. Training data and evaluation both go through this object, and its identity,
which heads record, covers the steps as well as the source: heads trained on turned images are refused on
unturned ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch

from rvq.processors.observation import libero_observation_steps
from rvq.processors.pipeline import Pipeline


def _reads_images(source: Any) -> bool:
    from rvq.backbones.state import StateFeatures  # here: rvq.backbones imports the extractor, which imports this module

    return not isinstance(source, StateFeatures)


class ObservationFeatures:
    """`steps` (an observation `Pipeline`) → `source.features` → `[B, D]` float32."""

    def __init__(self, source: Any, steps: Pipeline) -> None:
        if isinstance(source, ObservationFeatures):
            raise TypeError("source is already an ObservationFeatures; give its .source")
        if not isinstance(steps, Pipeline):
            raise TypeError(f"steps must be a rvq.processors.Pipeline, got {type(steps).__name__}")
        if len(steps) and not _reads_images(source):
            raise ValueError(f"state features read no images; observation steps {steps.to_config()} apply to VLA "
                             "feature sources")
        self.source, self.steps = source, steps
        self._identity: str | None = None

    @property
    def reads_images(self) -> bool:
        """Whether the source looks at camera images (a VLA) rather than simulator state."""
        return _reads_images(self.source)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def feature_dim(self) -> int:
        return int(self.source.feature_dim)

    @property
    def device(self) -> torch.device:
        return self.source.device

    def features(self, observations: Sequence[dict[str, Any]]) -> torch.Tensor:
        """Observations (the env contract) → `[B, D]`: each through the steps, then the source."""
        return self.source.features([self.steps(obs) for obs in observations])

    def describe(self) -> dict[str, Any]:
        """The source's description with the observation steps that run before it."""
        return {**self.source.describe(), **({"observation_steps": self.steps.to_config()} if len(self.steps) else {})}

    @property
    def identity(self) -> str:
        """The source's identity when no step runs (state features), else a hash of it and the steps."""
        if self._identity is None:
            self._identity = self.source.identity
            if len(self.steps):
                blob = json.dumps({"source": self.source.identity, "observation_steps": self.steps.to_config()},
                                  sort_keys=True)
                self._identity = hashlib.sha256(blob.encode()).hexdigest()
        return self._identity


def default_observation_steps(source: Any, image_transform: str = "resize") -> Pipeline:
    """LIBERO's observation steps for a source: the 180° turn and resize for a VLA, none for state features."""
    return libero_observation_steps(image_transform) if _reads_images(source) else Pipeline()


def observation_features(source: Any, steps: Pipeline | None = None) -> ObservationFeatures:
    """`source` as heads read it: an `ObservationFeatures` as it is; a bare source with `steps`, by default
    `default_observation_steps` (so data built from a bare extractor and a policy loaded from a bundle agree)."""
    if isinstance(source, ObservationFeatures):
        if steps is not None and steps != source.steps:
            raise ValueError(f"the features already run steps {source.steps.to_config()}, not {steps.to_config()}")
        return source
    return ObservationFeatures(source, default_observation_steps(source) if steps is None else steps)
