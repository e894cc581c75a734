"""Scripted expert pieces that need no simulator: goal parsing, target lookup, refusals."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from rvq.envs import MockLiberoEnv
from rvq.expert import ScriptedExpert
from rvq.expert.scripted import EXPERT_REVISION, knob_joint, parse_goal, target_body


def _env(goal, objects=("akita_black_bowl_1", "plate_1", "basket_1"), fixtures=("wooden_cabinet_1",)):
    sim_env = SimpleNamespace(parsed_problem={"goal_state": goal}, objects_dict=dict.fromkeys(objects),
                              fixtures_dict=dict.fromkeys(fixtures))
    return SimpleNamespace(sim_env=sim_env)


def test_goal_parsing_and_targets() -> None:
    assert parse_goal(_env([["On", "akita_black_bowl_1", "plate_1"]])) == ("on", "akita_black_bowl_1", "plate_1")
    assert target_body(_env([]), "basket_1_contain_region") == "basket_1"
    assert target_body(_env([]), "wooden_cabinet_1_top_side") == "wooden_cabinet_1"
    assert parse_goal(_env([["Turnon", "flat_stove_1"]])) == ("turnon", "flat_stove_1", None)
    with pytest.raises(NotImplementedError, match="one On/In/TurnOn goal"):
        parse_goal(_env([["Open", "wooden_cabinet_1_top_region"]]))
    with pytest.raises(NotImplementedError, match="one On/In/TurnOn goal"):
        parse_goal(_env([["On", "a", "b"], ["On", "c", "d"]]))
    with pytest.raises(NotImplementedError, match="cannot locate"):
        target_body(_env([]), "stove_region")


def test_expert_needs_the_real_simulator() -> None:
    expert = ScriptedExpert()
    with pytest.raises(RuntimeError, match="attach_env"):
        expert.reset("x", 0, 0)
    with pytest.raises(TypeError, match="real LIBERO env"):
        expert.attach_env(MockLiberoEnv("libero_spatial", 0))
    assert ScriptedExpert().episode_stats()["phase"] == "done"


def _hinge_sim(axis, joint_type=3):
    names = ["world", "flat_stove_1_main", "flat_stove_1_button"]
    model = SimpleNamespace(njnt=1, jnt_bodyid=np.array([2]), jnt_type=np.array([joint_type]),
                            jnt_axis=np.array([axis], dtype=float), body_id2name=lambda i: names[i])
    data = SimpleNamespace(xmat=np.tile(np.eye(3).reshape(1, 9), (3, 1)), xanchor=np.array([[0.1, 0.2, 0.9]]))
    return SimpleNamespace(model=model, data=data)


def test_knob_joint_direction_and_refusals() -> None:
    joint, anchor, sign = knob_joint(_hinge_sim([0, 0, 1]), "flat_stove_1")
    assert joint == 0 and sign == 1.0
    np.testing.assert_allclose(anchor, [0.1, 0.2, 0.9])
    assert knob_joint(_hinge_sim([0, 0, -1]), "flat_stove_1")[2] == -1.0  # the wrist turns the other way
    with pytest.raises(NotImplementedError, match="not vertical"):
        knob_joint(_hinge_sim([1, 0, 0]), "flat_stove_1")
    with pytest.raises(NotImplementedError, match="no hinge"):
        knob_joint(_hinge_sim([0, 0, 1], joint_type=2), "flat_stove_1")  # a slide joint (drawer)
    with pytest.raises(NotImplementedError, match="no hinge"):
        knob_joint(_hinge_sim([0, 0, 1]), "microwave_1")


def test_grasp_hold_is_checked_and_names_the_expert_row() -> None:
    import hashlib
    import json

    from rvq.eval import EvalConfig
    from rvq.eval.config import policy_identity

    with pytest.raises(ValueError, match="grasp_hold must be one of"):
        ScriptedExpert("sometimes")
    assert ScriptedExpert("contact").grasp_hold == "contact"
    with pytest.raises(ValueError, match="expert_grasp_hold must be one of"):
        EvalConfig(policy="expert", expert_grasp_hold="sometimes").validate()
    with pytest.raises(ValueError, match="applies to the expert policy only"):
        EvalConfig(policy="noop", env="mock", expert_grasp_hold="contact").validate()
    timer, contact = (policy_identity(EvalConfig(policy="expert", expert_grasp_hold=h)) for h in ("timer", "contact"))
    assert contact != timer  # resuming a timer folder with the contact expert is refused
    # the identity names the expert's revision: rows of the first expert (whose identity had none) do not resume
    first_expert = hashlib.sha256(json.dumps({"policy": "expert"}, sort_keys=True).encode()).hexdigest()[:16]
    assert timer != first_expert
    assert timer == hashlib.sha256(json.dumps({"policy": "expert", "expert_revision": EXPERT_REVISION},
                                              sort_keys=True).encode()).hexdigest()[:16]


def test_phase_end_is_checked_and_names_the_expert_row() -> None:
    from rvq.eval import EvalConfig
    from rvq.eval.config import policy_identity
    from rvq.expert.scripted import expert_identity

    with pytest.raises(ValueError, match="phase_end must be one of"):
        ScriptedExpert("timer", "sometimes")
    with pytest.raises(ValueError, match="expert_phase_end must be one of"):
        EvalConfig(policy="expert", expert_phase_end="sometimes").validate()
    with pytest.raises(ValueError, match="--phase-end applies to the expert policy only"):
        EvalConfig(policy="noop", env="mock", expert_phase_end="stall").validate()
    limit, stall = (policy_identity(EvalConfig(policy="expert", expert_phase_end=rule)) for rule in ("limit", "stall"))
    assert stall != limit and limit == policy_identity(EvalConfig(policy="expert"))  # earlier rows keep theirs
    assert expert_identity("timer") == expert_identity("timer", "limit") == {"expert_revision": EXPERT_REVISION}
    assert expert_identity("contact", "stall") == {"expert_revision": EXPERT_REVISION, "expert_grasp_hold": "contact",
                                                   "expert_phase_end": "stall"}


def _phases_walked(rule: str, heights: list[float]) -> list[str]:
    """The phase the expert is in after each call, its hand at these heights (metres) above a lower phase's target
    at 0.8 m, the hand pointing down (`robot0_eef_quat` of `DOWN`)."""
    from rvq.expert.scripted import CLOSED, OPEN, Phase

    expert = ScriptedExpert("timer", rule)
    expert.env = SimpleNamespace(raw_obs={})  # the plan is given below: no simulator state is read
    expert.phases = [Phase("lower", CLOSED, np.array([0.0, 0.0, 0.8])), Phase("open", OPEN, hold_steps=10)]
    walked = []
    for z in heights:
        expert.env.raw_obs = {"robot0_eef_pos": np.array([0.0, 0.0, z]), "robot0_eef_quat": np.array([1.0, 0, 0, 0])}
        action = expert.act({})
        walked.append(expert.phases[expert.index].name if expert.index < len(expert.phases) else "done")
        assert action.shape == (1, 7)
    return walked


def test_a_blocked_moving_phase_ends_when_the_hand_stops_under_the_stall_rule() -> None:
    """A bowl resting on the plate above its release height: the hand stops at 0.95 m. The stall rule opens the hand
    on the `STALL_STEPS`-th still step; the limit rule keeps pushing until the phase's 60 steps are spent."""
    from rvq.expert.scripted import STALL_STEPS

    blocked = [1.0 - 0.01 * i for i in range(6)] + [0.95] * 60  # 6 steps down, then still
    stall, limit = _phases_walked("stall", blocked), _phases_walked("limit", blocked)
    assert stall.index("open") == 5 + STALL_STEPS  # calls 6, 7, 8 see a still hand; the third switches
    assert limit.index("open") == 59  # the 60th step of the phase
    # a hand still moving (2 mm per step, above STALL_DISTANCE) or still on the phase's first call is not stalled
    slow = [1.0 - 0.002 * i for i in range(60)]
    assert "open" not in _phases_walked("stall", slow)[:59]
    assert _phases_walked("stall", [0.95] * 3) == ["lower"] * 3  # the first call has no previous step of the phase
