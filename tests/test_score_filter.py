"""The score filter: an exact, exportable median that commutes with the mask threshold."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.checkpoint import model_from_checkpoint
from training.median import median_filter, median_network
from training.model import LEGACY_SCORE_FILTER, ModelConfig, UNet, foreground_score
from training.train import build_parser, config_from_args


def reference_median(x: torch.Tensor, k: int) -> torch.Tensor:
    xp = F.pad(x, (k // 2,) * 4, mode="replicate")
    n, c, h, w = x.shape
    cols = F.unfold(xp.reshape(n * c, 1, h + k - 1, w + k - 1), k)  # (n*c, k*k, h*w)
    return cols.median(dim=1).values.reshape(n, c, h, w)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_median_filter_matches_sorting(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    x = torch.rand(2, 1, 11, 19, generator=g)
    assert torch.equal(median_filter(x, k), reference_median(x, k))
    ties = (torch.rand(2, 1, 9, 8, generator=g) * 3).floor()  # many equal values
    assert torch.equal(median_filter(ties, k), reference_median(ties, k))


def test_median_network_sizes_and_odd_only() -> None:
    assert len(median_network(25)) < 120  # pruned from Batcher's 140 comparators
    with pytest.raises(ValueError):
        median_network(4)


def test_median_then_threshold_is_the_majority_vote() -> None:
    """median(s) > t  ==  more than half of the 5x5 window has s > t (so threshold sweeps stay valid)."""
    s = torch.rand(3, 1, 16, 20, generator=torch.Generator().manual_seed(1))
    for t in (0.2, 0.5, 0.8):
        above = F.pad((s > t).float(), (2,) * 4, mode="replicate")
        votes = F.avg_pool2d(above, 5, stride=1) * 25
        assert torch.equal(median_filter(s, 5) > t, votes >= 13)


def test_median_removes_specks_keeps_objects() -> None:
    s = torch.zeros(1, 3, 40, 40)
    s[:, :, 5:7, 5:7] = 1.0  # a 2x2 speck
    s[:, :, 20:30, 20:28] = -0.6  # an object (negative S counts too)
    score = foreground_score(s, "median5")
    assert score.shape == (1, 40, 40)
    assert score[0, 5:7, 5:7].max() == 0
    assert torch.allclose(score[0, 22:28, 22:26], torch.tensor(0.6))
    with pytest.raises(ValueError):
        foreground_score(s, "median4")


def test_old_checkpoints_keep_the_filter_they_were_made_with() -> None:
    cfg = ModelConfig(width=2, depth=1, height=16, width_px=16)
    model = UNet(cfg)
    config = cfg.to_dict()
    assert config.pop("score_filter") == "median5"  # the default for new models
    state = {"config": config, "model": model.state_dict()}
    assert model_from_checkpoint(state).cfg.score_filter == LEGACY_SCORE_FILTER
    with pytest.raises(ValueError):
        ModelConfig(score_filter="gauss")


def test_train_cli_flag_reaches_the_config() -> None:
    args = build_parser().parse_args(["synthetic", "--out", "x", "--score-filter", "median3"])
    assert config_from_args(args).score_filter == "median3"
    default = config_from_args(build_parser().parse_args(["synthetic", "--out", "x"]))
    assert default.score_filter == "median5"
    # post-processing only: a run resumed with another filter is the same run
    assert default.identity() == config_from_args(args).identity()
