"""Phase 2 data: features and labels aligned per step, identities recorded, mixing refused."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mocks.libero_files import write_libero_folder
from rvq.backbones import build_backbone
from rvq.backbones.preprocess import resize_image
from rvq.data import ActionNormalizer, read_demos
from rvq.data.chunks import chunk_episode
from rvq.data.episodes import read_obs
from rvq.data.phase2 import build_phase2_data, load_phase2_data
from rvq.processors import observation_features
from rvq.rfsq import ActionRFSQAE, TokenizerConfig
from rvq.tokenizer import ActionTokenizer


def _tokenizer(seed: int = 0) -> ActionTokenizer:
    torch.manual_seed(seed)
    model = ActionRFSQAE.from_config(TokenizerConfig(hidden_dim=4, num_layers=3, chunk_size=4))
    normalizer = ActionNormalizer.fit(np.random.default_rng(seed).uniform(-1, 1, (100, 7)))
    return ActionTokenizer(model, normalizer, identity=f"tokenizer-{seed}")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("phase2")
    write_libero_folder(root / "demos", ["pick up the bowl", "open the drawer"], num_demos=3, steps=10, image_size=16)
    out = build_phase2_data([root / "demos"], _tokenizer(), build_backbone("tiny"), root / "data.h5", progress=False)
    return root, out


def test_rows_align_features_and_codes_with_the_chunk_starting_at_each_step(built) -> None:
    root, path = built
    data = load_phase2_data(path)
    episodes = read_demos([root / "demos"], split_arms=False)
    assert len(data) == sum(len(e) for e in episodes)
    assert data.codes.shape[1:] == (4, 4, 3) and data.features.shape[1] == 64
    assert data.instructions == ["open the drawer", "pick up the bowl"]
    tokenizer, extractor = _tokenizer(), build_backbone("tiny")
    ep_index = 4
    episode = episodes[ep_index]
    rows = torch.nonzero(data.episode == ep_index).squeeze(1)
    assert data.step[rows].tolist() == list(range(len(episode)))
    assert data.task[rows].unique().tolist() == [episode.task_id]
    chunks, valid = chunk_episode(episode.actions, 4)
    assert torch.equal(data.codes[rows], tokenizer.encode(torch.from_numpy(chunks)))
    assert torch.equal(data.valid[rows], torch.from_numpy(valid))
    np.testing.assert_allclose(data.actions[rows].numpy(), chunks)
    images = read_obs(episode, "agentview_rgb")
    t = 3
    # the rows hold what a policy computes: LIBERO's observation steps (turn 180°, resize), then the extractor
    turned = resize_image(np.ascontiguousarray(images[t, ::-1, ::-1]), 224)
    expected = extractor(turned[None], [episode.instruction])
    torch.testing.assert_close(data.features[rows[t]][None], expected, atol=1e-5, rtol=1e-5)
    as_policy = observation_features(extractor).features([{"agentview": images[t], "instruction": episode.instruction}])
    torch.testing.assert_close(as_policy, expected, atol=1e-5, rtol=1e-5)


def test_identities_recorded_and_mixing_refused(built, tmp_path: Path) -> None:
    root, path = built
    with h5py.File(path, "r") as f:
        assert f.attrs["tokenizer_identity"] == "tokenizer-0"
        assert f.attrs["feature_identity"] == observation_features(build_backbone("tiny")).identity
        assert f.attrs["feature_identity"] != build_backbone("tiny").identity  # the steps are part of the identity
        assert "observation_steps" in f.attrs["feature_info"]
    other = build_phase2_data([root / "demos"], _tokenizer(seed=1), build_backbone("tiny"), tmp_path / "other.h5",
                              progress=False)
    with pytest.raises(ValueError, match="different tokenizers cannot be mixed"):
        load_phase2_data([path, other])
    other_features = build_phase2_data([root / "demos"], _tokenizer(), build_backbone("tiny", seed=3),
                                       tmp_path / "other_features.h5", progress=False)
    with pytest.raises(ValueError, match="different feature extractors cannot be mixed"):
        load_phase2_data([path, other_features])
    merged = load_phase2_data([path, path])
    assert len(merged) == 2 * len(load_phase2_data(path))
    assert merged.episode.unique().numel() == 2 * load_phase2_data(path).episode.unique().numel()


def test_split_by_episode_holds_out_whole_episodes_per_task(built) -> None:
    _, path = built
    train, val = load_phase2_data(path).split_by_episode(0.34, seed=0)
    assert set(train.episode.tolist()).isdisjoint(val.episode.tolist())
    assert sorted(val.task.unique().tolist()) == [0, 1]


def test_bad_inputs_name_the_problem(built, tmp_path: Path) -> None:
    root, _ = built
    with pytest.raises(KeyError, match="no observation 'wrist'"):
        build_phase2_data([root / "demos"], _tokenizer(), build_backbone("tiny"), tmp_path / "x.h5",
                          image_key="wrist", progress=False)
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(FileNotFoundError):
        load_phase2_data(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(ValueError, match="not a Phase 2 data file"):
        load_phase2_data(tmp_path / "plain.h5")
