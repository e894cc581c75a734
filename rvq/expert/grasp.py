"""Grasp planning from the simulator's geometry: which gripper yaw (and which rim point, for bowls)
keeps the Panda hand and fingers clear of neighbouring objects and fixture walls.

Every collision geom is an oriented box (MuJoCo's per-geom bounding box in the geom frame). The
gripper is a few boxes around the grip site, measured on the Panda gripper of robosuite 1.4 with the
fingers open, in a frame whose y axis is the closing direction and whose z axis points up.
A candidate grasp is scored by the smallest signed distance from sampled gripper points to any
obstacle; the first candidate (smallest yaw) clear by `CLEARANCE` wins, else the clearest one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (lo, hi) in the grip-site frame: x across the fingers, y the closing direction, z up (metres)
GRIPPER_BOXES = (
    (np.array([-0.035, -0.105, 0.024]), np.array([0.035, 0.105, 0.126])),  # hand (palm and wrist plate)
    (np.array([-0.012, -0.068, -0.013]), np.array([0.012, -0.032, 0.049])),  # finger 1, open
    (np.array([-0.012, 0.032, -0.013]), np.array([0.012, 0.068, 0.049])),  # finger 2, open
)
# How deep the grip site may go below an object's top (its geoms' highest point) before the hand's palm meets it: the
# hand came to rest on the top of libero_object's salad dressing bottle with the grip site 3.6 cm below the top;
# 3.0 leaves the palm clear. A grasp planned deeper pushed on the object until a phase timed out.
HAND_REACH = 0.030
FINGER_GAP = 0.074  # widest object the open pads take (pads' inner faces are 7.6 cm apart)
CLEARANCE = 0.008  # metres of clearance that count as clear
YAWS = np.deg2rad([0, 15, -15, 30, -30, 45, -45, 60, -60, 75, -75, 90])
BOWL_RIM_OFFSET = 0.055  # grip-site distance from a bowl's centre to its wall, at rim height
ROBOT_PREFIXES = ("robot0_", "gripper0_", "mount0_")


@dataclass(frozen=True)
class Boxes:
    """N oriented boxes: centres [N, 3], rotations [N, 3, 3] (box frame → world), half sizes [N, 3]."""

    center: np.ndarray
    rotation: np.ndarray
    half: np.ndarray

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance of each point [P, 3] to the nearest box (negative inside): [P]."""
        if len(self.center) == 0:
            return np.full(len(points), np.inf)
        local = np.einsum("nji,pnj->pni", self.rotation, points[:, None, :] - self.center[None])  # [P, N, 3]
        q = np.abs(local) - self.half[None]
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        inside = np.minimum(q.max(-1), 0.0)
        return (outside + inside).min(-1)


def _collides(model, geom: int) -> bool:
    return bool(model.geom_contype[geom] or model.geom_conaffinity[geom])


def _body_root(model, body: int, roots: set[int]) -> int | None:
    while body not in roots and body != 0:
        body = model.body_parentid[body]
    return body if body in roots else None


def geom_boxes(sim, skip_bodies: set[int], min_top: float) -> Boxes:
    """Collision geoms as oriented boxes, except the robot's, those under `skip_bodies` (the object in
    hand) and supports whose top lies below `min_top` (table, floor, drawer bottom under the grasp)."""
    model, data = sim.model, sim.data
    centers, rotations, halves = [], [], []
    for geom in range(model.ngeom):
        if not _collides(model, geom):
            continue
        body = int(model.geom_bodyid[geom])
        if (model.body_id2name(body) or "").startswith(ROBOT_PREFIXES):
            continue
        if skip_bodies and _body_root(model, body, skip_bodies) is not None:
            continue
        rotation = data.geom_xmat[geom].reshape(3, 3)
        center = data.geom_xpos[geom] + rotation @ model.geom_aabb[geom][:3]
        half = model.geom_aabb[geom][3:]
        top = center[2] + np.abs(rotation[2]) @ half
        if top < min_top:
            continue
        centers.append(center)
        rotations.append(rotation)
        halves.append(half)
    if not centers:
        return Boxes(np.zeros((0, 3)), np.zeros((0, 3, 3)), np.zeros((0, 3)))
    return Boxes(np.array(centers), np.array(rotations), np.array(halves))


def object_points(sim, body: int, collision_only: bool = True) -> np.ndarray:
    """Corners [8G, 3] of the boxes of one object's geoms (its body and children); collision geoms
    only unless `collision_only` is False (then visual geoms too)."""
    model, data = sim.model, sim.data
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    corners = []
    for geom in range(model.ngeom):
        if collision_only and not _collides(model, geom):
            continue
        if _body_root(model, int(model.geom_bodyid[geom]), {body}) is None:
            continue
        rotation = data.geom_xmat[geom].reshape(3, 3)
        local = signs * model.geom_aabb[geom][3:] + model.geom_aabb[geom][:3]
        corners.append(local @ rotation.T + data.geom_xpos[geom])
    if not corners:
        kind = "collision geoms" if collision_only else "geoms"
        raise ValueError(f"body {model.body_id2name(body)!r} has no {kind} in the simulation")
    return np.concatenate(corners)


def yaw_axes(yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """(across, closing) horizontal unit vectors [3] of a gripper turned by `yaw` about world z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([c, s, 0.0]), np.array([-s, c, 0.0])


def gripper_points(grasp: np.ndarray, yaw: float, step: float = 0.012) -> np.ndarray:
    """Points [P, 3] filling the gripper boxes with the grip site at `grasp` turned by `yaw`."""
    across, closing = yaw_axes(yaw)
    frame = np.stack([across, closing, np.array([0.0, 0.0, 1.0])], axis=1)  # columns: gripper axes in world
    points = []
    for lo, hi in GRIPPER_BOXES:
        axes = [np.linspace(a, b, max(2, int(np.ceil((b - a) / step)) + 1)) for a, b in zip(lo, hi, strict=True)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        points.append(grid @ frame.T + grasp)
    return np.concatenate(points)


@dataclass(frozen=True)
class Grasp:
    """The chosen grasp: grip-site position [3], yaw about world z, offset [3] from the object's
    position to the grip site (reused at the place), and the clearance it was chosen with."""

    position: np.ndarray
    yaw: float
    offset: np.ndarray
    clearance: float


def plan_grasp(sim, body: int, center: np.ndarray, grasp_z: float, bowl: bool) -> Grasp:
    """Choose the gripper yaw (and, for a bowl, the point of its rim) with the most room around it.

    Objects are taken across their narrowest side that fits the open fingers; bowls by the wall
    (the fingers straddle it), at any point of the rim."""
    obstacles = geom_boxes(sim, {body}, min_top=grasp_z - 0.005)
    if not bowl:
        points = object_points(sim, body)
    candidates = []
    for yaw in YAWS:
        across, closing = yaw_axes(yaw)
        if bowl:
            offsets = [sign * BOWL_RIM_OFFSET * closing for sign in (1.0, -1.0)]
        else:
            width = np.ptp(points @ closing)
            if width > FINGER_GAP:
                continue
            offsets = [np.zeros(3)]
        for offset in offsets:
            grasp = np.r_[center[:2] + offset[:2], grasp_z]
            clearance = float(obstacles.distance(gripper_points(grasp, yaw)).min())
            candidates.append(Grasp(grasp, float(yaw), offset, clearance))
    if not candidates:
        raise NotImplementedError(
            f"object {sim.model.body_id2name(body)!r} is wider than the open gripper ({FINGER_GAP} m) at every yaw"
        )
    for candidate in candidates:
        if candidate.clearance >= CLEARANCE:
            return candidate
    return max(candidates, key=lambda c: c.clearance)


def rotation_z(yaw: float) -> np.ndarray:
    """Rotation [3, 3] by `yaw` radians about world z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
