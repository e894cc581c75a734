"""Features from the simulator's low-dimensional state, in the role of the VLA extractor: a policy that reads
robot proprioception and object poses runs physics only (no cameras) and learns on a CPU in minutes.

One feature vector `[D]` has a fixed layout per suite, so one head serves every task of the suite:

    proprio    [8]   end-effector position 3, axis-angle 3, gripper joints 2 (the observation's "state")
    per object [11]  one slot per name of `SUITE_OBJECTS[suite]`, in that order:
                     present 1, world position 3, position minus the end effector's 3, quaternion (x, y, z, w) 4
                     (an object the task's scene does not have: present 0 and zeros; that is the layout)
    task       [T]   one-hot of the suite's task index (no language model)

An observation carries `"state"`, `"task_id"` and `"objects"` (name → `[7]` position + quaternion, as LIBERO's
`<name>_pos` / `<name>_quat`). An object the task's scene has but the observation lacks, an object the layout does
not know, a wrong shape or a non-finite value raises: nothing is filled in.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from rvq.envs.observation import STATE_DIM

FEATURES_FILE = "features.json"  # in a checkpoint folder, in place of backbone/
LAYOUT_VERSION = 1
SLOT_DIM = 11
POSE_DIM = 7

# The objects of each task's scene, from the suites' BDDL files (hf-libero 0.1.4); the integration suite checks
# them against the simulator's observations.
_OBJECT_SCENES = {
    0: ("alphabet_soup_1", "basket_1", "butter_1", "cream_cheese_1", "milk_1", "salad_dressing_1", "tomato_sauce_1"),
    1: ("alphabet_soup_1", "basket_1", "butter_1", "cream_cheese_1", "milk_1", "orange_juice_1", "tomato_sauce_1"),
    2: ("alphabet_soup_1", "basket_1", "cream_cheese_1", "ketchup_1", "milk_1", "salad_dressing_1", "tomato_sauce_1"),
    3: ("alphabet_soup_1", "basket_1", "bbq_sauce_1", "chocolate_pudding_1", "cream_cheese_1", "ketchup_1",
        "salad_dressing_1"),
    4: ("alphabet_soup_1", "basket_1", "bbq_sauce_1", "cream_cheese_1", "ketchup_1", "milk_1", "salad_dressing_1"),
    5: ("basket_1", "bbq_sauce_1", "butter_1", "chocolate_pudding_1", "milk_1", "orange_juice_1", "tomato_sauce_1"),
    6: ("basket_1", "bbq_sauce_1", "butter_1", "chocolate_pudding_1", "ketchup_1", "orange_juice_1", "tomato_sauce_1"),
    7: ("basket_1", "butter_1", "chocolate_pudding_1", "cream_cheese_1", "milk_1", "orange_juice_1", "tomato_sauce_1"),
    8: ("alphabet_soup_1", "basket_1", "bbq_sauce_1", "chocolate_pudding_1", "ketchup_1", "orange_juice_1",
        "salad_dressing_1"),
    9: ("basket_1", "bbq_sauce_1", "butter_1", "chocolate_pudding_1", "ketchup_1", "orange_juice_1", "salad_dressing_1"),
}
_SPATIAL_SCENE = ("akita_black_bowl_1", "akita_black_bowl_2", "cookies_1", "glazed_rim_porcelain_ramekin_1", "plate_1")
SCENE_OBJECTS: dict[str, dict[int, tuple[str, ...]]] = {
    "libero_object": _OBJECT_SCENES,
    "libero_spatial": {task: _SPATIAL_SCENE for task in range(10)},
}
SUITE_OBJECTS = {suite: tuple(sorted({n for names in scenes.values() for n in names}))
                 for suite, scenes in SCENE_OBJECTS.items()}


class StateFeatures:
    """Maps observations → features `[B, D]` float32 (see the module docstring for the layout)."""

    device = torch.device("cpu")

    def __init__(self, name: str, objects: Sequence[str], scenes: dict[int, Sequence[str]]) -> None:
        """`objects`: the slot order; `scenes`: task index → the objects its scene has (each in `objects`)."""
        self.name, self.objects = name, tuple(objects)
        self.scenes = {int(task): tuple(names) for task, names in scenes.items()}
        if sorted(self.scenes) != list(range(len(self.scenes))):
            raise ValueError(f"{name}: scenes must be given for tasks 0..N-1, got {sorted(self.scenes)}")
        unknown = sorted({n for names in self.scenes.values() for n in names} - set(self.objects))
        if unknown:
            raise ValueError(f"{name}: scene objects {unknown} have no slot in the layout")
        self.num_tasks = len(self.scenes)
        self.feature_dim = STATE_DIM + SLOT_DIM * len(self.objects) + self.num_tasks
        self._identity: str | None = None

    @classmethod
    def for_suite(cls, suite: str) -> "StateFeatures":
        if suite not in SCENE_OBJECTS:
            raise ValueError(f"no state-feature layout for {suite!r}; layouts exist for {sorted(SCENE_OBJECTS)}")
        return cls(suite, SUITE_OBJECTS[suite], SCENE_OBJECTS[suite])

    def describe(self) -> dict[str, Any]:
        """What determines the features: the layout (slots, scenes, task count) and its version."""
        return {"kind": "state", "version": LAYOUT_VERSION, "name": self.name, "objects": list(self.objects),
                "scenes": {str(t): list(n) for t, n in self.scenes.items()}, "feature_dim": self.feature_dim}

    @property
    def identity(self) -> str:
        """Hash of `describe()`: heads trained on one layout are refused by another."""
        if self._identity is None:
            self._identity = hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()
        return self._identity

    def save(self, folder: str | Path) -> Path:
        """Write `features.json` (the layout) into a checkpoint folder."""
        path = Path(folder) / FEATURES_FILE
        path.write_text(json.dumps(self.describe(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "StateFeatures":
        """Read a `features.json` written by `save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable state-feature layout ({exc})") from exc
        if not isinstance(data, dict) or data.get("kind") != "state":
            raise ValueError(f"{path}: expected a state-feature layout (kind 'state'), got {str(data)[:200]}")
        if data.get("version") != LAYOUT_VERSION:
            raise ValueError(f"{path}: layout version {data.get('version')}, this rvq reads {LAYOUT_VERSION}")
        missing = [k for k in ("name", "objects", "scenes", "feature_dim") if k not in data]
        if missing:
            raise ValueError(f"{path}: state-feature layout lacks {missing}")
        removed = sorted({"gripper_phase", "goals"} & set(data))
        if removed:
            raise ValueError(f"{path}: the layout has {removed}, options removed from rvq (measured and not adopted: "
                             "docs/decisions.md); retrain on the plain layout")
        features = cls(data["name"], data["objects"], {int(t): n for t, n in data["scenes"].items()})
        if features.feature_dim != data["feature_dim"]:
            raise ValueError(f"{path}: feature_dim {data['feature_dim']} does not match its layout "
                             f"({features.feature_dim})")
        return features

    def vector(self, obs: dict[str, Any]) -> np.ndarray:
        """One observation → `[D]` float32."""
        for key in ("state", "task_id", "objects"):
            if key not in obs:
                raise KeyError(f"observation lacks {key!r}, which state features read; has {sorted(obs)}")
        task = obs["task_id"]
        if isinstance(task, bool) or not isinstance(task, (int, np.integer)) or task not in self.scenes:
            raise ValueError(f"observation task_id {task!r} is not a task of {self.name} (0..{self.num_tasks - 1})")
        state = _finite(obs["state"], (STATE_DIM,), "state")
        poses = obs["objects"]
        scene = self.scenes[int(task)]
        missing = [n for n in scene if n not in poses]
        if missing:
            raise KeyError(f"{self.name} task {task}: observation lacks the poses of {missing}")
        foreign = sorted(set(poses) - set(scene))
        if foreign:
            raise ValueError(f"{self.name} task {task}: observation has objects {foreign} that this task's scene "
                             "does not have in the layout")
        slots = np.zeros((len(self.objects), SLOT_DIM), dtype=np.float64)
        for i, name in enumerate(self.objects):
            if name in poses:
                pose = _finite(poses[name], (POSE_DIM,), f"objects[{name!r}]")
                slots[i] = np.concatenate([[1.0], pose[:3], pose[:3] - state[:3], pose[3:]])
        task_onehot = np.zeros(self.num_tasks)
        task_onehot[int(task)] = 1.0
        parts = [state, slots.reshape(-1), task_onehot]
        return np.concatenate(parts).astype(np.float32)

    def features(self, observations: Sequence[dict[str, Any]]) -> torch.Tensor:
        """Observations → `[B, D]` float32."""
        return torch.from_numpy(np.stack([self.vector(obs) for obs in observations]))


def _finite(values: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"observation {name} must be real numbers, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"observation {name} must have shape {list(shape)}, got {list(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"observation {name} contains NaN/inf: {array.tolist()}")
    return array.astype(np.float64)
