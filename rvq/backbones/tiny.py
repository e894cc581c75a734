"""Randomly initialized LLaVA-style backbones built from `transformers` configs alone (no download).

- `tiny`: SigLIP (1 layer, 32-d, 32-px patches → 49 image tokens) + Llama (2 layers, 64-d). For CPU
  tests, mocks and throughput benchmarks.
- `7b`: SigLIP-so400m shape + Llama-2-7B shape (4096-d, 32 layers), 7.19 B parameters (`count_parameters`). For GPU latency
  measurements: weights do not change latency. Build it on a GPU in bf16, or on `meta` to count.

The processor is a real `LlavaProcessor` (SigLIP image processor + a byte-level BPE tokenizer made
here), so `FeatureExtractor.from_pretrained(folder)` loads a saved tiny backbone through the same path
as a hub model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from rvq.backbones.extractor import FeatureExtractor
from rvq.backbones.preprocess import POLICY_IMAGE_SIZE

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<image>")
SIZES = ("tiny", "7b")


@dataclass
class TinyBackboneConfig:
    """`rvq make-tiny-backbone`: a randomly initialized tiny LLaVA backbone, saved like a hub model (tests, demos)."""

    out_dir: str = "runs/tiny-backbone"  # output folder
    seed: int = 0  # the random initialization (part of the backbone's name, so of its features' identity)


def byte_level_tokenizer():
    """A `PreTrainedTokenizerFast` over the 256 byte symbols plus special tokens; BOS is prepended."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=["<image>"],
    )


def backbone_config(size: str = "tiny"):
    """`LlavaConfig` for a named size (see module docstring)."""
    from transformers import LlamaConfig, LlavaConfig, SiglipVisionConfig

    if size not in SIZES:
        raise ValueError(f"unknown backbone size {size!r}; choose from {SIZES}")
    tokenizer_vocab = 256 + len(SPECIAL_TOKENS)
    image_token = 256 + SPECIAL_TOKENS.index("<image>")
    if size == "tiny":
        vision = SiglipVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            image_size=POLICY_IMAGE_SIZE, patch_size=32,
        )
        text = LlamaConfig(
            vocab_size=tokenizer_vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        )
    else:
        vision = SiglipVisionConfig(
            hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
            image_size=POLICY_IMAGE_SIZE, patch_size=14,
        )
        text = LlamaConfig(
            vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048,
        )
    text.bos_token_id, text.eos_token_id, text.pad_token_id = (256 + SPECIAL_TOKENS.index(t) for t in ("<s>", "</s>", "<pad>"))
    num_patches = (POLICY_IMAGE_SIZE // vision.patch_size) ** 2
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token,
        image_seq_length=num_patches,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )


def backbone_processor(size: str = "tiny"):
    """The `LlavaProcessor` matching `backbone_config(size)`."""
    from transformers import LlavaProcessor, SiglipImageProcessorPil

    config = backbone_config(size)
    image_processor = SiglipImageProcessorPil(size={"height": POLICY_IMAGE_SIZE, "width": POLICY_IMAGE_SIZE})
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=byte_level_tokenizer(),
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy="full",
        image_token="<image>",
    )


def build_backbone(
    size: str = "tiny",
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> FeatureExtractor:
    """A randomly initialized backbone of the named size, wrapped as a `FeatureExtractor`."""
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(seed)
    with torch.device(device):
        model = LlavaForConditionalGeneration(backbone_config(size)).to(dtype)
    # what `save_pretrained` records in the config: a backbone built here has the features' identity it has once
    # saved and loaded again (heads trained on it then match the copy a policy bundle holds)
    model.config.architectures = [type(model).__name__]
    return FeatureExtractor(model, backbone_processor(size), name=f"random-llava-{size}-seed{seed}")


def count_parameters(size: str) -> int:
    """Parameter count of a named size, without allocating weights (built on `meta`)."""
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(backbone_config(size))
    return sum(p.numel() for p in model.parameters())


def save_backbone(extractor: FeatureExtractor, out_dir: str | os.PathLike) -> Path:
    """Save model and processor so `FeatureExtractor.from_pretrained(out_dir)` loads them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extractor.model.save_pretrained(out)
    extractor.processor.save_pretrained(out)
    return out
