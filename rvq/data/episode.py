"""One demonstration episode, whatever file it was read from (robomimic / LIBERO HDF5: `rvq.data.episodes`; a
LeRobot dataset: `rvq.data.lerobot`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ARM_DIM = 7


@dataclass(frozen=True)
class Episode:
    """One demonstration (or one arm of a multi-arm demonstration).

    actions: `[T, 7]` float32 raw env units. `arm` is the arm index for split multi-arm demos, else None.
    """

    actions: np.ndarray
    source: str
    demo: str
    task_id: int
    instruction: str
    arm: int | None = None
    obs_keys: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        arm = "" if self.arm is None else f"/arm{self.arm}"
        return f"{self.source}:{self.demo}{arm}"

    @property
    def group(self) -> str:
        """Identifier shared by all arms of one demonstration (the unit of train/val splits)."""
        return f"{self.source}:{self.demo}"

    def __len__(self) -> int:
        return int(self.actions.shape[0])
