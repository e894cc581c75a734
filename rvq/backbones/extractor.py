"""`FeatureExtractor`: observation image + instruction → VLA feature vector `[B, D]`.

The feature is the language model's last-layer hidden state (after the final norm) at the last
prompt token. The images are read as given: turning LIBERO's renders and resizing them are observation steps
(`rvq.processors.observation`) that run before, declared by a policy's bundle. Two model families are supported
through the same prompt:

- LLaVA-style `transformers` models (`LlavaForConditionalGeneration`; the tiny backbone): the image
  token is prepended to the prompt and the base model's `last_hidden_state` is read.
- Prismatic models (OpenVLA, OpenVLA-OFT, remote code): the vision backbone, projector and language
  model are called directly. OFT's `forward` fails without labels, so it is never called; the patch
  embeddings are inserted after BOS exactly as OpenVLA's own forward does, and OpenVLA's empty token
  (29871, appended by `predict_action`) is appended when the prompt lacks it.

Nothing is ever substituted for a failed call: every failure raises.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from PIL import Image

from rvq.backbones.preprocess import PROMPT_TEMPLATE, check_image, openvla_prompt
from rvq.device import resolve_device

OPENVLA_EMPTY_TOKEN = 29871


def _family(model: torch.nn.Module) -> str:
    if all(hasattr(model, name) for name in ("vision_backbone", "projector", "language_model")):
        return "prismatic"
    base = getattr(model, "model", None)
    if base is not None and hasattr(base, "get_image_features") and hasattr(base, "language_model"):
        return "llava"
    raise TypeError(
        f"{type(model).__name__} is neither a Prismatic (OpenVLA) model nor a LLaVA-style model: "
        "expected `vision_backbone`/`projector`/`language_model` or `model.get_image_features`"
    )


_VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "dtype", "torch_dtype", "_commit_hash")


def _strip_volatile(config: Any) -> Any:
    """Config dict without keys that change on save/load (versions, paths, dtypes), recursively."""
    if isinstance(config, dict):
        return {k: _strip_volatile(v) for k, v in config.items() if k not in _VOLATILE_CONFIG_KEYS}
    return config


def weight_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer, by name, shape and every value (as float32, so a checkpoint stored in
    bf16 has one fingerprint whether it runs in bf16 or float32); a NaN or inf anywhere is refused, naming the tensor.
    One pass over the weights when the identity is first asked for: a 7B backbone is 28 GB of float32, which sha256
    reads at 0.5-2 GB/s on one CPU core (measured 0.47 GB/s on this project's busy 2-core machine): 15-60 s per
    process, once."""
    digest = hashlib.sha256()
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor.detach()).all()):
            raise ValueError(f"backbone weight {name!r} {list(tensor.shape)} holds NaN or inf")  # checked where it is
        values = tensor.detach().float().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(list(tensor.shape)).encode())
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()


class FeatureExtractor:
    """Maps `(images [B, H, W, 3] uint8, instructions [B])` → features `[B, D]` (float32, on `device`)."""

    def __init__(self, model: torch.nn.Module, processor: Any, name: str) -> None:
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.family = _family(model)
        text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.feature_dim = int(text_config.hidden_size)
        self._identity: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        device: str | torch.device = "auto",
        dtype: torch.dtype | None = None,
        trust_remote_code: bool = False,
    ) -> "FeatureExtractor":
        """Load processor and model from a hub id or a local folder (bf16 on GPU, fp32 on CPU by default).

        `trust_remote_code`: run Python code that the folder or hub repo ships (OpenVLA/OFT need it). Off by
        default: a folder whose configs name such code (`auto_map`) is refused before anything is imported.
        """
        import transformers
        from transformers import AutoConfig, AutoProcessor

        device = resolve_device(device)
        if dtype is None:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        source = str(name_or_path)
        if not trust_remote_code:
            refuse_remote_code(source)
        try:
            config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
            processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
        except ValueError as exc:
            if not trust_remote_code and "trust_remote_code" in str(exc):
                raise ValueError(f"{source}: {REMOTE_CODE_HELP}") from exc
            raise
        auto_map = getattr(config, "auto_map", None) or {}
        if "AutoModelForVision2Seq" in auto_map:  # OpenVLA / OFT remote code (only reached when trusted)
            from transformers.dynamic_module_utils import get_class_from_dynamic_module

            model_cls = get_class_from_dynamic_module(auto_map["AutoModelForVision2Seq"], source)
        else:
            model_cls = getattr(transformers, "AutoModelForVision2Seq", None) or transformers.AutoModelForImageTextToText
        model = model_cls.from_pretrained(source, dtype=dtype, trust_remote_code=trust_remote_code)
        return cls(model.to(device), processor, name=os.path.basename(source.rstrip("/")) or source)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def describe(self) -> dict[str, Any]:
        """What determines the features from given images: model class, config, weights and prompt."""
        config = _strip_volatile(json.loads(self.model.config.to_json_string(use_diff=False)))
        return {
            "name": self.name,
            "dtype": str(self.dtype),
            "class": type(self.model).__name__,
            "family": self.family,
            "feature_dim": self.feature_dim,
            "config": config,
            "weights": weight_fingerprint(self.model),
            "preprocess": {"prompt": PROMPT_TEMPLATE},
        }

    @property
    def identity(self) -> str:
        """Hash of `describe()`: features cached with one extractor are refused by another."""
        if self._identity is None:
            # Folder name and compute dtype (bf16 on GPU, fp32 on CPU) do not define the features.
            described = {k: v for k, v in self.describe().items() if k not in ("name", "dtype")}
            blob = json.dumps(described, sort_keys=True, default=str).encode()
            self._identity = hashlib.sha256(blob).hexdigest()
        return self._identity

    def _inputs(self, images: Sequence[np.ndarray] | np.ndarray, instructions: Sequence[str]) -> dict[str, torch.Tensor]:
        if isinstance(instructions, str):
            raise TypeError("instructions must be a sequence of strings, one per image")
        if len(images) != len(instructions):
            raise ValueError(f"got {len(images)} images but {len(instructions)} instructions")
        if len(images) == 0:
            raise ValueError("empty batch")
        pil = [Image.fromarray(np.ascontiguousarray(check_image(img))) for img in images]
        prompts = [openvla_prompt(text) for text in instructions]
        if self.family == "llava":
            prompts = [self.processor.image_token + p for p in prompts]
        inputs = self.processor(text=prompts, images=pil, return_tensors="pt", padding=True)
        return {key: value.to(self.device) for key, value in inputs.items()}

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray] | np.ndarray, instructions: Sequence[str]) -> torch.Tensor:
        inputs = self._inputs(images, instructions)
        pixel_values = inputs["pixel_values"].to(self.dtype)
        if self.family == "llava":
            hidden, mask = self._llava_hidden(inputs["input_ids"], inputs["attention_mask"], pixel_values)
        else:
            hidden, mask = self._prismatic_hidden(inputs["input_ids"], inputs["attention_mask"], pixel_values)
        last = mask.long().sum(dim=1) - 1  # index of the last real token (right padding)
        features = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
        if not torch.isfinite(features).all():
            raise FloatingPointError(f"{self.name}: backbone produced non-finite features")
        return features

    def features(self, observations: Sequence[dict[str, Any]]) -> torch.Tensor:
        """Observations (the env contract: "agentview" image, "instruction"), after their observation steps →
        `[B, D]`; the call every feature source shares (`rvq.backbones.state.StateFeatures` reads the state)."""
        return self([obs["agentview"] for obs in observations], [obs["instruction"] for obs in observations])

    def _llava_hidden(self, input_ids, attention_mask, pixel_values) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        return out.last_hidden_state, attention_mask

    def _prismatic_hidden(self, input_ids, attention_mask, pixel_values) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, attention_mask = append_token_if_missing(input_ids, attention_mask, OPENVLA_EMPTY_TOKEN)
        patches = self.model.projector(self.model.vision_backbone(pixel_values))  # [B, P, D]
        embeddings = self.model.get_input_embeddings()(input_ids)  # [B, T, D]
        embeddings = torch.cat([embeddings[:, :1], patches.to(embeddings.dtype), embeddings[:, 1:]], dim=1)
        patch_mask = attention_mask.new_ones(patches.shape[:2])
        mask = torch.cat([attention_mask[:, :1], patch_mask, attention_mask[:, 1:]], dim=1)
        language_model = self.model.language_model
        decoder = getattr(language_model, "model", None)
        if decoder is not None:
            hidden = decoder(inputs_embeds=embeddings, attention_mask=mask).last_hidden_state
        else:
            hidden = language_model(inputs_embeds=embeddings, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        return hidden, mask


REMOTE_CODE_HELP = (
    "this backbone asks to run Python code it ships (an `auto_map` entry pointing at its own modules); rvq does "
    "not run code from model folders unless you opt in: pass --trust-remote-code (Python: "
    "trust_remote_code=True) if you trust its source. OpenVLA and OpenVLA-OFT need it."
)
CONFIG_FILES = ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def refuse_remote_code(source: str) -> None:
    """Raise if the local folder `source` asks for remote code (`auto_map` in one of its configs); the
    message lists the folder's Python files too. Hub ids are checked by `transformers` itself."""
    folder = Path(source)
    if not folder.is_dir():
        return
    asking = []
    for name in CONFIG_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(data, dict) and data.get("auto_map"):
            asking.append(f"auto_map in {name}: {sorted(data['auto_map'])}")
    code = sorted(p.name for p in folder.glob("*.py"))
    if asking:
        raise ValueError(f"{folder}: {REMOTE_CODE_HELP} Found: {'; '.join(asking)}"
                         + (f"; code files {code}" if code else ""))


def append_token_if_missing(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, token: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append `token` after each right-padded row's last real token unless it already ends with it."""
    lengths = attention_mask.long().sum(dim=1)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    needs = input_ids[rows, lengths - 1] != token
    if not needs.any():
        return input_ids, attention_mask
    pad = input_ids.new_zeros(input_ids.shape[0], 1)
    input_ids = torch.cat([input_ids, pad], dim=1)
    attention_mask = torch.cat([attention_mask, attention_mask.new_zeros(attention_mask.shape[0], 1)], dim=1)
    input_ids[rows[needs], lengths[needs]] = token
    attention_mask[rows[needs], lengths[needs]] = 1
    return input_ids, attention_mask
