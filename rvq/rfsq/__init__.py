"""Residual finite scalar quantization of action chunks (Phase 1's tokenizer)."""

from rvq.rfsq.autoencoder import ActionRFSQAE, build_quantizer
from rvq.rfsq.build import TokenizerModel, build_tokenizer_model
from rvq.rfsq.cascade import CascadeRFSQAE
from rvq.rfsq.checkpoint import (TOKENIZER_FORMAT, TOKENIZER_VERSION, TokenizerCheckpoint, load_tokenizer, read_tokenizer,
                                 save_tokenizer, tokenizer_identity)
from rvq.rfsq.config import QUANTIZERS, TokenizerConfig
from rvq.rfsq.layernorm import LayerNormRFSQ
from rvq.rfsq.naive import NaiveRFSQ
from rvq.rfsq.residual import NotDecodableError, ResidualScalarQuantizer
from rvq.rfsq.robust import RobustRFSQ

__all__ = [
    "ActionRFSQAE",
    "CascadeRFSQAE",
    "LayerNormRFSQ",
    "NaiveRFSQ",
    "NotDecodableError",
    "QUANTIZERS",
    "ResidualScalarQuantizer",
    "RobustRFSQ",
    "TOKENIZER_FORMAT",
    "TOKENIZER_VERSION",
    "TokenizerCheckpoint",
    "TokenizerConfig",
    "TokenizerModel",
    "build_quantizer",
    "build_tokenizer_model",
    "load_tokenizer",
    "read_tokenizer",
    "save_tokenizer",
    "tokenizer_identity",
]
