"""Weight decay on matrices only, and the library warm-up/cosine schedule (rvq.training.optim)."""

import pytest
import torch

from rvq.config_cli import config_from
from rvq.models.config import TokenSpace
from rvq.training.heads import TrainHeadConfig, build_head
from rvq.training.optim import configure_optimizer, no_weight_decay_names, weight_decay_groups


def _main_head() -> torch.nn.Module:
    return build_head(config_from(TrainHeadConfig, kind="main", width=32, depth=1, heads=2).model_config(10, TokenSpace()))


def _groups(model: torch.nn.Module) -> tuple[set[str], set[str]]:
    decay, keep = weight_decay_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    return set(decay["names"]), set(keep["names"])


def test_main_head_decays_matrices_not_norms_biases_or_embeddings():
    model = _main_head()
    decay, keep = _groups(model)
    assert decay | keep == {n for n, _ in model.named_parameters()} and not decay & keep
    assert {"head_weight", "context.1.weight", "blocks.0.qkv.weight", "blocks.0.proj.weight"} <= decay
    assert {"code_embedding.weight", "layer_embedding", "start", "head_bias", "norm.weight", "norm.bias",
            "blocks.0.norm1.weight", "context.0.weight", "blocks.0.qkv.bias"} <= keep
    # Every decayed parameter is a matrix that multiplies an input: no norm gain, bias or embedding among them.
    assert all("norm" not in n and "bias" not in n and "embedding" not in n for n in decay)


def test_decay_moves_only_the_decay_group():
    """With zero gradients, AdamW's decoupled decay alone changes weights: matrices shrink, the rest stay."""
    model = _main_head()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer, _ = configure_optimizer(model, lr=0.1, weight_decay=0.5, steps=10, warmup_steps=0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    decay, keep = _groups(model)
    params = dict(model.named_parameters())
    for name in keep:
        assert torch.equal(params[name], before[name]), name
    for name in decay:
        assert torch.allclose(params[name], before[name] * (1 - 0.1 * 0.5)), name


def test_schedule_warms_up_then_decays_to_zero():
    model = _main_head()
    optimizer, scheduler = configure_optimizer(model, lr=1e-3, weight_decay=0.0, steps=100, warmup_steps=10)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] < lrs[5] < lrs[10] == pytest.approx(1e-3)
    assert lrs[55] == pytest.approx(0.5e-3, rel=1e-6) and lrs[99] < 1e-6
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert [g["lr"] for g in optimizer.param_groups] == [optimizer.param_groups[0]["lr"]] * 2


def test_naming_a_parameter_the_model_lacks_is_refused():
    model = _main_head()
    model.no_weight_decay = lambda: {"embedding_that_was_renamed"}
    with pytest.raises(ValueError, match="embedding_that_was_renamed"):
        no_weight_decay_names(model)
