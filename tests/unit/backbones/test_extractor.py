"""FeatureExtractor: the prompt, the LLaVA route against the library's own forward, the Prismatic
(OpenVLA/OFT) route on a tiny model of the same interface, identities, and failures that raise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from rvq.backbones import FeatureExtractor, build_backbone, count_parameters, openvla_prompt, save_backbone
from rvq.backbones.extractor import OPENVLA_EMPTY_TOKEN, append_token_if_missing
from rvq.backbones.tiny import backbone_processor


@pytest.fixture(scope="module")
def tiny() -> FeatureExtractor:
    return build_backbone("tiny", seed=0)


def _images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_prompt_and_image_checks(tiny: FeatureExtractor) -> None:
    assert openvla_prompt("  Pick up the Bowl ") == "In: What action should the robot take to pick up the bowl?\nOut:"
    with pytest.raises(ValueError, match="instruction"):
        openvla_prompt("  ")
    with pytest.raises(ValueError, match="uint8"):
        tiny(_images(1).astype(np.float32), ["go"])
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        tiny(_images(1)[..., 0], ["go"])


def test_the_extractor_reads_images_as_given(tiny: FeatureExtractor) -> None:
    """Turning LIBERO's renders is an observation step now (rvq.processors), not the extractor's: it sees the image
    it is given, and its identity names no image preparation."""
    image = _images(1, 224)
    assert not torch.allclose(tiny(image, ["go"]), tiny(np.ascontiguousarray(image[:, ::-1, ::-1]), ["go"]))
    assert tiny.describe()["preprocess"] == {"prompt": tiny.describe()["preprocess"]["prompt"]}


def test_llava_route_equals_library_forward_at_last_prompt_token(tiny: FeatureExtractor) -> None:
    images, texts = _images(3), ["pick up the bowl", "open the drawer", "a much longer instruction than the others"]
    features = tiny(images, texts)
    assert features.shape == (3, tiny.feature_dim) and features.dtype == torch.float32
    inputs = tiny._inputs(images, texts)
    with torch.no_grad():
        reference = tiny.model(**inputs, output_hidden_states=True).hidden_states[-1]
    last = inputs["attention_mask"].sum(dim=1) - 1
    torch.testing.assert_close(features, reference[torch.arange(3), last])
    # Padding must not matter: each sample alone gives the same feature.
    alone = torch.cat([tiny(images[i : i + 1], texts[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(features, alone, atol=1e-5, rtol=1e-5)


def test_features_depend_on_image_and_instruction(tiny: FeatureExtractor) -> None:
    images = _images(2)
    a = tiny(images[:1], ["pick up the bowl"])
    assert not torch.allclose(a, tiny(images[1:], ["pick up the bowl"]))
    assert not torch.allclose(a, tiny(images[:1], ["open the drawer"]))
    # The 180° rotation is part of the path: a rotated render gives a different feature.
    assert not torch.allclose(a, tiny(images[:1, ::-1, ::-1], ["pick up the bowl"]))


def test_saved_backbone_loads_through_from_pretrained_with_same_identity(tiny: FeatureExtractor, tmp_path: Path) -> None:
    save_backbone(tiny, tmp_path / "bb")
    loaded = FeatureExtractor.from_pretrained(tmp_path / "bb", device="cpu")
    assert loaded.identity == tiny.identity and loaded.family == "llava"
    images = _images(2)
    torch.testing.assert_close(loaded(images, ["a", "b"]), tiny(images, ["a", "b"]))
    other = build_backbone("tiny", seed=1)
    assert other.identity != tiny.identity


def test_bad_calls_raise(tiny: FeatureExtractor) -> None:
    with pytest.raises(ValueError, match="2 images but 1 instructions"):
        tiny(_images(2), ["a"])
    with pytest.raises(TypeError, match="sequence of strings"):
        tiny(_images(1), "a")
    with pytest.raises(ValueError, match="empty batch"):
        tiny(_images(0), [])


def test_non_finite_features_raise_instead_of_being_replaced(tiny: FeatureExtractor) -> None:
    broken = build_backbone("tiny", seed=0)
    with torch.no_grad():
        broken.model.model.language_model.norm.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        broken(_images(1), ["a"])


def test_full_size_variant_has_7b_shape_without_allocating() -> None:
    params = count_parameters("7b")
    assert 6.5e9 < params < 8e9
    from rvq.backbones.tiny import backbone_config

    assert backbone_config("7b").text_config.hidden_size == 4096
    with pytest.raises(ValueError, match="unknown backbone size"):
        backbone_config("13b")


class TinyPrismatic(nn.Module):
    """The OpenVLA/OFT interface (vision_backbone, projector, language_model) at toy size; like OFT,
    its forward fails without labels."""

    def __init__(self, processor) -> None:
        super().__init__()
        text = LlamaConfig(vocab_size=32001, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4)
        self.config = text
        self.patch = nn.Conv2d(3, 16, kernel_size=32, stride=32)
        self.projector = nn.Linear(16, 32)
        self.language_model = LlamaForCausalLM(text)

    def vision_backbone(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.patch(pixel_values).flatten(2).transpose(1, 2)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def forward(self, *args, labels=None, **kwargs):
        if labels is None:
            raise RuntimeError("OFT forward needs labels")


class PrismaticLikeProcessor:
    """What OpenVLA's PrismaticProcessor does: tokenizer over the text, image processor over the images."""

    def __init__(self) -> None:
        llava = backbone_processor("tiny")
        self.tokenizer, self.image_processor = llava.tokenizer, llava.image_processor

    def __call__(self, text, images, return_tensors="pt", padding=True):
        out = dict(self.tokenizer(text, return_tensors=return_tensors, padding=padding))
        out["pixel_values"] = self.image_processor(images, return_tensors=return_tensors)["pixel_values"]
        return out


def test_prismatic_route_never_calls_forward_and_matches_manual_composition() -> None:
    processor = PrismaticLikeProcessor()
    model = TinyPrismatic(processor).eval()
    extractor = FeatureExtractor(model, processor, name="tiny-prismatic")
    assert extractor.family == "prismatic" and extractor.feature_dim == 32
    images = _images(2)
    features = extractor(images, ["pick up the bowl", "open it"])
    assert features.shape == (2, 32) and torch.isfinite(features).all()
    # Manual reference for sample 0: BOS, patches, rest of prompt, OpenVLA's empty token.
    inputs = extractor._inputs(images[:1], ["pick up the bowl"])
    ids = torch.cat([inputs["input_ids"], torch.tensor([[OPENVLA_EMPTY_TOKEN]])], dim=1)
    with torch.no_grad():
        emb = model.get_input_embeddings()(ids)
        patches = model.projector(model.vision_backbone(inputs["pixel_values"]))
        seq = torch.cat([emb[:, :1], patches, emb[:, 1:]], dim=1)
        reference = model.language_model.model(inputs_embeds=seq).last_hidden_state[0, -1]
    torch.testing.assert_close(features[0], reference, atol=1e-5, rtol=1e-5)


def test_append_token_if_missing_respects_right_padding() -> None:
    ids = torch.tensor([[1, 5, 6, 0], [1, 7, 0, 0], [1, 9, 9, 29871]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    new_ids, new_mask = append_token_if_missing(ids, mask, 29871)
    assert new_ids.tolist() == [[1, 5, 6, 29871, 0], [1, 7, 29871, 0, 0], [1, 9, 9, 29871, 0]]
    assert new_mask.sum(dim=1).tolist() == [4, 3, 4]


def test_unknown_model_family_is_refused() -> None:
    with pytest.raises(TypeError, match="neither a Prismatic"):
        FeatureExtractor(nn.Linear(2, 2), processor=None, name="x")


def test_the_identity_pins_every_weight_and_refuses_a_non_finite_one() -> None:
    a, b = build_backbone("tiny", seed=0), build_backbone("tiny", seed=0)
    assert a.identity == b.identity
    name, param = max(b.model.named_parameters(), key=lambda item: item[1].numel())
    with torch.no_grad():  # beyond the first values of the largest tensor: an identity of heads must see it
        param.view(-1)[-1] += 1e-3
    b._identity = None
    assert b.identity != a.identity
    with torch.no_grad():
        param.view(-1)[-1] = float("nan")
    b._identity = None
    with pytest.raises(ValueError, match=f"backbone weight '{name}'.*NaN or inf"):
        _ = b.identity
