"""`rvq.module_mode.eval_mode`: eval mode inside the block, the module's own mode after it."""

from __future__ import annotations

import pytest
from torch import nn

from rvq.module_mode import eval_mode


@pytest.mark.parametrize("training", [True, False])
def test_the_block_runs_in_eval_mode_and_the_mode_comes_back(training: bool) -> None:
    module = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train(training)
    with eval_mode(module):
        assert not module.training and not module[1].training
    assert module.training is training and module[1].training is training


def test_the_mode_comes_back_when_the_block_raises() -> None:
    module = nn.Linear(2, 2).train()
    with pytest.raises(RuntimeError, match="inside"):
        with eval_mode(module):
            raise RuntimeError("inside")
    assert module.training
