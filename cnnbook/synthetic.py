"""Generated scenes for segmentation and detection experiments (section 14.13).

Each scene is a textured background (a random sinusoidal grating in two colours, plus noise)
with a few solid shapes drawn on it: circles, squares and triangles. Every scene comes with
both a per-pixel class mask (for semantic segmentation) and one tight box per shape (for
detection), so the same generator serves both tasks. Everything is drawn with a NumPy
``Generator`` seeded by the caller: the same arguments always give the same tensors.

Class ids: 0 is background, 1 circle, 2 square, 3 triangle (see :data:`CLASSES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CLASSES: tuple[str, ...] = ("background", "circle", "square", "triangle")
"""Names of the mask values; box labels use ids 1..3 (never 0)."""

_MIN_COLOUR_DISTANCE = 0.45  # shapes must stand out from both background colours by this much


@dataclass(frozen=True)
class ShapeScenes:
    """A batch of generated scenes.

    Attributes:
        images: Float images in ``[0, 1]``, shape ``(N, 3, H, W)``.
        masks: Class id of every pixel, int64, shape ``(N, H, W)``.
        boxes: One float32 tensor per image, shape ``(K_i, 4)``, boxes as ``(x1, y1, x2, y2)``
            in pixels (torchvision's convention; a shape covering pixel columns ``a..b``
            has ``x1 = a`` and ``x2 = b + 1``).
        labels: One int64 tensor per image, shape ``(K_i,)``, class ids in ``1..3``.
        classes: Names of the class ids (:data:`CLASSES`).
    """

    images: torch.Tensor
    masks: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    classes: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return int(self.images.shape[0])


def make_shape_scenes(
    n: int,
    *,
    size: int = 32,
    objects: tuple[int, int] = (1, 3),
    object_size: tuple[int, int] = (8, 16),
    overlap: bool = False,
    noise: float = 0.08,
    seed: int = 0,
) -> ShapeScenes:
    """Draw ``n`` scenes of shapes on textured backgrounds.

    Args:
        n: Number of scenes.
        size: Height and width of every image in pixels.
        objects: Inclusive range ``(lo, hi)`` for the number of shapes per scene.
        object_size: Inclusive range of a shape's extent in pixels (its bounding square).
        overlap: Allow shapes to overlap (later shapes then hide earlier ones in the mask and
            boxes stay those of the full shapes). With ``False`` shapes keep a one-pixel gap;
            a shape that finds no free place after many tries is left out.
        noise: Standard deviation of the Gaussian pixel noise added to the whole image.
        seed: Seed of the NumPy generator; equal seeds give equal scenes.

    Returns:
        A :class:`ShapeScenes` with ``n`` images.

    Raises:
        ValueError: If a size or range is impossible (e.g. shapes larger than the image).
    """
    lo, hi = objects
    smin, smax = object_size
    if n < 1:
        raise ValueError(f"n={n}: ask for at least one scene.")
    if not 0 <= lo <= hi:
        raise ValueError(f"objects={objects} must be a range (lo, hi) with 0 <= lo <= hi.")
    if not 3 <= smin <= smax <= size:
        raise ValueError(
            f"object_size={object_size} must satisfy 3 <= min <= max <= size ({size}); "
            "shrink the shapes or enlarge the image."
        )
    if noise < 0:
        raise ValueError(f"noise={noise} must be >= 0.")
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=np.int64)
    boxes: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for i in range(n):
        colours = rng.uniform(0.0, 1.0, size=(2, 3)).astype(np.float32)
        images[i] = _grating(rng, xs, ys, colours)
        placed: list[tuple[int, int, int, int]] = []
        scene_boxes, scene_labels = [], []
        for _ in range(int(rng.integers(lo, hi + 1))):
            spot = _free_spot(rng, size, smin, smax, placed, overlap)
            if spot is None:
                continue
            x0, y0, s = spot
            label = int(rng.integers(1, len(CLASSES)))
            inside = _shape_mask(label, xs, ys, x0, y0, s)
            colour = _distinct_colour(rng, colours)
            images[i][:, inside] = colour[:, None]
            masks[i][inside] = label
            rows, cols = np.nonzero(inside)
            scene_boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
            scene_labels.append(label)
            placed.append((x0, y0, x0 + s, y0 + s))
        boxes.append(torch.tensor(scene_boxes, dtype=torch.float32).reshape(-1, 4))
        labels.append(torch.tensor(scene_labels, dtype=torch.int64))
    if noise > 0:
        images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    return ShapeScenes(torch.from_numpy(images), torch.from_numpy(masks), boxes, labels)


def segmentation_scenes(n: int, *, size: int = 32, seed: int = 0) -> ShapeScenes:
    """Preset for segmentation: 1 to 3 shapes of 8-16 px that may overlap.

    Args:
        n: Number of scenes.
        size: Image height and width.
        seed: Generator seed.

    Returns:
        A :class:`ShapeScenes` whose ``masks`` are the targets.
    """
    return make_shape_scenes(
        n, size=size, objects=(1, 3), object_size=(8, max(8, size // 2)), overlap=True, seed=seed
    )


def detection_scenes(n: int, *, size: int = 64, seed: int = 0) -> ShapeScenes:
    """Preset for detection: 1 to 4 non-overlapping shapes of 10-24 px on a 64 px image.

    Shapes at least as large as a detector cell (8 px for a stride-8 grid) that do not overlap
    never put two box centres in the same cell, so a one-box-per-cell detector can learn all.

    Args:
        n: Number of scenes.
        size: Image height and width.
        seed: Generator seed.

    Returns:
        A :class:`ShapeScenes` whose ``boxes`` and ``labels`` are the targets.
    """
    return make_shape_scenes(
        n, size=size, objects=(1, 4), object_size=(10, max(10, 3 * size // 8)), overlap=False, seed=seed
    )


def _grating(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """A sinusoidal stripe texture between two colours, shape ``(3, H, W)``."""
    theta = rng.uniform(0.0, np.pi)
    period = rng.uniform(3.0, 10.0)
    phase = rng.uniform(0.0, 2 * np.pi)
    wave = 0.5 * (1 + np.sin(2 * np.pi * (xs * np.cos(theta) + ys * np.sin(theta)) / period + phase))
    return colours[0][:, None, None] + (colours[1] - colours[0])[:, None, None] * wave


def _free_spot(
    rng: np.random.Generator,
    size: int,
    smin: int,
    smax: int,
    placed: list[tuple[int, int, int, int]],
    overlap: bool,
    tries: int = 50,
) -> tuple[int, int, int] | None:
    """Top-left corner and extent of a square that keeps a 1 px gap to ``placed`` squares."""
    for _ in range(tries):
        s = int(rng.integers(smin, smax + 1))
        x0 = int(rng.integers(0, size - s + 1))
        y0 = int(rng.integers(0, size - s + 1))
        if overlap or all(x0 > b[2] or x0 + s < b[0] or y0 > b[3] or y0 + s < b[1] for b in placed):
            return x0, y0, s
    return None


def _shape_mask(label: int, xs: np.ndarray, ys: np.ndarray, x0: int, y0: int, s: int) -> np.ndarray:
    """Boolean ``(H, W)`` mask of shape ``label`` inside the square ``[x0, x0+s) x [y0, y0+s)``."""
    cx, cy = x0 + s / 2, y0 + s / 2
    in_square = (xs > x0) & (xs < x0 + s) & (ys > y0) & (ys < y0 + s)
    if label == 1:  # circle inscribed in the square
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= (s / 2) ** 2
    if label == 2:
        return in_square
    # triangle: apex at the top centre, base along the bottom edge
    return in_square & (np.abs(xs - cx) <= (ys - y0) / 2)


def _distinct_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A colour at least ``_MIN_COLOUR_DISTANCE`` away from both background colours."""
    for _ in range(100):
        colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        if np.linalg.norm(background - colour, axis=1).min() >= _MIN_COLOUR_DISTANCE:
            return colour
    # practically unreachable; fall back to the complement of the mean background colour
    return (1.0 - background.mean(axis=0)).astype(np.float32)
