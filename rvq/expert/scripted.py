"""A scripted LIBERO expert that reads the simulator's privileged state.

It reads the task's goal from the parsed BDDL (`(On obj target)` / `(In obj target_contain_region)` /
`(TurnOn fixture)`), object positions from the env's observation and geometry from MuJoCo's geom
bounding boxes, and drives the standard 7-d OSC_POSE delta actions (position, plus the wrist's yaw;
the gripper keeps pointing down).

- Pick and place: above the grasp point → down → close → lift → carry → lower → open → retreat.
  Bowls are grasped by the rim (fingers close across the wall), other objects at half height and no deeper than
  the hand reaches below their top; the gripper yaw (and the rim point) is planned around the scene's collision
  geoms (`rvq.expert.grasp`).
- TurnOn: grasp the knob's handle bar across, turn the wrist, let go.

It acts closed-loop, one action per call (`act` returns a `[1, 7]` chunk). It can take over an episode that
another policy started (`rvq.expert.takeover`): the plan is made from the state it finds, and when the hand already
grasps the object (both finger pads touch it, robosuite's `_check_grasp`) the plan starts at the lift from where the
hand is, instead of opening the hand to grasp again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rvq.expert.grasp import HAND_REACH, object_points, plan_grasp, rotation_z

GAIN = 15.0  # action units per metre of position error (OSC: 1 unit ≈ 5 cm per step)
ROTATION_SCALE = 0.5  # radians per rotation action unit (robosuite OSC_POSE output_max)
ROTATION_STEP = 0.6  # largest rotation action per step (0.3 rad)
KNOB_TURN = 0.9  # radians the wrist turns a knob (LIBERO's stove is on from 0.5)
KNOB_TRIES = 3  # a turn that left the knob off (the bar slipped in the grasp) is planned again from where it stands
TURN_TOLERANCE = 0.08  # radians of orientation error a moving phase may hand over with
# `robot0_eef_quat` of the gripper pointing down with its fingers closing along world y (LIBERO's reset pose)
DOWN = np.diag([1.0, -1.0, -1.0])
OPEN, CLOSED = -1.0, 1.0
# How the grasp's "close" phase ends. "timer": after a fixed 12 steps (every table measured before the seventh pass).
# "contact": once both finger pads have touched the object on `GRASP_SETTLE_STEPS` steps in a row (the fingers have
# stopped on it), at most 12 steps. The timer holds the hand still for ~7 steps after the fingers stop, so the step
# it lifts on is not a function of the state a learned policy sees; the contact rule lifts on the first still step.
GRASP_HOLDS = ("timer", "contact")
GRASP_SETTLE_STEPS = 2
# How a moving phase (above, down, lift, carry, lower) ends besides arriving. "limit": after its `max_steps` (60; every
# table before the twelfth pass). "stall": also once the hand has moved less than `STALL_DISTANCE` on each of the last
# `STALL_STEPS` steps of the phase: it is blocked (a bowl resting on the plate above its release height, the fingers on
# a rim in a drawer), and the limit would hold it there, pushing, for up to ~50 steps: a wait the state does not show
# (libero_spatial tasks 2, 4, 6, 7, 8, 9 on their first official trials).
PHASE_ENDS = ("limit", "stall")
STALL_STEPS = 3
STALL_DISTANCE = 0.001  # metres per step
# What the expert does, as a number that demo files and evaluation identities record, so that demos and rows made by
# an earlier expert are not taken for this one's. 1: every table through the seventh pass. 2: a tall object is
# grasped no deeper than `HAND_REACH` below its top; revision 1 aimed at half height (at most 6 cm) and on five of
# libero_object's ten tasks pushed the palm on the object's top until the descent timed out (60 steps), a wait that
# the state does not show.
EXPERT_REVISION = 2


def _check_rule(value: str, rules: tuple[str, ...], name: str) -> str:
    """`value` if it is one of `rules`, else a ValueError naming the setting `name`."""
    if value not in rules:
        raise ValueError(f"{name} must be one of {rules}, got {value!r}")
    return value


def check_grasp_hold(value: str, name: str = "grasp_hold") -> str:
    """`value` if it is one of `GRASP_HOLDS`, else a ValueError naming the setting `name`."""
    return _check_rule(value, GRASP_HOLDS, name)


def check_phase_end(value: str, name: str = "phase_end") -> str:
    """`value` if it is one of `PHASE_ENDS`, else a ValueError naming the setting `name`."""
    return _check_rule(value, PHASE_ENDS, name)


def expert_identity(grasp_hold: str, phase_end: str = "limit") -> dict[str, str | int]:
    """What the expert is, for evaluation identities and pipeline fingerprints: its revision, and its grasp and
    phase-end rules only when they are not the first ones (identities made before an option keep their value)."""
    return {"expert_revision": EXPERT_REVISION,
            **({"expert_grasp_hold": grasp_hold} if grasp_hold != "timer" else {}),
            **({"expert_phase_end": phase_end} if phase_end != "limit" else {})}


@dataclass(frozen=True)
class Phase:
    name: str
    gripper: float
    target: np.ndarray | None = None  # end-effector goal; None: hold position (+ rise)
    tolerance: float = 0.02  # metres, for moving phases
    yaw: float | None = None  # gripper yaw about world z for this phase; None: the plan's
    hold_steps: int = 0  # for holding phases
    max_steps: int = 60
    rise: float = 0.0  # holding phases: move up by this much while holding
    place: bool = False  # moving phases: target x-y is where the held object (not the hand) must end; shifted on entry
    until_grasped: bool = False  # holding phases: end early once the plan's object is grasped (`GRASP_SETTLE_STEPS`)


def object_extent(env, name: str) -> tuple[np.ndarray, np.ndarray]:
    """World-frame bounding box (lo, hi) of an object's geoms (visual ones included), from MuJoCo's
    per-geom boxes."""
    inner = env.sim_env
    points = object_points(inner.sim, inner.obj_body_id[name], collision_only=False)
    return points.min(0), points.max(0)


def parse_goal(env) -> tuple[str, str, str | None]:
    """The task's single goal: `(on|in, object, target)` (pick and place) or `(turnon, fixture, None)`."""
    goal = env.sim_env.parsed_problem["goal_state"]
    if len(goal) == 1 and len(goal[0]) == 3 and goal[0][0].lower() in ("on", "in"):
        predicate, obj, target = goal[0]
        return predicate.lower(), obj, target
    if len(goal) == 1 and len(goal[0]) == 2 and goal[0][0].lower() == "turnon":
        return "turnon", goal[0][1], None
    raise NotImplementedError(f"the scripted expert handles one On/In/TurnOn goal, got {goal}")


def knob_joint(sim, fixture: str) -> tuple[int, np.ndarray, float]:
    """(joint id, world anchor [3], sign) of a fixture's vertical hinge; sign: the wrist yaw direction
    that increases the joint (a turn-on range starts above 0)."""
    model, data = sim.model, sim.data
    for joint in range(model.njnt):
        body = int(model.jnt_bodyid[joint])
        if model.jnt_type[joint] != 3 or not (model.body_id2name(body) or "").startswith(fixture + "_"):
            continue  # 3: mjJNT_HINGE
        axis = data.xmat[body].reshape(3, 3) @ model.jnt_axis[joint]
        if abs(axis[2]) < 0.9:
            raise NotImplementedError(f"{fixture}: knob axis {axis} is not vertical")
        return joint, np.array(data.xanchor[joint], dtype=np.float64), float(np.sign(axis[2]))
    raise NotImplementedError(f"{fixture} has no hinge joint to turn")


def region_position(env, region: str) -> np.ndarray:
    """World position of a BDDL region's site (e.g. `flat_stove_1_cook_region`)."""
    sim = env.sim_env.sim
    try:
        return np.array(sim.data.site_xpos[sim.model.site_name2id(region)], dtype=np.float64)
    except (ValueError, KeyError) as exc:
        raise NotImplementedError(f"no site for goal region {region!r}") from exc


def target_body(env, target: str) -> str:
    """`basket_1_contain_region` → `basket_1` (regions belong to an object or fixture)."""
    names = list(env.sim_env.objects_dict) + list(getattr(env.sim_env, "fixtures_dict", {}))
    if target in names:
        return target
    for name in sorted(names, key=len, reverse=True):
        if target.startswith(name + "_"):
            return name
    raise NotImplementedError(f"cannot locate goal target {target!r} among {names}")


def grasping(env, name: str) -> bool:
    """Whether both of the gripper's finger pads touch object `name` (robosuite's grasp check)."""
    inner = env.sim_env
    return bool(inner._check_grasp(gripper=inner.robots[0].gripper, object_geoms=inner.objects_dict[name]))


def hand_yaw(quat_xyzw: np.ndarray) -> float:
    """The gripper's yaw about world z (radians, in [-pi/2, pi/2): the two fingers are symmetric), read from
    `robot0_eef_quat` relative to the reset pose `DOWN`."""
    from robosuite.utils import transform_utils as T  # noqa: PLC0415 - LIBERO's robosuite

    relative = T.quat2mat(np.asarray(quat_xyzw, dtype=np.float64)) @ DOWN.T
    yaw = float(np.arctan2(relative[1, 0], relative[0, 0]))
    return float((yaw + np.pi / 2) % np.pi - np.pi / 2)


def _rotation_error(target: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    """Axis-angle [3] (world frame) that turns the current end-effector orientation into `target`."""
    from robosuite.utils import transform_utils as T  # noqa: PLC0415 - LIBERO's robosuite

    error = target @ T.quat2mat(np.asarray(quat_xyzw, dtype=np.float64)).T
    return np.asarray(T.quat2axisangle(T.mat2quat(error)), dtype=np.float64)


def _toward(goal: np.ndarray, eef: np.ndarray, gripper: float, rotation: np.ndarray) -> np.ndarray:
    """One OSC_POSE delta action `[1, 7]`: proportional move toward `goal` and turn by `rotation`
    (axis-angle, world frame; OSC scales a rotation input of 1 to 0.5 rad)."""
    turn = np.clip(rotation / ROTATION_SCALE, -ROTATION_STEP, ROTATION_STEP)
    return np.r_[np.clip((goal - eef) * GAIN, -1.0, 1.0), turn, gripper][None, :]


class ScriptedExpert:
    """Policy interface (`reset`, `act`, `episode_stats`) plus `attach_env(env)` for privileged state."""

    name = "expert"

    def __init__(self, grasp_hold: str = "timer", phase_end: str = "limit") -> None:
        self.grasp_hold = check_grasp_hold(grasp_hold)
        self.phase_end = check_phase_end(phase_end)
        self.grasped_steps = 0  # steps in a row the hand has grasped the object during an `until_grasped` hold
        self.still_steps = 0  # steps in a row of a moving phase on which the hand moved < STALL_DISTANCE
        self.last_eef: np.ndarray | None = None  # the hand's position at the previous call
        self.env = None
        self.phases: list[Phase] = []
        self.tries = 0  # plans made this episode (a knob turn is planned again when it left the knob off)
        self.index = 0  # the plan's current phase
        self.count = 0  # steps the current phase has acted
        self.anchor: np.ndarray | None = None  # where a holding phase holds the hand
        self.yaw = 0.0  # gripper yaw about world z (radians) of the plan
        self.plan: dict[str, Any] = {}

    def attach_env(self, env) -> None:
        if not hasattr(getattr(env, "sim_env", None), "parsed_problem"):
            raise TypeError("the scripted expert needs the real LIBERO env (privileged simulator state)")
        self.env = env

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        if self.env is None:
            raise RuntimeError("attach_env(env) before reset: the expert reads the simulator state")
        self.phases, self.yaw, self.tries, self.last_eef = [], 0.0, 0, None
        self._enter_phase(0)

    def _enter_phase(self, index: int) -> None:
        """Go to phase `index` of the plan, its per-phase counters (steps, hold anchor, grasp and stall runs) reset."""
        self.index, self.count, self.anchor, self.grasped_steps, self.still_steps = index, 0, None, 0, 0

    def _make_plan(self, raw: dict[str, Any]) -> None:
        env = self.env
        predicate, obj, target = parse_goal(env)
        if predicate == "turnon":
            self._plan_turn(obj)
            return
        place_on = target_body(env, target)
        lo, hi = object_extent(env, obj)
        _, target_hi = object_extent(env, place_on)
        center = raw[f"{obj}_pos"].copy()
        bowl = "bowl" in obj
        # bowls: pinch the rim (fingers straddle the wall); others at half height, at most 6 cm up, and no deeper than
        # the hand reaches below the object's top
        grasp_z = (center[2] + 0.02 if bowl else
                   max(lo[2] + max(0.01, min(0.06, 0.5 * (hi[2] - lo[2]))), hi[2] - HAND_REACH))
        chosen = plan_grasp(env.sim_env.sim, env.sim_env.obj_body_id[obj], center, grasp_z, bowl)
        grasp = chosen.position
        self.yaw = chosen.yaw
        carry_z = max(grasp_z, target_hi[2]) + 0.18  # clears the target (and fixtures) while carrying
        if f"{place_on}_pos" in raw:  # a movable object (plate, basket): its pose, not its extent
            target_pos = np.asarray(raw[f"{place_on}_pos"], dtype=np.float64)
            release_z = target_pos[2] + (0.07 if predicate == "on" else 0.09 + (grasp_z - lo[2]))
        else:  # a fixture region (stove burner, cabinet top, rack): the region's site
            target_pos = region_position(env, target)
            release_z = target_pos[2] + 0.03 + (grasp_z - lo[2])
        # carry and lower aim at the target's x-y; on entry (`place`) they shift by the held object's offset
        phases = [
            Phase("above", OPEN, np.r_[grasp[:2], grasp_z + 0.12]),
            Phase("down", OPEN, grasp, tolerance=0.008),
            Phase("close", CLOSED, hold_steps=12, until_grasped=self.grasp_hold == "contact"),
            Phase("lift", CLOSED, np.r_[grasp[:2], carry_z], tolerance=0.03),
            Phase("carry", CLOSED, np.r_[target_pos[:2], carry_z], place=True),
            Phase("lower", CLOSED, np.r_[target_pos[:2], release_z], place=True),
            Phase("open", OPEN, hold_steps=10),
            Phase("retreat", OPEN, hold_steps=20, rise=0.1),
        ]
        held = grasping(env, obj)
        if held:  # taken over with the object in hand: lift from here (the grasp plan's yaw is not the hand's)
            eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
            self.yaw = hand_yaw(raw["robot0_eef_quat"])
            phases = [Phase("lift", CLOSED, np.r_[eef[:2], max(eef[2], carry_z)], tolerance=0.03)] + phases[4:]
        self.phases = phases
        self.plan = {"object": obj, "target": place_on, "predicate": predicate, "grasp": grasp.tolist(),
                     "yaw_deg": round(float(np.rad2deg(self.yaw))), "clearance": round(chosen.clearance, 4),
                     "started_holding": held}

    def _plan_turn(self, fixture: str) -> None:
        """Turn a knob: grasp its handle bar across, turn the wrist by `KNOB_TURN` the way the joint
        opens, let go and rise."""
        sim = self.env.sim_env.sim
        joint, anchor, sign = knob_joint(sim, fixture)
        body = int(sim.model.jnt_bodyid[joint])
        points = object_points(sim, body)
        top = points[:, 2].max()
        bar = points[points[:, 2] > top - 0.01, :2]  # the handle: the knob's parts near its top
        direction = np.linalg.svd(bar - bar.mean(0))[2][0]  # long horizontal axis of the handle
        self.yaw = float((np.arctan2(direction[1], direction[0]) + np.pi / 2) % np.pi - np.pi / 2)
        grasp = np.r_[anchor[:2], top - 0.025]  # pads across the bar, fingertips above the knob's disc
        turned = self.yaw + sign * KNOB_TURN
        self.phases = [
            Phase("above", OPEN, grasp + np.array([0.0, 0.0, 0.1])),
            Phase("down", OPEN, grasp, tolerance=0.008),
            Phase("close", CLOSED, hold_steps=12),
            Phase("turn", CLOSED, hold_steps=40, yaw=turned),
            Phase("open", OPEN, hold_steps=10, yaw=turned),
            Phase("retreat", OPEN, hold_steps=20, rise=0.1, yaw=turned),
        ]
        self.plan = {"object": fixture, "target": None, "predicate": "turnon", "grasp": grasp.tolist(),
                     "yaw_deg": round(float(np.rad2deg(self.yaw))), "clearance": None, "tries": self.tries}

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        raw = self.env.raw_obs
        if (self.phases and self.index >= len(self.phases) and self.plan.get("predicate") == "turnon"
                and self.tries < KNOB_TRIES and not self.env.success()):
            self.phases = []  # the knob is still off: again
            self._enter_phase(0)
        if not self.phases:
            self.tries += 1
            self._make_plan(raw)
        eef = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
        previous, self.last_eef = self.last_eef, eef.copy()  # the hand one call ago (None on the episode's first)
        while self.index < len(self.phases):
            phase = self.phases[self.index]
            yaw = self.yaw if phase.yaw is None else phase.yaw
            turn = _rotation_error(rotation_z(yaw) @ DOWN, raw["robot0_eef_quat"])
            if phase.target is None:  # holding: keep the position (rising by `rise`) for `hold_steps`
                if phase.until_grasped:
                    self.grasped_steps = self.grasped_steps + 1 if grasping(self.env, self.plan["object"]) else 0
                if self.count >= phase.hold_steps or (phase.until_grasped and self.grasped_steps >= GRASP_SETTLE_STEPS):
                    self._enter_phase(self.index + 1)
                    continue
                if self.anchor is None:
                    self.anchor = eef.copy()
                goal = self.anchor + np.array([0.0, 0.0, phase.rise * min(1.0, self.count / max(1, phase.hold_steps))])
                self.count += 1
                return _toward(goal, eef, phase.gripper, turn)
            # moving: act toward the goal on the step it arrives, then hand over
            if phase.place and self.count == 0:  # the object may have slid in the hand since the plan
                held = np.asarray(raw[f"{self.plan['object']}_pos"][:2], dtype=np.float64) - eef[:2]
                phase = self.phases[self.index] = replace(phase, target=np.r_[phase.target[:2] - held, phase.target[2]])
            if self.phase_end == "stall" and self.count > 0:  # the hand's move on the last step, which this phase took
                still = np.linalg.norm(eef - previous) < STALL_DISTANCE
                self.still_steps = self.still_steps + 1 if still else 0
                if self.still_steps >= STALL_STEPS:  # blocked: go on from here as if it had arrived
                    self._enter_phase(self.index + 1)
                    continue
            self.count += 1
            arrived = np.linalg.norm(phase.target - eef) < phase.tolerance and np.linalg.norm(turn) < TURN_TOLERANCE
            if arrived or self.count >= phase.max_steps:
                self._enter_phase(self.index + 1)
            return _toward(phase.target, eef, phase.gripper, turn)
        return np.array([[0, 0, 0, 0, 0, 0, OPEN]], dtype=np.float64)

    def episode_stats(self) -> dict[str, Any]:
        return {"phase": self.phases[self.index].name if self.index < len(self.phases) else "done", **self.plan}
