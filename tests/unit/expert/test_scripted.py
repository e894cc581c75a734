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
