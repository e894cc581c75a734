"""Grasp planning on a hand-built scene of boxes (the MuJoCo arrays the planner reads, no simulator)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from rvq.expert.grasp import CLEARANCE, Boxes, geom_boxes, gripper_points, plan_grasp, rotation_z, yaw_axes


def _scene(boxes: list[tuple[str, tuple[float, float, float], tuple[float, float, float]]]):
    """A fake `sim` whose geom i is an axis-aligned box (centre, half size) on its own body i + 1."""
    names = ["world"] + [name for name, _, _ in boxes]
    model = SimpleNamespace(
        ngeom=len(boxes),
        geom_contype=np.ones(len(boxes), dtype=int),
        geom_conaffinity=np.ones(len(boxes), dtype=int),
        geom_bodyid=np.arange(1, len(boxes) + 1),
        body_parentid=np.zeros(len(names), dtype=int),
        geom_aabb=np.array([[0.0, 0.0, 0.0, *half] for _, _, half in boxes]),
        body_id2name=lambda i: names[i],
    )
    data = SimpleNamespace(
        geom_xpos=np.array([center for _, center, _ in boxes], dtype=np.float64),
        geom_xmat=np.tile(np.eye(3).reshape(1, 9), (len(boxes), 1)),
    )
    return SimpleNamespace(model=model, data=data)


TABLE = ("table", (0.0, 0.0, -0.05), (1.0, 1.0, 0.05))
CHEESE = ("cheese", (0.0, 0.0, 0.01), (0.042, 0.022, 0.01))  # 8.4 × 4.4 × 2 cm, long along x


def test_box_distance_is_signed() -> None:
    boxes = Boxes(np.zeros((1, 3)), rotation_z(np.pi / 4)[None], np.array([[0.1, 0.1, 0.1]]))
    inside, outside = np.array([[0.0, 0.0, 0.05]]), np.array([[0.0, 0.0, 0.3]])
    assert boxes.distance(inside)[0] == pytest.approx(-0.05)
    assert boxes.distance(outside)[0] == pytest.approx(0.2)
    # turned 45°: the corner lies along x at 0.1·√2
    assert boxes.distance(np.array([[0.2, 0.0, 0.0]]))[0] == pytest.approx(0.2 - 0.1 * np.sqrt(2))


def test_gripper_points_turn_with_yaw() -> None:
    across, closing = yaw_axes(np.pi / 2)
    np.testing.assert_allclose(closing, [-1.0, 0.0, 0.0], atol=1e-12)
    straight, turned = gripper_points(np.zeros(3), 0.0), gripper_points(np.zeros(3), np.pi / 2)
    assert np.ptp(straight[:, 1]) == pytest.approx(0.21) and np.ptp(turned[:, 0]) == pytest.approx(0.21)


def test_supports_below_the_grasp_and_the_object_are_not_obstacles() -> None:
    sim = _scene([TABLE, CHEESE, ("wall", (0.3, 0.0, 0.1), (0.01, 0.2, 0.1))])
    boxes = geom_boxes(sim, skip_bodies={2}, min_top=0.005)
    np.testing.assert_allclose(boxes.center, [[0.3, 0.0, 0.1]])


def test_free_object_keeps_the_straight_yaw() -> None:
    grasp = plan_grasp(_scene([TABLE, CHEESE]), body=2, center=np.zeros(3), grasp_z=0.01, bowl=False)
    assert grasp.yaw == 0.0 and grasp.clearance >= CLEARANCE
    np.testing.assert_allclose(grasp.position, [0.0, 0.0, 0.01])


def test_a_tall_neighbour_turns_the_hand_away() -> None:
    # a bottle 9 cm from the cheese along the closing direction, off to +x: the straight hand (±10.5 cm)
    # hits it; only ±15° keep the cheese's 8.4 cm side out of the fingers, and −15° swings the hand clear
    bottle = ("bottle", (0.05, -0.09, 0.05), (0.02, 0.02, 0.05))
    sim = _scene([TABLE, CHEESE, bottle])
    grasp = plan_grasp(sim, body=2, center=np.zeros(3), grasp_z=0.01, bowl=False)
    assert grasp.yaw == pytest.approx(np.deg2rad(-15)) and grasp.clearance >= CLEARANCE
    _, closing = yaw_axes(grasp.yaw)
    width = 2 * (0.042 * abs(closing[0]) + 0.022 * abs(closing[1]))
    assert width < 0.074  # still across a side the open fingers take


def test_bowl_rim_away_from_a_wall() -> None:
    bowl = ("bowl", (0.0, 0.0, 0.03), (0.08, 0.08, 0.03))
    wall = ("wall", (0.0, 0.11, 0.06), (0.2, 0.01, 0.06))  # just past the +y rim
    grasp = plan_grasp(_scene([TABLE, bowl, wall]), body=2, center=np.zeros(3), grasp_z=0.02, bowl=True)
    assert grasp.clearance >= CLEARANCE and grasp.offset[1] < 0  # the −y rim, not the default +y
    assert np.linalg.norm(grasp.offset) == pytest.approx(0.055)


def test_too_wide_object_is_refused() -> None:
    crate = ("crate", (0.0, 0.0, 0.05), (0.06, 0.06, 0.05))
    with pytest.raises(NotImplementedError, match="wider than the open gripper"):
        plan_grasp(_scene([TABLE, crate]), body=2, center=np.zeros(3), grasp_z=0.05, bowl=False)
