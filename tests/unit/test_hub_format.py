"""Hub-style parts (config.json + model.safetensors): the same payload as a `.pt` file, checked the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rvq.hub_format import CONFIG_NAME, WEIGHTS_NAME, read_part, read_payload, write_part
from rvq.models import DraftConfig, DraftModel, MainConfig, MainModel, TokenSpace, load_draft, load_main, read_main, save_head
from rvq.rfsq import ActionRFSQAE, read_tokenizer, save_tokenizer, tokenizer_identity

TOKENS = TokenSpace(chunk_size=2, hidden_dim=3, num_layers=4, num_levels=5)


def _payload(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"format": "rvq.main", "version": 1, "config": {"width": 4}, "metrics": {"loss": float("nan")},
            "state_dict": {"w": torch.randn(3, 4, generator=g), "steps": torch.tensor([7], dtype=torch.int64),
                           "half": torch.randn(2, generator=g).to(torch.bfloat16)}}


def test_a_part_round_trips_bit_for_bit(tmp_path: Path) -> None:
    folder = write_part(tmp_path / "main", _payload())
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    back = read_payload(folder)
    want = _payload()
    assert back["format"] == "rvq.main" and back["config"] == {"width": 4} and "weights_sha256" not in back
    assert back["state_dict"].keys() == want["state_dict"].keys()
    for key, value in want["state_dict"].items():
        assert back["state_dict"][key].dtype == value.dtype and torch.equal(back["state_dict"][key], value), key
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert "state_dict" not in config and len(config["weights_sha256"]) == 64


def test_weights_from_another_write_are_refused(tmp_path: Path) -> None:
    write_part(tmp_path / "a", _payload(0))
    write_part(tmp_path / "b", _payload(1))
    (tmp_path / "a" / WEIGHTS_NAME).write_bytes((tmp_path / "b" / WEIGHTS_NAME).read_bytes())
    with pytest.raises(ValueError, match="written partially or its weights replaced"):
        read_part(tmp_path / "a")


def test_a_folder_missing_a_file_or_holding_bad_json_is_refused(tmp_path: Path) -> None:
    folder = write_part(tmp_path / "a", _payload())
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        read_payload(folder)
    folder = write_part(tmp_path / "b", _payload())
    (folder / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        read_payload(folder)
    (folder / CONFIG_NAME).write_text(json.dumps({"model_type": "llama"}))  # a transformers model folder
    with pytest.raises(ValueError, match="not an rvq checkpoint part"):
        read_payload(folder)


def test_writing_refuses_a_pt_path_and_non_json_entries(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a folder, not a file"):
        write_part(tmp_path / "x.pt", _payload())
    with pytest.raises(ValueError, match="plain JSON"):
        write_part(tmp_path / "y", {**_payload(), "metrics": {"t": torch.zeros(1)}})


def test_tokenizer_folder_and_pt_file_load_as_the_same_tokenizer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ActionRFSQAE().eval()
    stats = {"kind": "bounds_q99", "low": [-1.0] * 7, "high": [1.0] * 7, "mask": [True] * 6 + [False]}
    save_tokenizer(tmp_path / "tokenizer.pt", model, action_stats=stats)
    save_tokenizer(tmp_path / "tokenizer", model, action_stats=stats)
    assert (tmp_path / "tokenizer" / WEIGHTS_NAME).is_file()
    assert tokenizer_identity(tmp_path / "tokenizer") == tokenizer_identity(tmp_path / "tokenizer.pt")
    from_folder, from_file = read_tokenizer(tmp_path / "tokenizer"), read_tokenizer(tmp_path / "tokenizer.pt")
    assert from_folder.identity == from_file.identity and from_folder.action_stats == stats
    x = torch.rand(2, 8, 7) * 2 - 1
    assert torch.equal(from_folder.model.encode(x), from_file.model.encode(x))


def test_head_folders_keep_their_identity_checks(tmp_path: Path) -> None:
    torch.manual_seed(0)
    main = MainModel(MainConfig(10, TOKENS, width=16, depth=1, heads=2)).eval()
    draft = DraftModel(DraftConfig(10, TOKENS, width=16)).eval()
    save_head(tmp_path / "main", main, "tok", "feat", metrics={"loss": 1.0})
    save_head(tmp_path / "draft", draft, "tok", "feat")
    checkpoint = read_main(tmp_path / "main", tokenizer_identity="tok", feature_identity="feat")
    loaded = checkpoint.model
    assert checkpoint.metrics == {"loss": 1.0} and loaded.config == main.config
    for key, value in main.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(ValueError, match="different tokenizer"):
        load_draft(tmp_path / "draft", tokenizer_identity="other")
    with pytest.raises(ValueError, match="format is 'rvq.draft', expected 'rvq.main'"):
        load_main(tmp_path / "draft")
