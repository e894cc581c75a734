"""Property 4: checkpoint format, seed formats, byte stability and refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from rvq.rfsq import ActionRFSQAE, TokenizerConfig, load_tokenizer, read_tokenizer, save_tokenizer, tokenizer_identity
from tests.unit.rfsq.helpers import calibrated, smooth_actions


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_naive_and_robust_have_the_same_keys() -> None:
    naive = ActionRFSQAE(use_layernorm=False).state_dict()
    robust = ActionRFSQAE(use_layernorm=True).state_dict()
    assert naive.keys() == robust.keys()
    assert all(naive[k].shape == robust[k].shape for k in naive)


def test_save_load_roundtrip_and_byte_stable(tmp_path: Path) -> None:
    data = smooth_actions(64)
    model = calibrated("robust", data)
    stats = {"kind": "bounds_q99", "low": [-1.0] * 7, "high": [1.0] * 7, "mask": [True] * 6 + [False]}
    first = save_tokenizer(tmp_path / "a.pt", model, action_stats=stats, metrics={"val_mse": 0.1})
    checkpoint = read_tokenizer(first)
    loaded = checkpoint.model
    assert not loaded.training and not hasattr(loaded, "action_stats")  # the file's entries are not module attributes
    assert checkpoint.action_stats == stats and checkpoint.metrics == {"val_mse": 0.1}
    second = save_tokenizer(tmp_path / "b" / "other-name.pt", loaded, checkpoint.action_stats, checkpoint.metrics)
    assert digest(first) == digest(second)
    with torch.no_grad():
        assert torch.equal(loaded.encode(data), model.encode(data))
        assert torch.equal(loaded(data)[0], model(data)[0])
    assert tokenizer_identity(first) == tokenizer_identity(second) == checkpoint.identity
    assert tokenizer_identity(loaded, stats) == checkpoint.identity  # in memory, with its statistics


def test_identity_changes_with_weights_or_stats(tmp_path: Path) -> None:
    model = ActionRFSQAE()
    a = tokenizer_identity(save_tokenizer(tmp_path / "a.pt", model, action_stats={"low": [0.0]}))
    b = tokenizer_identity(save_tokenizer(tmp_path / "b.pt", model, action_stats={"low": [1.0]}))
    with torch.no_grad():
        model.decoder[0].bias.add_(1e-3)
    c = tokenizer_identity(save_tokenizer(tmp_path / "c.pt", model, action_stats={"low": [0.0]}))
    assert len({a, b, c}) == 3


def test_config_mismatch_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = save_tokenizer(tmp_path / "t.pt", ActionRFSQAE(num_layers=4))
    with pytest.raises(ValueError, match=r"num_layers=4 in file, 8 expected"):
        load_tokenizer(path, expected_config=TokenizerConfig())
    with pytest.raises(ValueError, match=r"quantizer='robust' in file, 'naive' expected"):
        load_tokenizer(path, expected_config={"quantizer": "naive"})


def test_state_dict_shape_mismatch_named(tmp_path: Path) -> None:
    model = ActionRFSQAE()
    payload_path = save_tokenizer(tmp_path / "t.pt", model)
    payload = torch.load(payload_path, weights_only=True)
    payload["state_dict"]["decoder.2.weight"] = torch.zeros(6, 256)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"decoder.2.weight: shape \[6, 256\] in file, \[7, 256\] expected"):
        load_tokenizer(tmp_path / "bad.pt")


def _seed_state_dict(model: ActionRFSQAE) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("quantizer.")}


def test_seed_model_dict_loads(tmp_path: Path) -> None:
    seed = ActionRFSQAE(use_layernorm=False)
    torch.save({"model": _seed_state_dict(seed), "epoch": 3, "config": {"use_layernorm": False}}, tmp_path / "s.pt")
    loaded = load_tokenizer(tmp_path / "s.pt")
    assert loaded.config.quantizer == "naive"
    x = smooth_actions(8)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], seed.eval()(x)[0])


def test_seed_model_state_dict_with_config_loads_as_layernorm(tmp_path: Path) -> None:
    seed = ActionRFSQAE(quantizer="layernorm", num_layers=6)
    config = {"action_dim": 7, "hidden_dim": 16, "num_layers": 6, "num_levels": 7, "use_layernorm": True,
              "lr": 1e-3}
    torch.save({"model_state_dict": _seed_state_dict(seed), "config": config}, tmp_path / "s.pt")
    with pytest.warns(UserWarning, match="lr"):
        loaded = load_tokenizer(tmp_path / "s.pt")
    assert loaded.config.quantizer == "layernorm" and loaded.num_layers == 6
    assert not loaded.decodable


def test_seed_dict_without_config_uses_seed_defaults(tmp_path: Path) -> None:
    torch.save({"model": _seed_state_dict(ActionRFSQAE())}, tmp_path / "s.pt")
    with pytest.warns(UserWarning, match="seed constructor's defaults"):
        loaded = load_tokenizer(tmp_path / "s.pt")
    assert loaded.config.quantizer == "layernorm"


def test_robust_without_calibration_buffers_is_refused(tmp_path: Path) -> None:
    payload = torch.load(save_tokenizer(tmp_path / "t.pt", ActionRFSQAE()), weights_only=True)
    del payload["state_dict"]["quantizer.scale"]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"missing keys \['quantizer.scale'\]"):
        load_tokenizer(tmp_path / "bad.pt")


def test_unrelated_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tokenizer checkpoint not found"):
        load_tokenizer(tmp_path / "missing.pt")
    torch.save({"format": "rvq.draft", "version": 1}, tmp_path / "draft.pt")
    with pytest.raises(ValueError, match="'rvq.draft' is not a tokenizer"):
        load_tokenizer(tmp_path / "draft.pt")
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="found keys \\['weights'\\]"):
        load_tokenizer(tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read tokenizer checkpoint"):
        load_tokenizer(tmp_path / "garbage.pt")


def test_pickled_objects_are_not_unpickled(tmp_path: Path) -> None:
    torch.save({"format": "rvq.tokenizer", "version": 1, "config": TokenizerConfig()}, tmp_path / "obj.pt")
    with pytest.raises(ValueError, match="cannot read tokenizer checkpoint"):
        load_tokenizer(tmp_path / "obj.pt")


def _seed_file(path: Path, state_dict: dict[str, torch.Tensor], **config) -> Path:
    torch.save({"model": state_dict, "config": {"action_dim": 7, "hidden_dim": 16, "num_layers": 8, "num_levels": 7,
                                                **config}}, path)
    return path


def test_seed_format_with_robust_buffers_loads_as_robust_with_the_same_outputs(tmp_path: Path) -> None:
    model = calibrated("robust", smooth_actions(64))  # ActionRFSQAE(use_layernorm=True), as the README builds it
    path = _seed_file(tmp_path / "s.pt", model.state_dict(), use_layernorm=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: nothing ambiguous here
        loaded = load_tokenizer(path)
    assert loaded.config.quantizer == "robust" and loaded.config.linear_skip == model.config.linear_skip
    x = smooth_actions(8, seed=3)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])
        assert torch.equal(loaded.decode_from_indices(loaded.encode(x)), model(x)[0])


def test_seed_format_without_buffers_loads_as_layernorm_with_a_not_decodable_warning(tmp_path: Path) -> None:
    model = ActionRFSQAE(quantizer="layernorm", linear_skip=False)
    path = _seed_file(tmp_path / "s.pt", _seed_state_dict(model), use_layernorm=True)
    with pytest.warns(UserWarning, match="NOT decodable from codes"):
        loaded = load_tokenizer(path)
    assert loaded.config.quantizer == "layernorm"


@pytest.mark.parametrize("buffers", ["untouched", "partial"])
def test_seed_format_that_cannot_be_told_apart_is_refused(tmp_path: Path, buffers: str) -> None:
    state = ActionRFSQAE(quantizer="layernorm").state_dict()  # carries buffers left at their initial values
    if buffers == "partial":
        state = {k: v for k, v in calibrated("robust", smooth_actions(64)).state_dict().items()
                 if k != "quantizer.center"}
    path = _seed_file(tmp_path / "s.pt", state, use_layernorm=True)
    with pytest.raises(ValueError, match="cannot tell which quantizer.*pass quantizer="):
        load_tokenizer(path)
    if buffers == "untouched":
        assert load_tokenizer(path, quantizer="layernorm").config.quantizer == "layernorm"


def test_rvq_format_refuses_another_quantizer_argument(tmp_path: Path) -> None:
    path = save_tokenizer(tmp_path / "t.pt", ActionRFSQAE())
    with pytest.raises(ValueError, match="records quantizer 'robust', not 'naive'"):
        load_tokenizer(path, quantizer="naive")


def test_a_coarse_decoder_survives_save_and_load_in_both_formats(tmp_path: Path) -> None:
    model = calibrated("robust", smooth_actions(64), coarse_decoder=True)
    with torch.no_grad():
        for parameter in model.coarse_decoder.parameters():
            parameter.add_(0.5)
    codes = model.encode(smooth_actions(8, seed=5))[..., :1]
    expected = model.decode_from_indices(codes)
    rvq_file = save_tokenizer(tmp_path / "t.pt", model)
    seed_file = _seed_file(tmp_path / "s.pt", model.state_dict(), use_layernorm=True)
    for path in (rvq_file, seed_file):
        loaded = load_tokenizer(path)
        assert loaded.config.coarse_decoder
        with torch.no_grad():
            assert torch.equal(loaded.decode_from_indices(codes), expected)
