"""Feature standardization inside the heads: statistics of the training rows, a floor on the std, saved and loaded
with the weights, and heads of the earlier format (no standardization) still load and behave as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rvq.models import DraftConfig, DraftModel, MainConfig, MainModel, load_draft, load_main, save_head
from rvq.models.standardize import MIN_STD, FeatureStandardizer
from tests.unit.models.helpers import SMALL_TOKENS


def test_fit_centres_and_scales_each_dimension_with_a_floor() -> None:
    torch.manual_seed(0)
    x = torch.stack([torch.randn(500) * 3 + 2, torch.full((500,), 5.0), torch.randn(500) * 1e-4], dim=1)
    z = FeatureStandardizer(3).fit(x)(x)
    assert torch.allclose(z[:, 0].mean(), torch.tensor(0.0), atol=1e-5)
    assert torch.allclose(z[:, 0].std(), torch.tensor(1.0), atol=1e-4)
    assert torch.equal(z[:, 1], torch.zeros(500))  # constant: centred, not divided by zero
    assert z[:, 2].abs().max() < 1e-3 / MIN_STD  # nearly constant: the floor keeps it small


def test_fit_refuses_bad_rows() -> None:
    with pytest.raises(ValueError, match=r"must be \[N, 3\]"):
        FeatureStandardizer(3).fit(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        FeatureStandardizer(2).fit(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStandardizer(2).fit(torch.zeros(1, 2))


@pytest.mark.parametrize("kind", ["draft", "main"])
def test_statistics_are_saved_and_loaded_with_the_head(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    if kind == "draft":
        model = DraftModel(DraftConfig(6, SMALL_TOKENS, width=16, dropout=0.0, standardize_features=True)).eval()
    else:
        model = MainModel(MainConfig(6, SMALL_TOKENS, width=16, depth=1, heads=2, dropout=0.0,
                                     standardize_features=True)).eval()
    rows = torch.randn(64, 6) * torch.tensor([1e-2, 1, 10, 100, 1, 1]) + 3
    model.standardize.fit(rows)
    save_head(tmp_path / "h.pt", model, "tok", "feat")
    loaded = (load_draft if kind == "draft" else load_main)(tmp_path / "h.pt")
    assert torch.equal(loaded.standardize.mean, model.standardize.mean)
    assert torch.equal(loaded(rows[:4]), model(rows[:4]))
    # the statistics change the output: a head that forgot them would not match
    plain = (load_draft if kind == "draft" else load_main)(tmp_path / "h.pt")
    plain.standardize.fit(torch.randn(64, 6))
    assert not torch.allclose(plain(rows[:4]), model(rows[:4]))


def test_earlier_configs_without_the_flag_load_unstandardized() -> None:
    config = MainConfig(6, SMALL_TOKENS, width=16, depth=1, heads=2).to_dict()
    del config["standardize_features"]
    model = MainModel(MainConfig.from_dict(config))
    assert isinstance(model.standardize, torch.nn.Identity)
    assert not any("standardize" in key for key in model.state_dict())
