"""Phase 2 token predictors: a draft for the coarse RFSQ layers and a layer-causal main model."""

from rvq.models.checkpoint import HeadCheckpoint, check_pair, load_draft, load_main, read_draft, read_main, save_head
from rvq.models.config import DraftConfig, MainConfig, TokenSpace
from rvq.models.draft import DraftModel
from rvq.models.main import MainModel

__all__ = [
    "DraftConfig",
    "DraftModel",
    "MainConfig",
    "MainModel",
    "HeadCheckpoint",
    "TokenSpace",
    "check_pair",
    "load_draft",
    "load_main",
    "read_draft",
    "read_main",
    "save_head",
]
