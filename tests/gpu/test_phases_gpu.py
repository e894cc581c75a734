"""The GPU suite: Phase 1 on real demonstrations, Phase 2 on scripted LIBERO demos through the tiny
backbone, Phase 3 with EGL rendering on the GPU (the expert reads success; the trained RSD policy runs
end to end), and the seed's bars when real OpenVLA weights or checkpoints are named by
RVQ_OPENVLA_PATH / RVQ_OPENVLA_CHECKPOINTS. Thresholds: `rvq.criteria`. Skipped with a reason without CUDA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rvq import criteria
from tests.gpu.checks import expert_sample, phase1, phase2, rsd_eval, scripted_demos
from tests.gpu.conftest import requires_cuda

pytestmark = [pytest.mark.gpu, requires_cuda]


def _needs_libero() -> None:
    pytest.importorskip("libero", reason="LIBERO not installed: nox -s gpu installs it")


def test_phase1_robust_beats_naive_on_real_demos(tmp_path: Path) -> None:
    phase1("cuda", tmp_path)


def test_scripted_expert_success_on_a_task_sample(tmp_path: Path) -> None:
    _needs_libero()
    expert_sample({"libero_spatial": [0, 3, 4, 5, 8], "libero_object": [0, 1, 2, 6, 9]}, trials=10, out_dir=tmp_path)


def test_phase2_heads_and_rsd_policy_on_scripted_demos(tmp_path: Path) -> None:
    _needs_libero()
    demos = scripted_demos(tmp_path)
    result = phase2("cuda", tmp_path / "phase2", demos)
    rsd_eval(result["checkpoints"], tmp_path / "rsd-eval", "libero_spatial", tasks=[0], trials=2)


@pytest.mark.skipif(not os.environ.get("RVQ_OPENVLA_PATH"), reason="RVQ_OPENVLA_PATH names no local OpenVLA weights")
def test_phase2_openvla_features_reach_the_seed_bars(tmp_path: Path) -> None:
    _needs_libero()
    demos = Path(os.environ["RVQ_LIBERO_DEMOS"]) if os.environ.get("RVQ_LIBERO_DEMOS") else scripted_demos(tmp_path)
    phase2("cuda", tmp_path / "phase2", demos, backbone=os.environ["RVQ_OPENVLA_PATH"])


@pytest.mark.skipif(not os.environ.get("RVQ_OPENVLA_CHECKPOINTS"),
                    reason="RVQ_OPENVLA_CHECKPOINTS names no OpenVLA-based checkpoint folder")
def test_openvla_rsd_policy_success_on_libero_spatial(tmp_path: Path) -> None:
    _needs_libero()
    trials = int(os.environ.get("RVQ_EVAL_TRIALS", "50"))
    rsd_eval(Path(os.environ["RVQ_OPENVLA_CHECKPOINTS"]), tmp_path, "libero_spatial", tasks=list(range(10)),
             trials=trials, min_success=criteria.OPENVLA_RSD_SPATIAL_SUCCESS_RATE)
