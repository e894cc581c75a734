"""Pipeline: declaration round trip, and refusals of unknown steps and settings."""

from __future__ import annotations

import pytest

from rvq.processors import (STEP_TYPES, BinarizeGripper, Pipeline, ResizeImage, RotateImage180, Unnormalize,
                            libero_action_steps, libero_observation_steps)


def test_declaration_round_trip() -> None:
    steps = Pipeline([RotateImage180(("agentview", "wrist")), ResizeImage(128, "oft"), Unnormalize(), BinarizeGripper(True)])
    config = steps.to_config()
    assert config == [{"type": "rotate_180", "keys": ["agentview", "wrist"]},
                      {"type": "resize_image", "size": 128, "method": "oft", "keys": ["agentview"]},
                      {"type": "unnormalize"}, {"type": "binarize_gripper", "flip": True}]
    rebuilt = Pipeline.from_config(config)
    assert rebuilt == steps and rebuilt.steps[0].keys == ("agentview", "wrist")
    assert {"rotate_180", "resize_image", "unnormalize", "binarize_gripper"} <= set(STEP_TYPES)
    assert libero_observation_steps() != libero_observation_steps("oft")
    assert libero_action_steps(True).replace(BinarizeGripper, flip=False) == libero_action_steps(False)


def test_empty_pipeline_returns_its_input() -> None:
    value = {"x": 1}
    assert Pipeline()(value) is value and len(Pipeline()) == 0


@pytest.mark.parametrize("entries, match", [
    ({"type": "rotate_180"}, "a list of steps"),
    ([{"type": "flip_colours"}], "unknown type 'flip_colours'"),
    (["rotate_180"], "unknown type 'rotate_180'"),
    ([{"type": "resize_image", "width": 3}], r"unknown settings \['width'\]"),
    ([{"type": "unnormalize", "normalizer": None}], r"unknown settings \['normalizer'\]"),  # state, not a setting
    ([{"type": "resize_image", "method": "stretch"}], "unknown image transform 'stretch'"),
    ([{"type": "binarize_gripper", "flip": "yes"}], "flip must be true or false"),
])
def test_bad_declarations_are_refused(entries, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Pipeline.from_config(entries, "manifest")


def test_an_unregistered_step_is_refused() -> None:
    with pytest.raises(TypeError, match="not a registered processor step"):
        Pipeline([lambda obs: obs])
