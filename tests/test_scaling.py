"""cnnbook.scaling: compound-scaling arithmetic and the channel/depth rounding of EfficientNet."""

from __future__ import annotations

import pytest
from efficientnet_lite_pytorch.utils import get_model_params
from efficientnet_lite_pytorch.utils import round_filters as ref_round_filters
from efficientnet_lite_pytorch.utils import round_repeats as ref_round_repeats

from cnnbook.scaling import (
    ALPHA,
    BETA,
    EFFICIENTNET_PUBLISHED,
    GAMMA,
    compound_multipliers,
    compound_scaling_table,
    flops_factor,
    round_filters,
    round_repeats,
)


def test_constraint_is_about_two() -> None:
    assert pytest.approx(1.92, abs=0.005) == ALPHA * BETA**2 * GAMMA**2
    assert flops_factor(*compound_multipliers(1)) == pytest.approx(1.92, abs=0.005)


def test_table_doubles_flops_per_step() -> None:
    rows = compound_scaling_table(range(8))
    assert [r.phi for r in rows] == list(range(8))
    assert (rows[0].depth, rows[0].width, rows[0].resolution, rows[0].flops) == (1, 1, 224, 1)
    for prev, row in zip(rows, rows[1:], strict=False):
        assert row.flops / prev.flops == pytest.approx(ALPHA * BETA**2 * GAMMA**2)
        assert row.resolution % 8 == 0
        assert row.resolution > prev.resolution
    assert rows[7].depth == pytest.approx(1.2**7)


def test_negative_growth_rejected() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        compound_multipliers(1, alpha=0.9)


@pytest.mark.parametrize("name", sorted(EFFICIENTNET_PUBLISHED))
def test_published_table_and_rounding_match_reference(name: str) -> None:
    _, params = get_model_params(name, None)
    width, depth, resolution, dropout = EFFICIENTNET_PUBLISHED[name]
    assert (params.width_coefficient, params.depth_coefficient, params.image_size, params.dropout_rate) == (
        width,
        depth,
        resolution,
        dropout,
    )
    for channels in (16, 24, 32, 40, 80, 112, 192, 320, 1280):
        assert round_filters(channels, width) == ref_round_filters(channels, params)
    for repeats in (1, 2, 3, 4):
        assert round_repeats(repeats, depth) == ref_round_repeats(repeats, params)
