"""Write small demo files in LIBERO's HDF5 layout (what LIBERO's own `*_demo.hdf5` files hold).

    data/                      attrs: problem_info (JSON: language_instruction), env_args (JSON), bddl_file_name
    data/demo_i/actions        [T, 7] float64
    data/demo_i/obs/agentview_rgb, eye_in_hand_rgb   [T, S, S, 3] uint8
    data/demo_i/obs/joint_states [T, 7], gripper_states [T, 2], ee_pos [T, 3]
    data/demo_i/states         [T, 9] float64; rewards, dones [T]
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np


def smooth_trajectory(steps: int, rng: np.random.Generator, action_dim: int = 7) -> np.ndarray:
    """A smooth, teleoperation-like action sequence `[steps, action_dim]`; last dim is a ±1 gripper."""
    t = np.linspace(0, 1, steps)[:, None]
    freq = rng.uniform(0.5, 2.0, size=(1, action_dim - 1))
    phase = rng.uniform(0, 2 * np.pi, size=(1, action_dim - 1))
    amp = rng.uniform(0.2, 0.8, size=(1, action_dim - 1))
    motion = amp * np.sin(2 * np.pi * freq * t + phase) + 0.02 * rng.standard_normal((steps, action_dim - 1))
    gripper = np.where(t[:, 0] < rng.uniform(0.3, 0.7), -1.0, 1.0)[:, None]
    return np.concatenate([motion, gripper], axis=1)


def action_images(actions: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Images that show the action about to be taken: band `d` of the (upright) image has brightness
    `(a_d + 1) / 2`, plus a little noise; stored upside down, as LIBERO renders are. `[T, S, S, 3]` uint8."""
    steps, dims = actions.shape
    bands = np.array_split(np.arange(image_size), dims)
    image = np.zeros((steps, image_size, image_size, 3), dtype=np.float64)
    for d, rows in enumerate(bands):
        image[:, rows, :, :] = ((np.clip(actions[:, d], -1, 1) + 1) / 2 * 255)[:, None, None, None]
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)[:, ::-1, ::-1]


def write_libero_file(
    path: str | Path,
    instruction: str,
    num_demos: int = 3,
    steps: int = 40,
    seed: int = 0,
    image_size: int = 32,
    images: bool | str = True,
    action_dim: int = 7,
) -> list[np.ndarray]:
    """Write one task file; returns the actions written, one `[T, action_dim]` array per demo.

    images: False (none), True / "noise" (random pixels) or "action" (`action_images`: a learnable
    mapping from image to action, for Phase 2 tests).
    """
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"problem_name": "libero_tabletop_manipulation",
                                                 "domain_name": "robosuite", "language_instruction": instruction})
        data.attrs["env_args"] = json.dumps({"type": 1, "env_name": "Libero_Tabletop_Manipulation"})
        data.attrs["bddl_file_name"] = f"{path.stem}.bddl"
        for i in range(num_demos):
            n = steps + int(rng.integers(0, steps // 2 + 1))
            actions = smooth_trajectory(n, rng, action_dim)
            demo = data.create_group(f"demo_{i}")
            demo.attrs["num_samples"] = n
            demo.create_dataset("actions", data=actions)
            demo.create_dataset("states", data=rng.standard_normal((n, 9)))
            demo.create_dataset("rewards", data=np.zeros(n))
            demo.create_dataset("dones", data=np.eye(1, n, n - 1)[0])
            obs = demo.create_group("obs")
            obs.create_dataset("joint_states", data=rng.standard_normal((n, 7)))
            obs.create_dataset("gripper_states", data=rng.standard_normal((n, 2)))
            obs.create_dataset("ee_pos", data=rng.standard_normal((n, 3)))
            # a generator of its own, so that adding this key left every other value of these files unchanged
            obs.create_dataset("ee_ori", data=np.random.default_rng(10_000 + 100 * seed + i).standard_normal((n, 3)))
            if images:
                shape = (n, image_size, image_size, 3)
                if images == "action":
                    agentview = action_images(actions, image_size, rng)
                else:
                    agentview = rng.integers(0, 256, shape, dtype=np.uint8)
                obs.create_dataset("agentview_rgb", data=agentview)
                obs.create_dataset("eye_in_hand_rgb", data=rng.integers(0, 256, shape, dtype=np.uint8))
            written.append(actions)
    return written


def write_libero_folder(folder: str | Path, instructions: list[str], **kwargs) -> dict[str, list[np.ndarray]]:
    """One `<task>_demo.hdf5` per instruction (LIBERO naming); returns actions per file name."""
    out = {}
    for i, instruction in enumerate(instructions):
        name = instruction.replace(" ", "_") + "_demo.hdf5"
        out[name] = write_libero_file(Path(folder) / name, instruction, seed=i, **kwargs)
    return out


def write_mock_env_demos(folder: str | Path, suite: str, num_tasks: int, trials: int, steps: int = 60) -> list[Path]:
    """Demo files for `rvq.envs.MockLiberoEnv`, one per task: `rvq.expert.collect.collect_mock_demos`."""
    from rvq.expert.collect import collect_mock_demos

    return collect_mock_demos(suite, list(range(num_tasks)), trials, folder, steps)
