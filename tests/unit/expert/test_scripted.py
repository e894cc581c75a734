"""Scripted expert pieces that need no simulator: goal parsing, target lookup, refusals."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rvq.envs import MockLiberoEnv
from rvq.expert import ScriptedExpert
from rvq.expert.scripted import parse_goal, target_body


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
