"""Matplotlib helpers for showing images, filters, feature maps and heat maps (14.9, 14.10, ...).

Every plotting function draws a new pyplot figure and returns it, so a notebook shows it with
``plt.show()`` (or at the end of the cell) and a test can inspect it (close it with
``plt.close(fig)``). Image tensors follow PyTorch's channel-first layout
``(C, H, W)``; :func:`to_hwc` converts them to what ``imshow`` expects. Other sections may add
their own small plotting functions here.

Colours every reader can tell apart (all sections): series take their colours from
:data:`PALETTE` (Okabe-Ito, distinguishable with the common colour-vision deficiencies), maps
use :data:`SEQUENTIAL_CMAP` (viridis) or cividis, never red against green, and every figure
has an opaque white background so it stays readable under JupyterLab's dark theme.
:func:`use_course_style` makes the same choices matplotlib's defaults for a notebook's own plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from cycler import cycler
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.typing import ColorType

# Okabe & Ito's colour-blind-safe palette, in the order series are drawn: blue, orange, bluish
# green, vermillion, reddish purple, sky blue, yellow, black.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
)
SEQUENTIAL_CMAP = "viridis"  # heat maps, feature maps: perceptually uniform, colour-blind safe
CONFUSION_CMAP = "cividis"  # optimised for red-green colour-vision deficiency
BACKGROUND = "white"  # opaque, so figures read the same under a dark JupyterLab theme


def use_course_style() -> None:
    """Make matplotlib's defaults colour-blind safe for a notebook's own plots.

    Sets the colour cycle to :data:`PALETTE`, the default colour map to viridis and an opaque
    white figure background (``matplotlib.rcParams``; undo with ``matplotlib.rcdefaults()``).
    """
    plt.rcParams["axes.prop_cycle"] = cycler(color=list(PALETTE))
    plt.rcParams["image.cmap"] = SEQUENTIAL_CMAP
    plt.rcParams["figure.facecolor"] = BACKGROUND
    plt.rcParams["savefig.facecolor"] = BACKGROUND


def _opaque(fig: Figure) -> Figure:
    """Give ``fig`` the opaque white background every course figure has."""
    fig.set_facecolor(BACKGROUND)
    fig.patch.set_alpha(1.0)
    return fig


def readable_text_colour(background: ColorType) -> str:
    """Black or white, whichever contrasts more with ``background`` (WCAG contrast ratio).

    Args:
        background: Any matplotlib colour (name, hex, RGB or RGBA tuple).

    Returns:
        ``"black"`` or ``"white"``.
    """
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(background)]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    # contrast with black (L + 0.05) / 0.05 against contrast with white 1.05 / (L + 0.05)
    return "black" if (luminance + 0.05) ** 2 > 0.05 * 1.05 else "white"


def to_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Convert a channel-first image to a NumPy array ``imshow`` can draw.

    Args:
        image: ``(3, H, W)`` or ``(1, H, W)`` or ``(H, W)`` tensor/array.

    Returns:
        ``(H, W, 3)`` float array for colour input, ``(H, W)`` for one channel.

    Raises:
        ValueError: If the input is not 2-D or 3-D with 1 or 3 channels first.
    """
    arr = (
        image.detach().cpu().float().numpy()
        if isinstance(image, torch.Tensor)
        else (np.asarray(image, dtype=np.float32))
    )
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        return arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    raise ValueError(
        f"Expected an image shaped (3, H, W), (1, H, W) or (H, W); got "
        f"{tuple(arr.shape)}. Index one image out of a batch first."
    )


def rescale01(x: torch.Tensor, per_item: bool = False) -> torch.Tensor:
    """Min-max rescale to ``[0, 1]`` for display (a constant input maps to zeros).

    Args:
        x: Any tensor; with ``per_item`` its first dimension indexes separate items.
        per_item: Rescale every ``x[i]`` on its own instead of using one global range.

    Returns:
        A float tensor of the same shape with values in ``[0, 1]``.
    """
    x = x.detach().float()
    if per_item:
        flat = x.reshape(x.shape[0], -1)
        lo = flat.min(dim=1).values.view(-1, *([1] * (x.ndim - 1)))
        hi = flat.max(dim=1).values.view(-1, *([1] * (x.ndim - 1)))
    else:
        lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def image_grid(
    images: Sequence[torch.Tensor] | torch.Tensor,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    cmap: str = "gray",
    size: float = 2.0,
    suptitle: str | None = None,
) -> Figure:
    """Draw images in a grid, one per axis, without ticks.

    Args:
        images: A batch ``(N, C, H, W)`` / ``(N, H, W)`` or a list of ``(C, H, W)``/``(H, W)``
            images with values in ``[0, 1]`` (single-channel images use ``cmap``).
        titles: Optional title per image.
        ncols: Columns; default ``min(N, 8)``.
        cmap: Colour map for single-channel images.
        size: Inches per grid cell.
        suptitle: Optional figure title.

    Returns:
        The figure (``N`` image axes; unused cells are hidden), on an opaque white background.

    Raises:
        ValueError: If there are no images or the titles do not match them.
    """
    items = list(images)
    if not items:
        raise ValueError("image_grid needs at least one image.")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"Got {len(titles)} titles for {len(items)} images.")
    ncols = min(len(items), 8) if ncols is None else ncols
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, squeeze=False, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0.0))
    )
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(items):
            continue
        arr = to_hwc(items[i])
        ax.imshow(np.clip(arr, 0, 1), cmap=cmap if arr.ndim == 2 else None, vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return _opaque(fig)


def plot_filters(
    weight: torch.Tensor,
    n: int | None = 16,
    ncols: int = 8,
    per_filter: bool = False,
    title: str | None = None,
) -> Figure:
    """Show convolution kernels as small images (colour for 3 input channels).

    Args:
        weight: Conv weight ``(C_out, C_in, kH, kW)``; RGB filters need ``C_in == 3``, other
            ``C_in`` show the mean over input channels in grey.
        n: How many filters to show (the first ``n``); ``None`` shows all.
        ncols: Grid columns.
        per_filter: Rescale each filter on its own (more contrast) instead of one shared range
            (which keeps relative strengths comparable).
        title: Optional figure title.

    Returns:
        The figure.

    Raises:
        ValueError: If ``weight`` is not 4-D.
    """
    if weight.ndim != 4:
        raise ValueError(f"Expected a conv weight (C_out, C_in, kH, kW); got {tuple(weight.shape)}.")
    w = weight[:n] if n is not None else weight
    if w.shape[1] != 3:
        w = w.mean(dim=1, keepdim=True)
    w = rescale01(w, per_item=per_filter)
    return image_grid(w, ncols=min(ncols, len(w)), size=1.0, suptitle=title)


def plot_feature_maps(
    fmap: torch.Tensor, n: int = 16, ncols: int = 8, cmap: str = SEQUENTIAL_CMAP, title: str | None = None
) -> Figure:
    """Show the first ``n`` channels of one feature map, each rescaled to its own range.

    Args:
        fmap: ``(C, H, W)`` activations of one image (or ``(1, C, H, W)``).
        n: Channels to show.
        ncols: Grid columns.
        cmap: Colour map.
        title: Optional figure title.

    Returns:
        The figure.

    Raises:
        ValueError: If ``fmap`` is not one image's ``(C, H, W)`` map.
    """
    if fmap.ndim == 4 and fmap.shape[0] == 1:
        fmap = fmap[0]
    if fmap.ndim != 3:
        raise ValueError(f"Expected one feature map (C, H, W); got {tuple(fmap.shape)}.")
    maps = rescale01(fmap[:n], per_item=True)
    titles = [f"ch {i}" for i in range(len(maps))]
    return image_grid(maps, titles=titles, ncols=min(ncols, len(maps)), cmap=cmap, size=1.3, suptitle=title)


def overlay_heatmap(
    image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.45, cmap: str = SEQUENTIAL_CMAP
) -> np.ndarray:
    """Blend a heat map over a photo: ``(1 - alpha) * image + alpha * cmap(heat)``.

    Args:
        image: ``(3, H, W)`` photo with values in ``[0, 1]``.
        heat: ``(H, W)`` map with values in ``[0, 1]`` (e.g. Grad-CAM); resized bilinearly if
            its size differs from the photo's.
        alpha: Weight of the heat map.
        cmap: Matplotlib colour map for the heat map (viridis: ordered from dark to light for
            every reader, where the common "jet" is not).

    Returns:
        ``(H, W, 3)`` float array in ``[0, 1]``.

    Raises:
        ValueError: If shapes or ``alpha`` are out of range.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W); got {tuple(image.shape)}.")
    if heat.ndim != 2:
        raise ValueError(f"heat must be (H, W); got {tuple(heat.shape)}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}.")
    heat = heat.detach().float().cpu()
    if heat.shape != image.shape[1:]:
        heat = torch.nn.functional.interpolate(
            heat[None, None], size=tuple(image.shape[1:]), mode="bilinear", align_corners=False
        )[0, 0]
    colours = colormaps[cmap](heat.clamp(0, 1).numpy())[..., :3]
    return (1.0 - alpha) * to_hwc(image.clamp(0, 1)) + alpha * colours


def plot_heatmaps(
    image: torch.Tensor,
    heats: Sequence[torch.Tensor],
    titles: Sequence[str],
    alpha: float = 0.45,
    size: float = 3.0,
) -> Figure:
    """Show a photo next to one heat-map overlay per map (e.g. Grad-CAM per class).

    Args:
        image: ``(3, H, W)`` photo in ``[0, 1]``.
        heats: ``(H, W)`` maps in ``[0, 1]``.
        titles: One title per map.
        alpha: Heat-map weight in the blend.
        size: Inches per panel.

    Returns:
        The figure (``1 + len(heats)`` axes).
    """
    panels = [torch.from_numpy(overlay_heatmap(image, h, alpha)).permute(2, 0, 1) for h in heats]
    return image_grid([image, *panels], titles=["input", *titles], ncols=len(panels) + 1, size=size)


def plot_history(history, title: str | None = None) -> Figure:
    """Training curves of a :class:`cnnbook.history.History`: loss, accuracy, learning rate.

    Args:
        history: The history returned by :func:`cnnbook.train.fit`.
        title: Optional figure title.

    Returns:
        The figure (three axes: loss per epoch, accuracy per epoch, learning rate per step).

    Raises:
        ValueError: If the history has no finished epoch.
    """
    if len(history) == 0:
        raise ValueError("The history is empty: train at least one epoch first.")
    epochs = history["epoch"]
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, label in ((ax_loss, "loss", "cross-entropy"), (ax_acc, "acc", "accuracy")):
        # two colours from PALETTE, and a marker and line style each (readable in greyscale too)
        ax.plot(epochs, history[f"train_{key}"], "o-", color=PALETTE[0], label="train")
        val = history[f"val_{key}"]
        if not all(math.isnan(v) for v in val):
            ax.plot(epochs, val, "s--", color=PALETTE[1], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_lr.plot(history.step_lr, color=PALETTE[2])
    ax_lr.set_xlabel("optimisation step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _opaque(fig)


def plot_confusion_matrix(
    cm: torch.Tensor, classes: Sequence[str], normalize: bool = True, title: str | None = None
) -> Figure:
    """Draw a confusion matrix ``cm[true, predicted]`` with the class names on both axes.

    Args:
        cm: ``(K, K)`` counts, rows are true classes.
        classes: ``K`` class names.
        normalize: Show each row as fractions of that class (recall on the diagonal).
        title: Optional title.

    Returns:
        The figure (colour map cividis; each number in black or white, whichever reads better
        on its cell).

    Raises:
        ValueError: If ``cm`` is not square or does not match ``classes``.
    """
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(f"cm has shape {tuple(cm.shape)} but there are {k} classes.")
    values = cm.detach().cpu().double()  # plotting happens on the CPU (MPS has no float64)
    if normalize:
        values = values / values.sum(1, keepdim=True).clamp_min(1)
    fig, ax = plt.subplots(figsize=(0.55 * k + 2.5, 0.55 * k + 1.5))
    im = ax.imshow(values.numpy(), cmap=CONFUSION_CMAP, vmin=0)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    cells = np.asarray(im.cmap(np.asarray(im.norm(values.numpy()))), dtype=float)  # (K, K, 4) RGBA
    for i in range(k):
        for j in range(k):
            v = float(values[i, j])
            ax.text(
                j,
                i,
                f"{v:.2f}" if normalize else f"{int(v)}",
                ha="center",
                va="center",
                fontsize=7,
                color=readable_text_colour(
                    (float(cells[i, j, 0]), float(cells[i, j, 1]), float(cells[i, j, 2]))
                ),
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _opaque(fig)
