"""Phase 2 end to end on CPU through the CLI: LIBERO-layout HDF5 with images (written here) →
tokenizer → tiny backbone → `build-phase2-data` → `train-draft` / `train-main` → reload, identities,
accuracy above chance, and RSD on the trained heads equal to greedy decoding."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import torch

from mocks.libero_files import write_libero_folder
from rvq.backbones.source import load_feature_source
from rvq.cli import main
from rvq.data.phase2 import load_phase2_data
from rvq.models import load_draft, load_main
from rvq.rsd import greedy_decode, speculative_decode
from rvq.tokenizer import ActionTokenizer


def _run(argv: list[str]) -> None:
    assert main(argv) == 0, argv


def test_phase2_pipeline(tmp_path: Path, capsys) -> None:
    demos = tmp_path / "demos"
    write_libero_folder(demos, ["pick up the black bowl", "open the top drawer"], num_demos=6, steps=40,
                        image_size=32, images="action")
    _run(["train-tokenizer", "--demos", str(demos), "--optim.steps", "300", "--optim.eval-every", "150", "--out-dir",
          str(tmp_path / "tok"), "--device", "cpu", "--no-progress"])
    tokenizer_path = tmp_path / "tok" / "tokenizer"
    _run(["make-tiny-backbone", "--out-dir", str(tmp_path / "backbone")])
    _run(["build-phase2-data", "--demos", str(demos), "--tokenizer", str(tokenizer_path), "--backbone",
          str(tmp_path / "backbone"), "--out", str(tmp_path / "data.h5"), "--device", "cpu", "--no-progress"])
    data = load_phase2_data(tmp_path / "data.h5")
    with h5py.File(tmp_path / "data.h5", "r") as f:  # the file keeps the command's resolved config
        recipe = json.loads(f.attrs["run_config"])
    assert (recipe["backbone"], recipe["image_transform"], recipe["batch_size"]) == (str(tmp_path / "backbone"),
                                                                                     "resize", 32)
    tokenizer = ActionTokenizer.from_checkpoint(tokenizer_path)
    extractor = load_feature_source(str(tmp_path / "backbone"), device="cpu")  # with LIBERO's observation steps
    assert data.tokenizer_identity == tokenizer.identity and data.feature_identity == extractor.identity
    common = ["--data", str(tmp_path / "data.h5"), "--tokenizer", str(tokenizer_path), "--optim.steps", "200",
              "--optim.eval-every", "100", "--optim.batch-size", "64", "--model.width", "128", "--device", "cpu", "--no-progress"]
    _run(["train-draft", *common, "--out-dir", str(tmp_path / "draft")])
    _run(["train-main", *common, "--out-dir", str(tmp_path / "main")])
    capsys.readouterr()

    draft = load_draft(tmp_path / "draft" / "draft", tokenizer_identity=tokenizer.identity,
                       feature_identity=extractor.identity)
    main_model = load_main(tmp_path / "main" / "main", tokenizer_identity=tokenizer.identity,
                           feature_identity=extractor.identity)
    assert draft.feature_dim == main_model.feature_dim == extractor.feature_dim
    for kind in ("draft", "main"):
        report = json.loads((tmp_path / kind / "report.json").read_text())
        best = report["best"]
        assert best["token_accuracy"][0] > 1.4 * best["chance_accuracy"], (kind, best["token_accuracy"])
        assert {"layer_exact_match", "action_mse_raw", "tokenizer_mse_raw"} <= set(best)
        assert (tmp_path / kind / "metrics.jsonl").read_text().count("\n") == 2
    # The trained heads drive RSD: exact mode equals main-only greedy decoding on real features.
    features = data.features[:16]
    codes, stats = speculative_decode(draft, main_model, features)
    assert torch.equal(codes, greedy_decode(main_model, features))
    assert codes.shape == (16, 8, 16, 8) and stats.main_passes <= 8
    actions = tokenizer.decode(codes)
    assert actions.shape == (16, 8, 7) and torch.isfinite(actions).all()

    # A head is refused with another tokenizer, and training on data labelled by another tokenizer fails.
    _run(["train-tokenizer", "--demos", str(demos), "--optim.steps", "20", "--optim.eval-every", "20", "--seed", "1",
          "--out-dir", str(tmp_path / "tok2"), "--device", "cpu", "--no-progress"])
    other = ActionTokenizer.from_checkpoint(tmp_path / "tok2" / "tokenizer")
    with pytest.raises(ValueError, match="different tokenizer"):
        load_main(tmp_path / "main" / "main", tokenizer_identity=other.identity)
    rc = main(["train-main", "--data", str(tmp_path / "data.h5"), "--tokenizer", str(tmp_path / "tok2" / "tokenizer"),
               "--optim.steps", "1", "--out-dir", str(tmp_path / "bad"), "--device", "cpu", "--no-progress"])
    assert rc == 2
    assert "not the tokenizer that labelled the data" in capsys.readouterr().err
