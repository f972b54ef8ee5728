"""The history of convolutional networks on one timeline (section 14.17).

:data:`HISTORY` lists the milestones from Hubel and Wiesel's cells to ConvNeXt, each with the
section of this course that covers it; :func:`plot_timeline` draws them with a broken year axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure

from cnnbook.plots import PALETTE

__all__ = ["HISTORY", "Milestone", "plot_timeline"]


@dataclass(frozen=True)
class Milestone:
    """One event on the timeline.

    Attributes:
        year: Year of publication.
        name: Short name.
        what: What it contributed.
        section: Section notebook that covers it (``""`` for the biological background).
    """

    name: str
    year: int
    what: str
    section: str = ""


HISTORY: tuple[Milestone, ...] = (
    Milestone("Hubel & Wiesel", 1959, "single cells in cat visual cortex respond to oriented edges"),
    Milestone("Hubel & Wiesel", 1962, "simple and complex cells: a hierarchy of receptive fields", "14.3"),
    Milestone("Neocognitron", 1980, "Fukushima: layers of local feature detectors and pooling", "14.4"),
    Milestone("LeNet", 1989, "LeCun et al.: convolutions trained by backpropagation", "14.1"),
    Milestone("LeNet-5", 1998, "the classic conv-pool-conv-pool-FC digit reader", "14.6"),
    Milestone("AlexNet", 2012, "ReLU, dropout, GPUs: wins ImageNet by a wide margin", "14.6"),
    Milestone("VGG", 2014, "depth from stacks of 3x3 convolutions", "14.6"),
    Milestone("ResNet", 2015, "skip connections make 100+ layers trainable", "14.6"),
    Milestone("MobileNet", 2017, "depthwise separable convolutions for phones", "14.8"),
    Milestone("EfficientNet", 2019, "compound scaling of depth, width and resolution", "14.12"),
    Milestone("ViT", 2020, "a plain transformer on image patches", "14.14"),
    Milestone("ConvNeXt", 2022, "a CNN redesigned with transformer-era choices", "14.14"),
)


def plot_timeline(events: Sequence[Milestone] = HISTORY, split: int = 2005) -> Figure:
    """The milestones on a timeline with a broken year axis.

    The biology and the early networks (before ``split``) get a compressed left panel; the
    crowded years since get the wider right panel. Labels alternate above and below the line.

    Args:
        events: The milestones, in any order.
        split: First year of the right panel.

    Returns:
        The figure.
    """
    import matplotlib.pyplot as plt

    if not events:
        raise ValueError("plot_timeline needs at least one event.")
    events = sorted(events, key=lambda e: (e.year, e.name))
    early = [e for e in events if e.year < split]
    late = [e for e in events if e.year >= split]
    panels = [p for p in (early, late) if p]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(14, 4.6), sharey=True, gridspec_kw={"width_ratios": [len(p) for p in panels]}
    )
    axes = [axes] if len(panels) == 1 else list(axes)
    levels = [1.0, -1.0, 2.1, -2.1]
    for ax, panel in zip(axes, panels, strict=True):
        ax.axhline(0, color="0.4", lw=1.5)
        for i, e in enumerate(panel):
            level = levels[i % len(levels)]
            ax.vlines(e.year, 0, level, color="0.6", lw=0.8)
            ax.plot(e.year, 0, "o", color=PALETTE[1] if e.year < 1980 else PALETTE[0])
            where = f" [{e.section}]" if e.section else ""
            words, lines, line = e.what.split(), [], ""
            for w in words:  # wrap the description at about 26 characters
                if line and len(line) + len(w) > 26:
                    lines.append(line)
                    line = w
                else:
                    line = f"{line} {w}".strip()
            lines.append(line)
            ax.annotate(
                f"{e.year} {e.name}{where}\n" + "\n".join(lines),
                (e.year, level),
                ha="center",
                va="bottom" if level > 0 else "top",
                fontsize=7.5,
            )
        years = [e.year for e in panel]
        pad = max(2.0, 0.12 * (max(years) - min(years)))
        ax.set_xlim(min(years) - pad, max(years) + pad)
        ax.set_ylim(-4.2, 4.2)
        ax.set_yticks([])
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
    axes[0].set_title("From the visual cortex to ConvNeXt ([14.x] = section that covers it)", loc="left")
    if len(axes) == 2:
        axes[1].set_xlabel(f"the axis is broken at {split}: the right panel spans far fewer years")
    fig.tight_layout()
    return fig
