"""GPU tests: mark each module with `pytestmark = [pytest.mark.gpu, requires_cuda]`."""

from __future__ import annotations

import pytest
import torch

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: the GPU suite needs one (pytest -m gpu on a GPU runner)"
)
