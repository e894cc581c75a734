"""`eval_mode(module)`: a block runs with the module in eval mode, which it leaves in the mode it had."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode inside the block (no calibration, no dropout), its own mode restored after it, also
    when the block raises."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
