"""The paired test the decoding rows' claims rest on (`rvq.eval.report.mcnemar_exact`, which scripts/paired_rows.py
and `rvq eval-report --paired-against` use)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import paired_rows  # noqa: E402

from rvq.eval.report import mcnemar_exact  # noqa: E402


@pytest.mark.parametrize(("gained", "lost", "p"), [
    (0, 0, 1.0), (0, 3, 0.25), (3, 0, 0.25), (1, 2, 1.0), (2, 10, 79 / 4096 * 2), (0, 10, 2 / 1024),
])
def test_exact_mcnemar_is_the_two_sided_binomial_test_on_discordant_pairs(gained: int, lost: int, p: float) -> None:
    assert paired_rows.mcnemar_exact(gained, lost) == pytest.approx(p) and mcnemar_exact(gained, lost) == pytest.approx(p)
