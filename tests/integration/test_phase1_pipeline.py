"""Phase 1 end to end on CPU: LIBERO-layout HDF5 written here → `rvq train-tokenizer` → reload →
raw-action round trip through `ActionTokenizer`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mocks.libero_files import write_libero_folder
from rvq.cli import main
from rvq.data import make_chunks, read_demos, split_by_episode
from rvq.tokenizer import ActionTokenizer


def test_train_reload_and_roundtrip_raw_actions(tmp_path: Path, capsys) -> None:
    demos = tmp_path / "libero_like"
    write_libero_folder(demos, ["pick up the black bowl", "open the top drawer", "turn on the stove"],
                        num_demos=6, steps=40, image_size=16)
    out = tmp_path / "run"
    rc = main(["train-tokenizer", "--demos", str(demos), "--optim.steps", "800", "--optim.eval-every", "400",
               "--optim.batch-size", "128", "--out-dir", str(out), "--device", "cpu", "--no-progress"])
    assert rc == 0
    assert "held-out MSE" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"tokenizer", "last.pt", "metrics.jsonl", "report.md", "report.json"}
    report = json.loads((out / "report.json").read_text())
    assert report["best"]["num_effective_layers"] == 8

    tokenizer = ActionTokenizer.from_checkpoint(out / "tokenizer")
    episodes = read_demos([demos])
    _, val = split_by_episode(episodes, 0.2, seed=0)
    assert {e.name for e in val} == set(report["data"]["val_episodes"])
    chunks = make_chunks(val, 8)
    raw = torch.as_tensor(chunks.actions)
    codes = tokenizer.encode(raw)
    assert codes.shape == (len(chunks), 8, 16, 8) and codes.dtype == torch.int64
    back = tokenizer.decode(codes)
    valid = torch.as_tensor(chunks.valid)
    # compare with the guarded raw actions (the normalizer clips beyond the training extremes by design)
    target = tokenizer.normalizer.unnormalize(tokenizer.normalizer.normalize(raw))
    err = (back - target)[valid]
    scale = raw[valid][:, :6].std(dim=0)
    assert (err[:, :6].pow(2).mean(dim=0).sqrt() < 0.25 * scale).all(), (err[:, :6].pow(2).mean(0).sqrt(), scale)
    assert torch.equal(back[..., 6][valid].abs().round(), torch.ones(int(valid.sum())))  # gripper stays ±1
    full_mse = err.pow(2).mean()
    one_layer = (tokenizer.decode(codes[..., :1]) - target)[valid].pow(2).mean()
    three_layers = (tokenizer.decode(codes[..., :3]) - target)[valid].pow(2).mean()
    assert one_layer > three_layers > full_mse  # each prefix finer than the one before
    assert three_layers < 0.1 * one_layer  # prefix training: three of eight layers decode far below one
    assert np.isfinite(back.numpy()).all()
