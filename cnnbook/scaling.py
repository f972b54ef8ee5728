"""EfficientNet compound scaling: depth, width and resolution grown together (section 14.12).

Compound scaling multiplies depth by ``alpha**phi``, width by ``beta**phi`` and input resolution
by ``gamma**phi``. A convolution's cost grows linearly with depth and quadratically with width
and with resolution, so the constraint ``alpha * beta**2 * gamma**2 ~ 2`` makes each step of
``phi`` roughly double the FLOPs. :data:`EFFICIENTNET_PUBLISHED` holds the multipliers the
released B0-B7 and Lite0-4 models actually use (rounded by hand, so they follow the formula
only approximately).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15

# name -> (width multiplier, depth multiplier, input resolution, dropout before the classifier),
# as published with the TensorFlow reference implementations of EfficientNet and -Lite.
EFFICIENTNET_PUBLISHED: dict[str, tuple[float, float, int, float]] = {
    "efficientnet-b0": (1.0, 1.0, 224, 0.2),
    "efficientnet-b1": (1.0, 1.1, 240, 0.2),
    "efficientnet-b2": (1.1, 1.2, 260, 0.3),
    "efficientnet-b3": (1.2, 1.4, 300, 0.3),
    "efficientnet-b4": (1.4, 1.8, 380, 0.4),
    "efficientnet-b5": (1.6, 2.2, 456, 0.4),
    "efficientnet-b6": (1.8, 2.6, 528, 0.5),
    "efficientnet-b7": (2.0, 3.1, 600, 0.5),
    "efficientnet-lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet-lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet-lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet-lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet-lite4": (1.4, 1.8, 300, 0.3),
}


@dataclass(frozen=True)
class ScaledNetwork:
    """One row of a compound-scaling table.

    Attributes:
        phi: The compound coefficient.
        depth: Depth multiplier ``alpha**phi``.
        width: Width multiplier ``beta**phi``.
        resolution_mult: Resolution multiplier ``gamma**phi``.
        resolution: ``base_resolution * resolution_mult``, rounded to a multiple of 8 pixels.
        flops: FLOPs relative to the base network, ``depth * width**2 * resolution_mult**2``.
    """

    phi: int
    depth: float
    width: float
    resolution_mult: float
    resolution: int
    flops: float


def compound_multipliers(
    phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA
) -> tuple[float, float, float]:
    """Return ``(depth, width, resolution)`` multipliers ``(alpha**phi, beta**phi, gamma**phi)``.

    Raises:
        ValueError: If a base multiplier is below 1 (the network would shrink).
    """
    if min(alpha, beta, gamma) < 1:
        raise ValueError(f"alpha, beta, gamma must be >= 1, got {alpha}, {beta}, {gamma}.")
    return alpha**phi, beta**phi, gamma**phi


def flops_factor(depth: float, width: float, resolution: float) -> float:
    """Relative cost of a network scaled by these multipliers: ``d * w**2 * r**2``."""
    return depth * width**2 * resolution**2


def compound_scaling_table(
    phis: Iterable[int] = range(8),
    base_resolution: int = 224,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
) -> list[ScaledNetwork]:
    """Tabulate compound scaling for several ``phi``.

    Args:
        phis: Compound coefficients to tabulate.
        base_resolution: Input size of the ``phi = 0`` network.
        alpha: Depth base.
        beta: Width base.
        gamma: Resolution base.

    Returns:
        One :class:`ScaledNetwork` per ``phi``.
    """
    rows = []
    for phi in phis:
        d, w, r = compound_multipliers(phi, alpha, beta, gamma)
        rows.append(
            ScaledNetwork(phi, d, w, r, int(round(base_resolution * r / 8)) * 8, flops_factor(d, w, r))
        )
    return rows


def round_filters(channels: int, width_mult: float, divisor: int = 8) -> int:
    """Scale a channel count and round it to a multiple of ``divisor`` (hardware friendly).

    Rounds to the nearest multiple, but never more than 10% below the exact value.

    Args:
        channels: Channels of the base network.
        width_mult: Width multiplier.
        divisor: Channel counts are kept multiples of this.

    Returns:
        The scaled channel count.
    """
    exact = channels * width_mult
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_mult: float) -> int:
    """Scale the number of blocks in a stage, rounding up."""
    return int(math.ceil(depth_mult * repeats))
