"""Observation steps: the 180° turn and the resize methods, on copies, with errors that name the image."""

from __future__ import annotations

import numpy as np
import pytest

from rvq.processors import Pipeline, ResizeImage, RotateImage180, image_method, libero_observation_steps


def test_rotate_turns_the_named_image_and_leaves_the_input_alone() -> None:
    image = np.zeros((256, 256, 3), dtype=np.uint8)
    image[0, 0] = 255  # top-left marker moves to bottom-right after the 180° turn
    obs = {"agentview": image, "instruction": "go", "state": np.ones(8)}
    out = RotateImage180()(obs)
    assert out["agentview"][-1, -1, 0] == 255 and out["agentview"][0, 0, 0] == 0
    assert image[0, 0, 0] == 255 and obs["agentview"] is image  # the input observation is not changed
    assert out["instruction"] == "go" and out["state"] is obs["state"]


def test_libero_steps_turn_then_resize() -> None:
    image = np.zeros((256, 256, 3), dtype=np.uint8)
    image[:16, :16] = 255
    out = libero_observation_steps()({"agentview": image})["agentview"]
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert out[-1, -1, 0] > 200 and out[0, 0, 0] < 20
    assert image_method(libero_observation_steps("oft")) == "oft" and image_method(libero_observation_steps()) == "resize"
    assert image_method(Pipeline([RotateImage180()])) is None


def test_oft_crops_the_centre() -> None:
    # A 256-px render, grey with a dark frame 4 px wide: inside the 2.6% margin per side that OFT's crop removes.
    image = np.full((256, 256, 3), 128, dtype=np.uint8)
    image[:4], image[-4:], image[:, :4], image[:, -4:] = 0, 0, 0, 0
    plain = ResizeImage(224, "resize")({"agentview": image})["agentview"].astype(int)
    oft = ResizeImage(224, "oft")({"agentview": image})["agentview"].astype(int)
    assert oft.shape == (224, 224, 3)
    assert plain[:2].max() < 20 and oft[:3].min() > 100  # the frame is cropped away
    assert abs(oft[112, 112] - 128).max() <= 3  # the centre survives the JPEG round trip within a few levels


@pytest.mark.parametrize("obs, error, match", [
    ({"instruction": "go"}, KeyError, r"no \['agentview'\] image"),
    ({"agentview": np.zeros((8, 8, 3), np.float32)}, ValueError, "observation 'agentview' must be uint8"),
    ({"agentview": np.zeros((8, 8), np.uint8)}, ValueError, r"must have shape \[H, W, 3\]"),
])
def test_bad_observations_are_refused(obs, error, match: str) -> None:
    for step in (RotateImage180(), ResizeImage()):
        with pytest.raises(error, match=match):
            step(obs)
