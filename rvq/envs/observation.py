"""The observation contract every env here returns and every policy reads.

    {"agentview": [H, W, 3] uint8  (as rendered: LIBERO renders are upside down),
     "wrist":     [H, W, 3] uint8,
     "state":     [8] float32       (end-effector position 3, axis-angle 3, gripper joint positions 2),
     "instruction": str,
     "task_id": int                 (the suite's task index),
     "objects": {name: [7] float}   (position 3 + quaternion x, y, z, w of every object of the scene)}

Physics-only envs (no cameras) omit the images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STATE_DIM = 8
IMAGE_KEYS = ("agentview", "wrist")


def quat_to_axis_angle(quat_xyzw: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) → axis-angle 3-vector (robosuite's convention)."""
    q = np.asarray(quat_xyzw, dtype=np.float64).copy()
    q[3] = np.clip(q[3], -1.0, 1.0)
    den = np.sqrt(1.0 - q[3] * q[3])
    if np.isclose(den, 0.0):
        return np.zeros(3)
    return q[:3] * 2.0 * np.arccos(q[3]) / den


def object_poses(raw: dict[str, Any]) -> dict[str, np.ndarray]:
    """LIBERO's raw observation → `{object name: [7]}` from its `<name>_pos` / `<name>_quat` pairs (robot and
    relative `_to_robot0_eef` entries excluded)."""
    names = [k[: -len("_pos")] for k in raw if k.endswith("_pos") and not k.startswith("robot0_")
             and not k.endswith("_to_robot0_eef_pos")]
    return {name: np.concatenate([raw[f"{name}_pos"], raw[f"{name}_quat"]]).astype(np.float64)
            for name in names if f"{name}_quat" in raw}


def check_observation(obs: dict[str, Any], resolution: int | None = None, require_images: bool = True) -> None:
    """Raise naming the key when an observation breaks the contract (images optional for physics-only envs)."""
    image_keys = IMAGE_KEYS if require_images else tuple(k for k in IMAGE_KEYS if k in obs)
    for key in (*image_keys, "state", "instruction"):
        if key not in obs:
            raise KeyError(f"observation lacks {key!r}; has {sorted(obs)}")
    for key in image_keys:
        image = obs[key]
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"observation {key!r} must be [H, W, 3] uint8, got {getattr(image, 'dtype', type(image))} "
                             f"{list(getattr(image, 'shape', []))}")
        if resolution is not None and image.shape[:2] != (resolution, resolution):
            raise ValueError(f"observation {key!r} is {image.shape[:2]}, expected {resolution}x{resolution}")
    state = np.asarray(obs["state"])
    if state.shape != (STATE_DIM,) or not np.isfinite(state).all():
        raise ValueError(f"observation 'state' must be {STATE_DIM} finite values, got shape {list(state.shape)}")
    if not isinstance(obs["instruction"], str) or not obs["instruction"]:
        raise ValueError("observation 'instruction' must be a non-empty string")
