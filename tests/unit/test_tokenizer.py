"""`ActionTokenizer`: the one tokenizer object (normalization, code grid, round trip, save and load)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rvq.data import ActionNormalizer
from rvq.models import TokenSpace
from rvq.rfsq import ActionRFSQAE
from rvq.tokenizer import ActionTokenizer


def _tokenizer(quantizer: str, **kw) -> ActionTokenizer:
    torch.manual_seed(0)
    model = ActionRFSQAE(quantizer=quantizer, **kw)
    model.train()
    with torch.no_grad():  # calibrate the robust quantizer's scales on data like the actions below
        for _ in range(50):
            model(torch.rand(64, model.config.chunk_size, 7) * 2 - 1)
    normalizer = ActionNormalizer.fit(np.random.default_rng(0).uniform(-1, 1, (200, 7)))
    return ActionTokenizer(model.eval(), normalizer)


def test_roundtrip_uses_codes_only_and_layernorm_loses_its_statistics() -> None:
    raw = torch.rand(4, 8, 7) * 2 - 1
    robust = _tokenizer("robust")
    out = robust.roundtrip(raw)
    assert out.shape == raw.shape
    torch.testing.assert_close(out, robust.decode(robust.encode(raw)))
    layernorm = _tokenizer("layernorm")
    code_only = layernorm.roundtrip(raw)
    forward, _ = layernorm.model(layernorm.normalizer.normalize(raw))
    assert not torch.allclose(code_only, layernorm.normalizer.unnormalize(forward), atol=1e-3)


def test_tokens_describe_the_code_grid_the_tokenizer_emits() -> None:
    tokenizer = _tokenizer("robust", chunk_size=4, hidden_dim=6, num_layers=3, num_levels=5)
    assert tokenizer.tokens == TokenSpace(chunk_size=4, hidden_dim=6, num_layers=3, num_levels=5)
    codes = tokenizer.encode(torch.rand(2, 4, 7) * 2 - 1)
    assert list(codes.shape) == [2, 4, 6, 3] and int(codes.max()) < tokenizer.tokens.num_levels
    assert tokenizer.quantizer == "robust" and tokenizer.config.num_layers == 3


def test_save_and_load_give_the_same_tokenizer(tmp_path: Path) -> None:
    tokenizer = _tokenizer("robust")
    path = tokenizer.save(tmp_path / "tokenizer.pt", metrics={"val": {"mse": 1.0}})
    loaded = ActionTokenizer.from_checkpoint(path)
    assert loaded.normalizer.to_dict() == tokenizer.normalizer.to_dict()
    assert loaded.metrics == {"val": {"mse": 1.0}} and loaded.identity == tokenizer.identity
    raw = torch.rand(3, 8, 7) * 2 - 1
    assert torch.equal(loaded.encode(raw), tokenizer.encode(raw))
    torch.testing.assert_close(loaded.roundtrip(raw), tokenizer.roundtrip(raw))


def test_decode_refuses_float_codes() -> None:
    with pytest.raises(ValueError, match="codes must be integers"):
        _tokenizer("robust").decode(np.zeros((1, 8, 16, 8), dtype=np.float32))
