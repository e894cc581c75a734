"""The tokenizer model a `TokenizerConfig` describes: `ActionRFSQAE`, or `CascadeRFSQAE` when `config.cascade`."""

from __future__ import annotations

from typing import Union

from rvq.rfsq.autoencoder import ActionRFSQAE
from rvq.rfsq.cascade import CascadeRFSQAE
from rvq.rfsq.config import TokenizerConfig

TokenizerModel = Union[ActionRFSQAE, CascadeRFSQAE]


def build_tokenizer_model(config: TokenizerConfig) -> TokenizerModel:
    """A fresh (untrained) model of `config`'s architecture (unset recipe fields: the quantizer's recipe)."""
    config = config.resolved()
    return CascadeRFSQAE(config) if config.cascade else ActionRFSQAE.from_config(config)
