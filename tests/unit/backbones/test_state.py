"""State features: the fixed per-suite layout, its refusals, its identity, and a token policy that reads it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rvq.backbones.state import FEATURES_FILE, SLOT_DIM, SUITE_OBJECTS, StateFeatures
from rvq.envs import MockLiberoEnv
from rvq.envs.mock_env import mock_state_features
from rvq.envs.observation import object_poses
from rvq.models import HeadCheckpoint, MainConfig, MainModel
from rvq.policies import PolicyBundle, TokenPolicy
from rvq.tokenizer import ActionTokenizer


def object_obs(task: int = 0) -> dict:
    features = StateFeatures.for_suite("libero_object")
    poses = {name: np.array([0.1 * i, 0.2, 0.3, 0.0, 0.0, 0.0, 1.0]) for i, name in enumerate(features.scenes[task])}
    return {"state": np.arange(8, dtype=np.float32) / 10, "task_id": task, "objects": poses, "instruction": "x"}


def test_suite_layouts_have_fixed_sizes_and_slots() -> None:
    assert StateFeatures.for_suite("libero_object").feature_dim == 8 + SLOT_DIM * 11 + 10
    assert StateFeatures.for_suite("libero_spatial").feature_dim == 8 + SLOT_DIM * 5 + 10
    assert len(SUITE_OBJECTS["libero_object"]) == 11
    with pytest.raises(ValueError, match="no state-feature layout for 'libero_goal'"):
        StateFeatures.for_suite("libero_goal")


def test_vector_places_present_objects_relative_poses_and_the_task() -> None:
    features = StateFeatures.for_suite("libero_object")
    obs = object_obs(task=3)
    vector = features.vector(obs)
    assert vector.shape == (features.feature_dim,) and vector.dtype == np.float32
    np.testing.assert_allclose(vector[:8], obs["state"])
    slots = vector[8 : 8 + SLOT_DIM * 11].reshape(11, SLOT_DIM)
    for i, name in enumerate(features.objects):
        if name in obs["objects"]:
            pose = obs["objects"][name]
            np.testing.assert_allclose(slots[i], np.concatenate([[1.0], pose[:3], pose[:3] - obs["state"][:3], pose[3:]]),
                                       rtol=1e-6)
        else:
            assert not slots[i].any()  # the layout's empty slot: present 0
    assert slots[:, 0].sum() == 7
    assert vector[-10:].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    batch = features.features([obs, object_obs(task=5)])
    assert batch.shape == (2, features.feature_dim) and batch.dtype == torch.float32


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda o: o.pop("objects"), KeyError, "lacks 'objects'"),
        (lambda o: o["objects"].pop("basket_1"), KeyError, r"lacks the poses of \['basket_1'\]"),
        (lambda o: o["objects"].update(ketchup_1=np.zeros(7)), ValueError, r"objects \['ketchup_1'\] that this task"),
        (lambda o: o["objects"]["milk_1"].__setitem__(2, np.nan), ValueError, r"objects\['milk_1'\] contains NaN"),
        (lambda o: o["objects"].update(milk_1=np.zeros(3)), ValueError, r"must have shape \[7\]"),
        (lambda o: o.update(state=np.zeros(7)), ValueError, r"state must have shape \[8\]"),
        (lambda o: o.update(task_id=10), ValueError, "task_id 10 is not a task"),
        (lambda o: o.update(task_id="0"), ValueError, "task_id '0' is not a task"),
    ],
)
def test_bad_observations_are_refused_by_name(change, error, match) -> None:
    obs = object_obs(task=0)
    change(obs)
    with pytest.raises(error, match=match):
        StateFeatures.for_suite("libero_object").vector(obs)


def test_layout_file_round_trips_and_tampering_is_refused(tmp_path: Path) -> None:
    features = StateFeatures.for_suite("libero_spatial")
    path = features.save(tmp_path)
    assert path.name == FEATURES_FILE and StateFeatures.load(path).identity == features.identity
    assert features.identity != StateFeatures.for_suite("libero_object").identity
    path.write_text(path.read_text().replace('"feature_dim": 73', '"feature_dim": 74'))
    with pytest.raises(ValueError, match="feature_dim 74 does not match"):
        StateFeatures.load(path)
    path.write_text('{"kind": "vla"}')
    with pytest.raises(ValueError, match="expected a state-feature layout"):
        StateFeatures.load(path)


def test_object_poses_reads_libero_pairs_only() -> None:
    raw = {"robot0_eef_pos": np.zeros(3), "robot0_eef_quat": np.zeros(4), "bowl_1_pos": np.ones(3),
           "bowl_1_quat": np.array([0, 0, 0, 1.0]), "bowl_1_to_robot0_eef_pos": np.zeros(3),
           "bowl_1_to_robot0_eef_quat": np.zeros(4)}
    poses = object_poses(raw)
    assert list(poses) == ["bowl_1"] and poses["bowl_1"].tolist() == [1, 1, 1, 0, 0, 0, 1]


def state_policy_folder(tmp_path: Path) -> tuple[Path, Path, MainModel]:
    """`(state bundle, VLA mock bundle, main head)`: a main-only policy bundle on the mock suite's layout."""
    from mocks.generate_mock_checkpoints import generate

    source = tmp_path / "vla"
    generate(source, seed=0, tokenizer_steps=10)
    tokenizer = ActionTokenizer.from_checkpoint(source / "tokenizer")
    features = mock_state_features("libero_object")
    torch.manual_seed(0)
    head = MainModel(MainConfig(features.feature_dim, tokenizer.tokens, width=32, depth=1, heads=4)).eval()
    folder = tmp_path / "state"
    PolicyBundle(tokenizer, HeadCheckpoint(head, tokenizer.identity, features.identity), None,
                 features).save_pretrained(folder)
    return folder, source, head


def test_state_policies_run_physics_only_and_vla_policies_do_not(tmp_path: Path) -> None:
    from rvq.eval import EvalConfig, run_eval
    from rvq.eval.results import read_results

    folder, source, _ = state_policy_folder(tmp_path)
    common = dict(suite="libero_object", tasks=[1], trials=2, policy="main", env="mock", render=False, device="cpu")
    path = run_eval(EvalConfig(checkpoints=str(folder), out_dir=str(tmp_path / "eval"), **common), progress=False)
    results = read_results(path)
    assert len(results) == 2 and all(r.get("error") is None for r in results)
    with pytest.raises(ValueError, match="looks at images"):
        EvalConfig(checkpoints=str(source), out_dir=str(tmp_path / "eval2"), **common).validate()


def test_token_policy_loads_a_state_feature_folder_and_acts_in_the_mock_env(tmp_path: Path) -> None:
    folder, source, head = state_policy_folder(tmp_path)
    policy = TokenPolicy.from_dir(folder, mode="main", device="cpu")
    assert isinstance(policy.features.source, StateFeatures) and len(policy.features.steps) == 0
    env = MockLiberoEnv("libero_object", 4)
    obs = env.reset(1)
    policy.reset(env.instruction, 4, 1)
    assert policy.act(obs).shape == (8, 7)
    recorded_elsewhere = HeadCheckpoint(head, policy.tokenizer.identity, StateFeatures.for_suite("libero_object").identity)
    with pytest.raises(ValueError, match="feature"):  # a head recorded for another layout
        PolicyBundle(policy.tokenizer, recorded_elsewhere, None, policy.features)


def test_phase2_rows_from_recorded_state_equal_the_live_features(tmp_path: Path) -> None:
    from mocks.generate_mock_checkpoints import generate
    from mocks.libero_files import write_mock_env_demos
    from rvq.data.phase2 import build_phase2_data, load_phase2_data
    from rvq.tokenizer import ActionTokenizer

    generate(tmp_path / "ck", seed=0, tokenizer_steps=10)
    write_mock_env_demos(tmp_path / "demos", "libero_object", num_tasks=3, trials=2, steps=20)
    features = mock_state_features("libero_object")
    tokenizer = ActionTokenizer.from_checkpoint(tmp_path / "ck" / "tokenizer")
    data = load_phase2_data(build_phase2_data([tmp_path / "demos"], tokenizer, features, tmp_path / "p2.h5",
                                              progress=False))
    assert data.feature_identity == features.identity and data.features.shape == (3 * 2 * 20, features.feature_dim)
    env = MockLiberoEnv("libero_object", 2)  # task 2, trial 1: the file's last demo
    obs = env.reset(1)
    row = int(((data.task == 2) & (data.step == 0)).nonzero()[-1])
    np.testing.assert_allclose(data.features[row].numpy(), features.vector(obs))
    onehot = data.features[:, -10:].argmax(dim=1)
    assert torch.equal(onehot, data.task)  # the suite's task index reached every row


def test_recorded_demos_without_state_observations_are_refused(tmp_path: Path) -> None:
    from mocks.generate_mock_checkpoints import generate
    from mocks.libero_files import write_libero_file
    from rvq.data.phase2 import build_phase2_data
    from rvq.tokenizer import ActionTokenizer

    generate(tmp_path / "ck", seed=0, tokenizer_steps=10)
    write_libero_file(tmp_path / "demos" / "a_demo.hdf5", "reach", num_demos=2, steps=20, images=False)
    tokenizer = ActionTokenizer.from_checkpoint(tmp_path / "ck" / "tokenizer")
    with pytest.raises(ValueError, match=r"env_args'\]\['task_id'\]"):
        build_phase2_data([tmp_path / "demos"], tokenizer, mock_state_features("libero_object"), tmp_path / "p2.h5",
                          progress=False)
    assert not (tmp_path / "p2.h5").exists()


@pytest.mark.parametrize("source, match", [("state:libero_object+gripper", "no state-feature layout"),
                                           ("state:libero_goal", "no state-feature layout")])
def test_unknown_state_options_are_refused(source: str, match: str) -> None:
    from rvq.backbones.source import load_source

    with pytest.raises(ValueError, match=match):
        load_source(source)


def test_the_plain_layout_keeps_its_identity_and_removed_options_are_refused(tmp_path: Path) -> None:
    import json

    plain = StateFeatures.for_suite("libero_spatial")
    # heads trained before name this identity (libero_spatial's fourth-pass policy, docs/history/RESULTS.md)
    assert plain.identity == "9db3681bad35893936bca1acc11e8982221d1da94e730972b6da0508bae0e3fb"
    path = plain.save(tmp_path)
    for removed in ({"gripper_phase": True}, {"goals": {"0": ["plate_1"]}}):  # measured, not adopted
        path.write_text(json.dumps({**plain.describe(), **removed}))
        with pytest.raises(ValueError, match=re.escape(f"{sorted(removed)}, options removed from rvq")):
            StateFeatures.load(path)
