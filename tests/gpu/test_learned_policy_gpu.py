"""The learned-policy study at full scale (issue 15): all 10 tasks, 50 randomized-reset demos per task, the 50
official initial states; the learned RSD policy on robust tokens must reach the targets in `rvq.criteria`. The
logic runs on a CPU too (`tests.gpu.checks.learned_policy_study('cpu', ..., tasks=[0], demos_per_task=3,
trials=2)`), in minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvq import criteria
from tests.gpu.checks import learned_policy_study
from tests.gpu.conftest import requires_cuda

pytestmark = [pytest.mark.gpu, requires_cuda]


@pytest.mark.parametrize(("suite", "target"), [("libero_object", criteria.LEARNED_RSD_OBJECT_SUCCESS_RATE),
                                               ("libero_spatial", criteria.LEARNED_RSD_SPATIAL_SUCCESS_RATE)])
def test_learned_rsd_policy_reaches_the_study_targets(tmp_path: Path, suite: str, target: float) -> None:
    pytest.importorskip("libero", reason="LIBERO not installed: nox -s gpu installs it")
    learned_policy_study("cuda", tmp_path / suite, suite, min_rsd_success=target)
